//! Requests the service must refuse, on the real default model: malformed or oversized
//! input (4xx in OpenAI's error shape), and any generation once the audit log cannot be
//! written (503, fail closed).
use std::io::Write;

use serde_json::{Value, json};

use crate::api::{Dev, MODEL, chat_body};
use crate::common::{Response, metric, read_response};

/// Asserts OpenAI's error envelope with exactly its four keys; returns the error object.
fn openai_error(r: &Response) -> Value {
    let v = r.json();
    let e = v["error"].clone();
    let mut keys: Vec<&str> = e
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    e
}

/// Sends raw `body` bytes to `path` as the user.
fn post_raw(dev: &Dev, path: &str, body: &[u8]) -> Response {
    dev.client("user")
        .request("POST", path, Some(body))
        .expect("POST")
}

/// Malformed input gets the specific 4xx in OpenAI's error shape, naming the parameter;
/// none of it disturbs the service, which then answers a normal request.
#[test]
fn bad_input_gets_4xx_in_openai_shape_and_the_service_keeps_serving() {
    let dev = Dev::start();
    let hi = json!([{"role": "user", "content": "hi"}]);
    let chat = "/v1/chat/completions";
    let cases: Vec<(&str, &str, Vec<u8>, Option<&str>)> = vec![
        // (what, path, body, param)
        ("invalid JSON", chat, br#"{"model": "x", "messages": ["#.to_vec(), None),
        ("not an object", chat, b"[1, 2]".to_vec(), None),
        (
            "messages a string",
            chat,
            json!({"model": MODEL, "messages": "hi"}).to_string().into_bytes(),
            Some("messages"),
        ),
        (
            "temperature a string",
            chat,
            chat_body(&hi, json!({"temperature": "hot"})).to_string().into_bytes(),
            Some("temperature"),
        ),
        (
            "max_tokens past u32",
            chat,
            chat_body(&hi, json!({"max_tokens": 1u64 << 40})).to_string().into_bytes(),
            Some("max_tokens"),
        ),
        (
            "negative max_tokens",
            "/v1/completions",
            json!({"model": MODEL, "prompt": "hi", "max_tokens": -1}).to_string().into_bytes(),
            Some("max_tokens"),
        ),
        (
            "empty messages",
            chat,
            json!({"model": MODEL, "messages": []}).to_string().into_bytes(),
            Some("messages"),
        ),
        (
            "unknown role",
            chat,
            json!({"model": MODEL, "messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "hi"}]})
                .to_string()
                .into_bytes(),
            Some("messages[1].role"),
        ),
        (
            "content a number",
            chat,
            json!({"model": MODEL, "messages": [{"role": "user", "content": 7}]})
                .to_string()
                .into_bytes(),
            Some("messages[0].content"),
        ),
        (
            "prompt an object",
            "/v1/completions",
            json!({"model": MODEL, "prompt": {"text": "hi"}}).to_string().into_bytes(),
            Some("prompt"),
        ),
        (
            "stream a string",
            chat,
            chat_body(&hi, json!({"stream": "yes"})).to_string().into_bytes(),
            Some("stream"),
        ),
    ];
    for (what, path, body, param) in &cases {
        let r = post_raw(&dev, path, body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let e = openai_error(&r);
        assert_eq!(e["type"], "invalid_request_error", "{what}: {e}");
        match param {
            Some(p) => assert_eq!(e["param"], *p, "{what}: {e}"),
            None => assert!(e["param"].is_null(), "{what}: {e}"),
        }
    }

    // A 10 MB body declared by Content-Length: refused from the headers, 413, before the
    // body is read (so only the head is sent; the connection is then closed).
    let mut tls = dev.client("user").connect().expect("connect");
    let head = format!(
        "POST {chat} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        10 << 20
    );
    tls.write_all(head.as_bytes()).expect("head");
    tls.flush().expect("flush");
    let r = read_response(&mut tls).expect("413 response");
    assert_eq!(r.status, 413, "{}", r.text());
    let e = openai_error(&r);
    assert_eq!(e["code"], "request_too_large", "{e}");

    // A chunked body (no length to check up front) past the 4 MiB limit: 413 once read.
    let mut tls = dev.client("user").connect().expect("connect");
    let head = format!(
        "POST {chat} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).expect("head");
    let piece = vec![b' '; 64 << 10];
    let mut sent = 0;
    let chunks = (0..(4 << 20) / piece.len() + 1)
        .map(|_| format!("{:x}\r\n", piece.len()).into_bytes())
        .flat_map(|size| [size, piece.clone(), b"\r\n".to_vec()])
        .chain([b"0\r\n\r\n".to_vec()]);
    // The server may answer and close as soon as the limit is crossed: a write failing
    // after that point is expected (the answer is then read); one before it is not.
    for bytes in chunks {
        match tls.write_all(&bytes).and_then(|()| tls.flush()) {
            Ok(()) => sent += bytes.len(),
            Err(e) => {
                assert!(sent > 4 << 20, "write failed after {sent} bytes: {e}");
                break;
            }
        }
    }
    let r = read_response(&mut tls).expect("413 response");
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(openai_error(&r)["code"], "request_too_large");

    // Still serving, normally.
    let r = dev.post(chat, &chat_body(&hi, json!({"max_tokens": 4})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
}

/// Fail closed: once the audit log cannot be written (writes fail with EFBIG, as on a full
/// disk), a generation is refused with 503 in OpenAI's shape before any token is computed,
/// streamed or not; `/readyz` says the audit log is not ready and `/healthz` still answers.
#[test]
fn an_unwritable_audit_log_refuses_generation_with_503_and_no_tokens() {
    let mut dev = Dev::start_ignoring_sigxfsz();
    let hi = json!([{"role": "user", "content": "Say hi"}]);
    let chat = "/v1/chat/completions";
    // Writable: served and recorded.
    let r = dev.post(chat, &chat_body(&hi, json!({"max_tokens": 4})));
    assert_eq!(r.status, 200, "{}", r.text());
    let operator = dev.client("operator");
    let tokens = || {
        let text = operator.get("/metrics").text();
        metric(&text, "airlock_generated_tokens_total")
            .unwrap_or_else(|| panic!("no token counter: {text}"))
    };
    let before = tokens();
    assert_eq!(before, 4.0);

    // From now on every write of the service to a file fails (RLIMIT_FSIZE 0: EFBIG).
    dev.limit_file_size(0);
    let requests = [
        (chat, chat_body(&hi, json!({"max_tokens": 4}))),
        (
            chat,
            chat_body(&hi, json!({"max_tokens": 4, "stream": true})),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Hi", "max_tokens": 4, "stream": true}),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Hi", "max_tokens": 4}),
        ),
    ];
    for (path, body) in &requests {
        let r = dev.post(path, body);
        assert_eq!(r.status, 503, "{body}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{body}");
        let e = openai_error(&r);
        assert_eq!(e["code"], "audit_unavailable", "{e}");
        assert_eq!(e["type"], "server_error", "{e}");
        let text = r.text();
        assert!(
            !text.contains("data:") && !text.contains("choices"),
            "tokens sent: {text}"
        );
    }
    assert_eq!(tokens(), before, "tokens were generated without a record");

    let user = dev.client("user");
    let health = user.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.text());
    let ready = user.get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    let ready = ready.json();
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["components"]["audit"]["ready"], false, "{ready}");
    assert_eq!(ready["components"]["model"]["ready"], true, "{ready}");
    // Reading models needs no record: still served.
    assert_eq!(user.get("/v1/models").status, 200);

    // What is on disk verifies, and holds the one request that was served, nothing of
    // the refused ones.
    dev.kill();
    let records = crate::api_audited::export_and_verify(&dev.state());
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "inference.request").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "inference.response").count(),
        1,
        "{kinds:?}"
    );
}

/// Fail closed at the other end: when the audit log stops being writable while answers are
/// being generated (their requests recorded), the `inference.response` record cannot be
/// written, so a plain answer is withheld (503, no text) and a stream, whose text has
/// already gone out, ends with an `audit_unavailable` error event instead of its finish.
#[test]
fn an_answer_whose_record_cannot_be_written_is_withheld_or_ends_in_an_error() {
    use std::io::Read;
    let dev = Dev::start_ignoring_sigxfsz();
    let (mut tls, mut seen) = dev.open_stream(400);
    let plain = std::thread::scope(|s| {
        let client = dev.client("user");
        let body =
            // 200 tokens: long enough to be running when writes start failing, short enough
            // to finish within the client's 30 s read timeout on a loaded machine.
            json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 200, "temperature": 0})
                .to_string();
        let plain = s.spawn(move || {
            client
                .request("POST", "/v1/completions", Some(body.as_bytes()))
                .expect("POST")
        });
        // Both are generating (so both requests are on record); then writes start failing.
        let operator = dev.client("operator");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = operator.get("/metrics").text();
            if metric(&text, "airlock_batch_size") == Some(2.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the two answers never ran together: {text}"
            );
            // Polled within the operator certificate's rate limit (600 a minute).
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        dev.limit_file_size(0);
        plain.join().expect("thread")
    });

    assert_eq!(plain.status, 503, "{}", plain.text());
    assert_eq!(openai_error(&plain)["code"], "audit_unavailable");
    assert!(!plain.text().contains("choices"), "{}", plain.text());

    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("stream broken: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains(r#""code":"audit_unavailable""#), "{text}");
    assert!(!text.contains("finish_reason\":\"length"), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert_eq!(dev.client("user").get("/readyz").status, 503);
}
