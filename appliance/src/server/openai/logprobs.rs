//! Log-probabilities in OpenAI's two shapes.
//!
//! Chat (`choices[].logprobs.content`): one object per token with its text, log-probability,
//! UTF-8 bytes and `top_logprobs` alternatives in the same form. Completions (the legacy
//! shape): parallel arrays `tokens`, `token_logprobs`, `top_logprobs` (one `{text: logprob}`
//! map per token) and `text_offset` (where each token starts in the completion text, in
//! characters). A token that is part of a UTF-8 character shows U+FFFD as text; its bytes
//! are exact, as OpenAI's are.
use airlock_engine::TokenLogprobs;
use airlock_engine::airlock_tokenizer::Tokenizer;
use serde_json::{Map, Value, json};

use super::request::Endpoint;

/// Turns the engine's records into one response's (or one chunk's) `logprobs` value,
/// carrying the completion's text offset from chunk to chunk.
#[derive(Debug)]
pub struct LogprobsWriter {
    endpoint: Endpoint,
    /// Characters of completion text before the next token (completions' `text_offset`).
    offset: usize,
}

impl LogprobsWriter {
    /// A writer for a response of `endpoint`.
    pub fn new(endpoint: Endpoint) -> LogprobsWriter {
        LogprobsWriter {
            endpoint,
            offset: 0,
        }
    }

    /// The `logprobs` value for `tokens` (the next ones of the response).
    pub fn write(&mut self, tokenizer: &Tokenizer, tokens: &[TokenLogprobs]) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let top: Vec<Value> = t
                            .top
                            .iter()
                            .map(|&(id, lp)| entry(tokenizer, id, lp))
                            .collect();
                        let mut e = entry(tokenizer, t.token, t.logprob);
                        e["top_logprobs"] = Value::Array(top);
                        e
                    })
                    .collect();
                json!({"content": content, "refusal": null})
            }
            Endpoint::Completion => {
                let mut texts = Vec::with_capacity(tokens.len());
                let mut lps = Vec::with_capacity(tokens.len());
                let mut tops = Vec::with_capacity(tokens.len());
                let mut offsets = Vec::with_capacity(tokens.len());
                for t in tokens {
                    let text = text_of(tokenizer, t.token);
                    offsets.push(self.offset);
                    self.offset += text.chars().count();
                    texts.push(Value::String(text));
                    lps.push(number(t.logprob));
                    let top: Map<String, Value> = t
                        .top
                        .iter()
                        .map(|&(id, lp)| (text_of(tokenizer, id), number(lp)))
                        .collect();
                    tops.push(Value::Object(top));
                }
                json!({
                    "tokens": texts,
                    "token_logprobs": lps,
                    "top_logprobs": tops,
                    "text_offset": offsets,
                })
            }
        }
    }
}

fn entry(tokenizer: &Tokenizer, id: u32, logprob: f32) -> Value {
    let bytes = tokenizer.token_bytes(id).unwrap_or_default();
    json!({
        "token": String::from_utf8_lossy(bytes),
        "logprob": number(logprob),
        "bytes": bytes,
    })
}

fn text_of(tokenizer: &Tokenizer, id: u32) -> String {
    String::from_utf8_lossy(tokenizer.token_bytes(id).unwrap_or_default()).into_owned()
}

/// A log-probability as JSON. −∞ (a token the model cannot produce at all) has no JSON
/// spelling; OpenAI's clients read -9999 as "impossible", as the API itself reports.
fn number(logprob: f32) -> Value {
    if logprob.is_finite() {
        json!(logprob)
    } else {
        json!(-9999.0)
    }
}
