//! Disconnects, the metrics that show them, and backpressure, on the real default model.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{Dev, MODEL, chat_body};
use crate::common::{Response, metric};

/// Polls the operator's `/metrics` until `done` holds (60 s at most).
fn wait_metrics(dev: &Dev, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = dev.client("operator").get("/metrics").text();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The auditor's view of the log, polled until `find` matches a record.
fn wait_record(dev: &Dev, find: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = dev
            .client("auditor")
            .get("/v1/audit/records?from=0&limit=1000")
            .text();
        if let Some(r) = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("record"))
            .find(|r| find(r))
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no such record in {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client that disconnects mid-stream cancels its generation: the audit log records the
/// response as cancelled with the tokens produced until then, and the metrics show the
/// batch slot, its KV-cache reservation and the queue free again.
#[test]
fn a_disconnected_stream_is_recorded_with_its_tokens_and_frees_its_slot() {
    let dev = Dev::start();
    let (tls, seen) = dev.open_stream(1000);
    // While the answer runs it holds one batch slot and its KV-cache reservation.
    let running = dev.client("operator").get("/metrics").text();
    assert_eq!(
        metric(&running, "airlock_batch_size"),
        Some(1.0),
        "{running}"
    );
    assert!(
        metric(&running, "airlock_kv_cache_reserved_positions").is_some_and(|n| n > 1000.0),
        "{running}"
    );
    let chunks_seen = String::from_utf8_lossy(&seen)
        .matches("\"text\":\"")
        .count();
    drop(tls); // the client goes away mid-answer

    let freed = wait_metrics(&dev, "freeing the slot", |m| {
        metric(m, "airlock_cancelled_generations_total").is_some_and(|n| n >= 1.0)
            && metric(m, "airlock_batch_size") == Some(0.0)
            && metric(m, "airlock_kv_cache_reserved_positions") == Some(0.0)
    });
    assert_eq!(metric(&freed, "airlock_queue_depth"), Some(0.0), "{freed}");

    let response = wait_record(&dev, |r| r["kind"] == "inference.response");
    assert_eq!(response["status"], "cancelled", "{response}");
    let completion = response["tokens"]["completion"].as_u64().expect("tokens");
    assert!(
        completion >= chunks_seen as u64 && completion < 1000,
        "{completion} tokens recorded, {chunks_seen} chunks seen: {response}"
    );
    assert!(response["tokens"]["prompt"].as_u64().is_some_and(|n| n > 0));
    assert!(response["output_sha256"].is_string(), "{response}");
    let request = wait_record(&dev, |r| r["kind"] == "inference.request");
    assert_eq!(request["request_id"], response["request_id"]);

    // The slot is really free: the next request is served.
    let r = dev.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `/metrics` (operator only) has what the issue asks for: requests by endpoint, status
/// and role; time to first token and inter-token latency histograms; tokens generated;
/// batch size; queue depth; KV-cache use; audit append latency.
#[test]
fn metrics_count_requests_by_endpoint_status_and_role_and_cover_the_engine() {
    let dev = Dev::start();
    let messages = json!([{"role": "user", "content": "Say hi"}]);
    let r = dev.post(
        "/v1/chat/completions",
        &chat_body(&messages, json!({"max_tokens": 6})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let completion = r.json()["usage"]["completion_tokens"]
        .as_f64()
        .expect("usage");
    let bad = dev.post("/v1/chat/completions", &json!({"model": MODEL}));
    assert_eq!(bad.status, 400);
    assert_eq!(dev.client("user").get("/metrics").status, 403);
    assert_eq!(dev.client("auditor").get("/v1/models").status, 403);
    assert_eq!(dev.client("operator").get("/metrics").status, 200);

    let text = dev.client("operator").get("/metrics").text();
    let requests = |route: &str, method: &str, status: u16, role: &str| {
        metric(
            &text,
            &format!(
                r#"airlock_http_requests_total{{route="{route}",method="{method}",status="{status}",role="{role}"}}"#
            ),
        )
    };
    assert_eq!(
        requests("/v1/chat/completions", "POST", 200, "user"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests("/v1/chat/completions", "POST", 400, "user"),
        Some(1.0)
    );
    assert_eq!(requests("/metrics", "GET", 403, "user"), Some(1.0));
    assert_eq!(requests("/v1/models", "GET", 403, "auditor"), Some(1.0));
    assert!(requests("/metrics", "GET", 200, "operator").is_some_and(|n| n >= 1.0));
    assert!(
        metric(&text, "airlock_generated_tokens_total").is_some_and(|n| n >= completion),
        "{text}"
    );
    assert_eq!(
        metric(&text, "airlock_time_to_first_token_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "airlock_inter_token_latency_seconds_count"),
        Some(completion - 1.0)
    );
    // Idle again: nothing running, waiting or reserved.
    for gauge in [
        "airlock_batch_size",
        "airlock_queue_depth",
        "airlock_kv_cache_reserved_positions",
    ] {
        assert_eq!(metric(&text, gauge), Some(0.0), "{gauge}: {text}");
    }
    // Start, policy load, the request and its response, two denials: all flushed.
    assert!(
        metric(&text, "airlock_audit_append_duration_seconds_count").is_some_and(|n| n >= 4.0),
        "{text}"
    );
    assert!(
        metric(&text, r#"airlock_audit_appends_total{result="ok"}"#).is_some_and(|n| n >= 4.0),
        "{text}"
    );
}

/// Resident memory of `pid` in bytes (`VmRSS` of /proc/PID/status).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// `n` streamed completions sent at once, each on its own connection.
fn burst(dev: &Dev, n: usize, max_tokens: u32) -> Vec<Response> {
    let body = json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": max_tokens, "temperature": 0, "stream": true})
        .to_string();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let client = dev.client("user");
                let body = body.clone();
                s.spawn(move || {
                    client
                        .request("POST", "/v1/completions", Some(body.as_bytes()))
                        .expect("POST")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

/// Backpressure: one sequence at a time and a queue of 2: a burst of 8 gets 429s with
/// Retry-After, the accepted ones complete; 200 more requests leave the service's memory
/// bounded (refused requests hold nothing), and it keeps serving.
#[test]
fn a_full_queue_answers_429_with_bounded_memory_and_the_service_keeps_serving() {
    let mut dev = Dev::start();
    dev.restart_with("[limits]\nqueue_depth = 2\n\n[engine]\nmax_batch = 1\n");
    let responses = burst(&dev, 8, 48);
    let limited: Vec<_> = responses.iter().filter(|r| r.status == 429).collect();
    let served: Vec<_> = responses.iter().filter(|r| r.status == 200).collect();
    assert_eq!(limited.len() + served.len(), 8, "only 200 or 429 expected");
    assert!(limited.len() >= 2, "{} of 8 refused", limited.len());
    // Only the queue's 2 places are certain: when all 8 arrive before the decode thread
    // takes the first off the queue, the other 6 are refused (this said >= 3 and flaked
    // on a loaded machine).
    assert!(served.len() >= 2, "{} of 8 served", served.len());
    for r in &limited {
        assert!(r.header("retry-after").is_some(), "429 without Retry-After");
        assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    }
    for r in &served {
        assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
    }
    // Each refusal is the recorded outcome of its request (hardening finding 8: a refused
    // request left an `inference.request` with no outcome, as if cut off by a crash).
    for r in &limited {
        let id = r.header("x-request-id").expect("request id").to_owned();
        let outcome = wait_record(&dev, |rec| {
            rec["kind"] == "inference.response" && rec["request_id"] == id.as_str()
        });
        assert_eq!(outcome["status"], "429", "{outcome}");
    }

    // 200 more, in waves of 20 concurrent connections.
    let before = rss(dev.pid());
    let mut refused = 0;
    for _ in 0..10 {
        for r in burst(&dev, 20, 48) {
            assert!(r.status == 200 || r.status == 429, "{}", r.text());
            if r.status == 429 {
                assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
                refused += 1;
            }
        }
    }
    let after = rss(dev.pid());
    assert!(
        refused >= 10,
        "only {refused} of 200 refused: no backpressure tested"
    );
    let grown = after.saturating_sub(before);
    eprintln!(
        "RSS {} -> {} KiB over 200 requests, {refused} refused",
        before >> 10,
        after >> 10
    );
    assert!(
        grown < 50 << 20,
        "RSS grew by {} MiB over 200 requests ({} -> {} MiB)",
        grown >> 20,
        before >> 20,
        after >> 20
    );
    let after = dev.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
    );
    assert_eq!(after.status, 200, "{}", after.text());
    let idle = wait_metrics(&dev, "the queue emptying", |m| {
        metric(m, "airlock_queue_depth") == Some(0.0)
            && metric(m, "airlock_batch_size") == Some(0.0)
    });
    assert!(idle.contains("airlock_http_requests_total"));
}
