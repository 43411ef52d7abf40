//! Arbitrary bytes through the OpenAI request parser (`request::parse`: strict JSON with
//! duplicate keys refused at any depth, every parameter typed and range-checked, unknown
//! parameters refused) for both endpoints: the bytes every certificate holder can send.
//!
//! Input: the first byte picks the endpoint (bit 0) and the policy's completion ceiling
//! (bits 1–2: 1, 16, 4 096 or `u32::MAX`); the rest is the body.
//!
//! Properties: no panic on any input; an accepted request is inside every documented bound
//! (model, user and stop strings no longer than their limits, at most four stop strings,
//! `max_tokens` within the ceiling, sampling parameters in their ranges, a chat request with
//! at least one message); a refusal renders as OpenAI's error JSON with a 4xx status.
#![no_main]
use actix_web::ResponseError;
use actix_web::body::MessageBody;
use appliance::server::openai::request::{
    Endpoint, MAX_MODEL_BYTES, MAX_STOP_BYTES, MAX_STOP_SEQUENCES, MAX_USER_BYTES, Prompt, parse,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&head, body)) = data.split_first() else {
        return;
    };
    let endpoint = if head & 1 == 0 {
        Endpoint::Chat
    } else {
        Endpoint::Completion
    };
    let ceiling = [1, 16, 4096, u32::MAX][usize::from((head >> 1) & 3)];
    match parse(endpoint, body, ceiling) {
        Ok(g) => {
            assert_eq!(g.endpoint, endpoint);
            assert!(g.model.len() <= MAX_MODEL_BYTES, "model {} bytes", g.model.len());
            if let Some(user) = &g.user {
                assert!(user.len() <= MAX_USER_BYTES, "user {} bytes", user.len());
            }
            let s = &g.sampling;
            assert!(s.stop.len() <= MAX_STOP_SEQUENCES, "{} stop strings", s.stop.len());
            for stop in &s.stop {
                assert!(!stop.is_empty() && stop.len() <= MAX_STOP_BYTES, "stop {stop:?}");
            }
            if let Some(n) = s.max_tokens {
                assert!(n >= 1 && n <= ceiling, "max_tokens {n} over {ceiling}");
            }
            assert!((0.0..=2.0).contains(&s.temperature), "temperature {}", s.temperature);
            assert!(s.top_p > 0.0 && s.top_p <= 1.0, "top_p {}", s.top_p);
            assert!((0.0..1.0).contains(&s.min_p), "min_p {}", s.min_p);
            assert!(s.repetition_penalty.is_finite() && s.repetition_penalty > 0.0);
            assert!(g.include_usage <= g.stream, "include_usage without stream");
            match (&g.prompt, endpoint) {
                (Prompt::Chat(messages), Endpoint::Chat) => assert!(!messages.is_empty()),
                (Prompt::Text(_), Endpoint::Completion) => {}
                (p, e) => panic!("{e:?} request parsed into {p:?}"),
            }
        }
        Err(e) => {
            let response = e.error_response();
            assert!(response.status().is_client_error(), "{}: {e}", response.status());
            let bytes = response
                .into_body()
                .try_into_bytes()
                .unwrap_or_else(|_| panic!("a streamed error body"));
            let json: serde_json::Value =
                serde_json::from_slice(&bytes).expect("the error body is JSON");
            assert!(json["error"]["message"].is_string(), "{json}");
        }
    }
});
