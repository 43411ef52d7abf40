use std::time::Duration;

use crate::common::Fixture;

#[test]
fn json_log_file_has_requests_but_never_bodies() {
    let fx = Fixture::new();
    let mut server = fx.serve();
    let secret = "PATIENT-7731 has a rare condition";
    let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}]}}"#);
    let user = fx.client(Some("user"));
    let resp = user
        .request("POST", "/v1/chat/completions", Some(body.as_bytes()))
        .expect("POST");
    let id = resp.header("x-request-id").expect("request id").to_owned();
    server.terminate();
    let (_, stderr) = server.wait(Duration::from_secs(30));

    let logs = fx.dir.path().join("state/logs");
    let files: Vec<_> = std::fs::read_dir(&logs)
        .expect("logs dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("airlock.") && name.ends_with(".jsonl"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).expect("read log");
    let mut saw_request = false;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every line is JSON");
        if v["fields"]["request_id"] == id.as_str() {
            assert_eq!(v["fields"]["route"], "/v1/chat/completions");
            assert_eq!(v["fields"]["status"], 503);
            saw_request = true;
        }
    }
    assert!(saw_request, "access log line for {id} missing:\n{text}");
    assert!(
        !text.contains("PATIENT-7731"),
        "request body leaked into the log file"
    );
    assert!(
        !stderr.contains("PATIENT-7731"),
        "request body leaked to stderr"
    );
}

#[test]
fn per_certificate_rate_limit_gives_429_with_retry_after() {
    let fx = Fixture::with("", "requests_per_minute = 3");
    let _server = fx.serve();
    let user = fx.client(Some("user"));
    for _ in 0..3 {
        assert_eq!(user.get("/v1/models").status, 200);
    }
    let limited = user.get("/v1/models");
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.openai_error().contains("3 requests per minute"));
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=21).contains(&retry), "{retry}");
    // Another certificate has its own budget; liveness counts against the same one.
    assert_eq!(fx.client(Some("operator")).get("/metrics").status, 200);
    assert_eq!(user.get("/healthz").status, 429);
}
