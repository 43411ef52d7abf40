//! The prompt-prefix cache through the API on the real default model: the same client's
//! repeated chat resumes its cached prefix (`usage.prompt_tokens_details.cached_tokens`) and
//! gets the same answer; another client certificate never does; the gauges settle.
use serde_json::{Value, json};

use crate::api::{Dev, chat_body, sse_events};
use std::io::Write;

use crate::common::{Client, metric, read_response};

/// A streamed greedy chat: its text and its usage chunk.
fn streamed(client: &Client, body: &Value) -> (String, Value) {
    let r = client
        .request(
            "POST",
            "/v1/chat/completions",
            Some(body.to_string().as_bytes()),
        )
        .expect("POST");
    assert_eq!(r.status, 200, "{}", r.text());
    let chunks: Vec<Value> = sse_events(&r.text())
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("chunk JSON"))
        .collect();
    let text = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let usage = chunks.last().expect("usage chunk")["usage"].clone();
    (text, usage)
}

#[test]
fn a_repeated_chat_reuses_its_prefix_for_the_same_client_only() {
    let mut dev = Dev::start();
    // A second identity with the user role: the operator's certificate.
    dev.restart_with(
        "[[identity]]\nname = \"second user\"\nroles = [\"user\"]\nmatch = { cn = \"operator\" }\n",
    );
    let body = chat_body(
        &json!([{"role": "user", "content": "Name three colours of the rainbow."}]),
        json!({"max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let (user, other) = (dev.client("user"), dev.client("operator"));

    let (first, u1) = streamed(&user, &body);
    assert!(!first.is_empty());
    let prompt = u1["prompt_tokens"].as_u64().expect("prompt_tokens");
    assert_eq!(u1["prompt_tokens_details"]["cached_tokens"], 0, "{u1}");

    // Same client, same chat: everything but the last prompt token comes from the cache, and
    // the answer is the same.
    let (second, u2) = streamed(&user, &body);
    assert_eq!(
        u2["prompt_tokens_details"]["cached_tokens"],
        prompt - 1,
        "{u2}"
    );
    assert_eq!(second, first);

    // Another certificate never sees the first client's cache (no timing side channel).
    let (third, u3) = streamed(&other, &body);
    assert_eq!(u3["prompt_tokens_details"]["cached_tokens"], 0, "{u3}");
    assert_eq!(third, first);

    // The next turn of the first client's chat resumes the previous turn, non-streamed too.
    let turn2 = chat_body(
        &json!([
            {"role": "user", "content": "Name three colours of the rainbow."},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "And one more?"}
        ]),
        json!({"max_tokens": 8}),
    );
    let r = user
        .request(
            "POST",
            "/v1/chat/completions",
            Some(turn2.to_string().as_bytes()),
        )
        .expect("POST");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached_tokens");
    assert!(cached >= prompt, "turn 2 resumed {cached} tokens: {v}");

    // The response records carry the count (params.cached_tokens), in the verified chain.
    let records = dev
        .client("auditor")
        .get("/v1/audit/records?from=0&limit=1000")
        .text();
    let counts: Vec<String> = records
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("record JSON"))
        .filter(|r| r["kind"] == "inference.response")
        .map(|r| {
            r["params"]["cached_tokens"]
                .as_str()
                .unwrap_or("-")
                .to_owned()
        })
        .collect();
    let want = [
        "0".to_owned(),
        (prompt - 1).to_string(),
        "0".to_owned(),
        cached.to_string(),
    ];
    assert_eq!(counts, want, "{records}");

    let m = dev.client("operator").get("/metrics").text();
    assert_eq!(metric(&m, "airlock_batch_size"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "airlock_queue_depth"), Some(0.0), "{m}");
    assert_eq!(
        metric(&m, "airlock_kv_cache_reserved_positions"),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric(&m, "airlock_kv_cache_retained_positions").is_some_and(|n| n > 0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "airlock_prefix_cache_hits_total"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "airlock_prefix_cache_reused_tokens_total"),
        Some((prompt - 1 + cached) as f64),
        "{m}"
    );
}

#[test]
fn with_the_prefix_cache_off_nothing_is_reused_or_retained() {
    let mut dev = Dev::start();
    dev.restart_with("[engine]\nprefix_cache = false\n");
    let body = chat_body(
        &json!([{"role": "user", "content": "Name three colours of the rainbow."}]),
        json!({"max_tokens": 4, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let user = dev.client("user");
    let (first, _) = streamed(&user, &body);
    let (second, u2) = streamed(&user, &body);
    assert_eq!(u2["prompt_tokens_details"]["cached_tokens"], 0, "{u2}");
    assert_eq!(second, first);
    let m = dev.client("operator").get("/metrics").text();
    assert_eq!(
        metric(&m, "airlock_kv_cache_retained_positions"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "airlock_prefix_cache_hits_total"),
        Some(0.0),
        "{m}"
    );
}

/// Retained caches give way to running requests: with a budget of 273 positions
/// (`kv_cache_mib = 12` for this model) one retained entry (256 positions) and a running
/// request (prompt + 16) do not both fit, so admitting another client's request evicts it.
#[test]
fn retained_caches_are_evicted_when_a_running_request_needs_the_room() {
    let mut dev = Dev::start();
    dev.restart_with(
        "[[identity]]\nname = \"second user\"\nroles = [\"user\"]\nmatch = { cn = \"operator\" }\n\n\
         [engine]\nkv_cache_mib = 12\n",
    );
    let body = chat_body(
        &json!([{"role": "user", "content": "Name three colours of the rainbow."}]),
        json!({"max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let (user, other) = (dev.client("user"), dev.client("operator"));
    let retained = |dev: &Dev| {
        let m = dev.client("operator").get("/metrics").text();
        metric(&m, "airlock_kv_cache_retained_positions").expect("retained gauge")
    };
    streamed(&user, &body);
    assert_eq!(retained(&dev), 256.0);
    // The other client's request cannot reuse the entry, and needs its room: evicted.
    let (_, u) = streamed(&other, &body);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0, "{u}");
    assert_eq!(
        retained(&dev),
        256.0,
        "only the other client's entry is left"
    );
    let (_, u) = streamed(&user, &body);
    assert_eq!(
        u["prompt_tokens_details"]["cached_tokens"], 0,
        "evicted, yet reused: {u}"
    );
}

/// Within one certificate, requests naming another end user (`user`) or data subject
/// (`Airlock-Subject`) do not reuse each other's prefixes either.
#[test]
fn another_end_user_or_subject_of_the_same_client_does_not_reuse() {
    let dev = Dev::start();
    let messages = json!([{"role": "user", "content": "Name three colours of the rainbow."}]);
    let opts = |user: &str| json!({"max_tokens": 4, "stream": true, "stream_options": {"include_usage": true}, "user": user});
    let user = dev.client("user");
    let cached = |u: &Value| u["prompt_tokens_details"]["cached_tokens"].as_u64();
    let (_, u) = streamed(&user, &chat_body(&messages, opts("alice")));
    assert_eq!(cached(&u), Some(0));
    let (_, u) = streamed(&user, &chat_body(&messages, opts("bob")));
    assert_eq!(cached(&u), Some(0), "bob reused alice's prefix: {u}");
    let (_, u) = streamed(&user, &chat_body(&messages, opts("alice")));
    assert!(cached(&u).is_some_and(|n| n > 0), "alice's own prefix: {u}");
    // Same user, another data subject (Airlock-Subject): no reuse.
    let body = chat_body(&messages, opts("alice")).to_string();
    let mut tls = user.connect().expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAirlock-Subject: case-7\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).expect("write");
    tls.write_all(body.as_bytes()).expect("write");
    tls.flush().expect("flush");
    let r = read_response(&mut tls).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = sse_events(&r.text())
        .iter()
        .rfind(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).expect("chunk JSON"))
        .expect("usage chunk")["usage"]
        .clone();
    assert_eq!(cached(&usage), Some(0), "another subject reused: {usage}");
}

/// A GDPR erasure also drops the retained prefix caches (prompt tokens of ended requests kept
/// in memory), at once even when the service is idle; the next request starts cold and gets
/// the same answer.
#[test]
fn an_erasure_drops_the_retained_prefix_caches() {
    let dev = Dev::start();
    let body = chat_body(
        &json!([{"role": "user", "content": "Name three colours of the rainbow."}]),
        json!({"max_tokens": 8, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let user = dev.client("user");
    let retained = || {
        let m = dev.client("operator").get("/metrics").text();
        metric(&m, "airlock_kv_cache_retained_positions").expect("retained gauge")
    };
    let (first, _) = streamed(&user, &body);
    let (_, u) = streamed(&user, &body);
    assert!(
        u["prompt_tokens_details"]["cached_tokens"].as_u64() > Some(0),
        "{u}"
    );
    assert!(retained() > 0.0);

    let r = dev
        .client("privacy")
        .request("POST", "/v1/audit/erase", Some(br#"{"subject":"case-7"}"#))
        .expect("POST");
    assert_eq!(r.status, 200, "{}", r.text());
    // The idle decode thread is woken to drop them; give it a moment, no request needed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while retained() > 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(retained(), 0.0, "retained caches survived the erasure");

    let (again, u) = streamed(&user, &body);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0, "{u}");
    assert_eq!(again, first);
}
