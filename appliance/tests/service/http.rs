use crate::common::{Fixture, MAX_BODY};

#[test]
fn roles_guard_routes_with_openai_errors_and_request_ids() {
    let fx = Fixture::new();
    let _server = fx.serve();
    let user = fx.client(Some("user"));
    let operator = fx.client(Some("operator"));
    let stranger = fx.client(Some("stranger"));
    let admin = fx.client(Some("admin"));

    // user: liveness yes, metrics no (403, OpenAI shape, names the role).
    let health = user.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json()["identity"]["roles"],
        serde_json::json!(["user"])
    );
    let denied = user.get("/metrics");
    assert_eq!(denied.status, 403);
    assert!(
        denied.openai_error().contains("`operator` role"),
        "{}",
        denied.text()
    );
    assert_eq!(denied.json()["error"]["type"], "permission_error");

    // /v1 exists for users: no model is installed here, so the list is empty and a
    // generation is refused with 503 until one is.
    let models = user.get("/v1/models");
    assert_eq!(models.status, 200, "{}", models.text());
    assert_eq!(models.json()["data"], serde_json::json!([]));
    let chat = user
        .request("POST", "/v1/chat/completions", Some(b"{}"))
        .expect("POST");
    assert_eq!(chat.status, 503);
    assert_eq!(
        chat.openai_error(),
        "no model is loaded yet (install and activate a bundle)"
    );

    // operator: Prometheus text that counted the requests above.
    let metrics = operator.get("/metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        metrics.headers
    );
    let text = metrics.text();
    assert!(
        text.contains("# TYPE airlock_http_requests counter"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"airlock_http_requests_total{route="/metrics",method="GET",status="403",role="user"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE airlock_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // A valid certificate that no rule matches: only /healthz.
    assert_eq!(stranger.get("/healthz").status, 200);
    for path in ["/readyz", "/v1/models", "/metrics"] {
        let r = stranger.get(path);
        assert_eq!(r.status, 403, "{path}");
        assert!(
            r.openai_error().contains("not granted any role"),
            "{path}: {}",
            r.text()
        );
    }

    // Fingerprint-only rule: admin reaches admin routes, user does not.
    assert_eq!(admin.get("/v1/admin/models").status, 200);
    assert_eq!(user.get("/v1/admin/models").status, 403);
    assert_eq!(admin.get("/v1/models").status, 403, "admin is not a user");

    // /readyz reports each component; the audit log and the egress lockdown (enforced by
    // default) are ready, the model is not yet.
    let ready = user.get("/readyz");
    assert_eq!(ready.status, 503);
    let v = ready.json();
    assert_eq!(v["ready"], false);
    assert_eq!(v["components"]["model"]["ready"], false, "{v}");
    assert!(v["components"]["model"]["detail"].is_string(), "{v}");
    assert_eq!(v["components"]["audit"]["ready"], true, "{v}");
    assert_eq!(v["components"]["egress"]["ready"], true, "{v}");

    // Unknown route and wrong method: OpenAI-shaped too.
    let nf = user.get("/nope");
    assert_eq!(nf.status, 404);
    assert!(nf.openai_error().contains("/nope"));
    let wrong = user.request("DELETE", "/healthz", None).expect("DELETE");
    assert_eq!(wrong.status, 405);
    wrong.openai_error();

    // Every response carries a distinct 128-bit request id.
    let ids: Vec<String> = [health, denied, models, metrics, nf, wrong]
        .iter()
        .map(|r| r.header("x-request-id").expect("x-request-id").to_owned())
        .collect();
    for id in &ids {
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[test]
fn oversized_bodies_get_413() {
    let fx = Fixture::new();
    let _server = fx.serve();
    let user = fx.client(Some("user"));
    let big = vec![b'x'; MAX_BODY + 1];
    let r = user
        .request("POST", "/v1/chat/completions", Some(&big))
        .expect("POST");
    assert_eq!(r.status, 413);
    assert!(
        r.openai_error()
            .contains(&format!("limit of {MAX_BODY} bytes"))
    );
    assert!(r.header("x-request-id").is_some());
    // At the limit the body is accepted (and the temporary endpoint answers 503).
    let ok = user
        .request("POST", "/v1/chat/completions", Some(&big[..MAX_BODY]))
        .expect("POST");
    assert_eq!(ok.status, 503);

    // A chunked body has no declared length: it is cut off while read.
    use std::io::Write;
    let mut tls = user.connect().expect("connect");
    let chunk = vec![b'y'; 600];
    let mut req = b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                    Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..2 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    tls.write_all(&req).expect("write");
    let r = crate::common::read_response(&mut tls).expect("response");
    assert_eq!(r.status, 413);
    r.openai_error();
}
