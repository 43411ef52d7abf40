//! OpenAI response bodies and their streaming (Server-Sent Events) form.
//!
//! Shapes follow OpenAI's API reference for `chat.completion`, `chat.completion.chunk` and
//! `text_completion`; the `openai` Python client parses them (tested in the API tests).
use serde::Serialize;
use serde_json::json;

use super::request::Endpoint;

/// Why generation ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of sequence or a stop string.
    Stop,
    /// `max_tokens` (or the context) reached.
    Length,
    /// The answer is tool calls.
    ToolCalls,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Prompt tokens (after the chat template).
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
    /// Breakdown of the prompt tokens (OpenAI's `prompt_tokens_details`).
    pub prompt_tokens_details: PromptTokensDetails,
}

/// OpenAI's `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens resumed from this client's cached prefix instead of recomputed.
    pub cached_tokens: u32,
}

impl Usage {
    /// Counts for `prompt` and `completion` tokens (none cached).
    pub fn new(prompt: u32, completion: u32) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: PromptTokensDetails { cached_tokens: 0 },
        }
    }

    /// The same counts with `cached` of the prompt tokens resumed from the prefix cache.
    pub fn with_cached(mut self, cached: u32) -> Usage {
        self.prompt_tokens_details.cached_tokens = cached;
        self
    }
}

/// What identifies one response across its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `chatcmpl-…` / `cmpl-…`, derived from the request id.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model name served.
    pub model: String,
}

impl Header {
    /// The id prefix OpenAI uses for `endpoint`, followed by the request id (so the response
    /// can be found in the audit log).
    pub fn new(endpoint: Endpoint, request_id: &str, created: u64, model: &str) -> Header {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        Header {
            id: format!("{prefix}-{request_id}"),
            created,
            model: model.to_owned(),
        }
    }
}

/// The whole (non-streamed) response.
pub fn complete(
    endpoint: Endpoint,
    header: &Header,
    text: &str,
    logprobs: Option<serde_json::Value>,
    finish: FinishReason,
    usage: Usage,
) -> serde_json::Value {
    complete_with_tools(endpoint, header, Some(text), None, logprobs, finish, usage)
}

/// [`complete`] for a chat answer that may call tools: `content` is `null` when the answer
/// is only calls.
pub fn complete_with_tools(
    endpoint: Endpoint,
    header: &Header,
    text: Option<&str>,
    tool_calls: Option<serde_json::Value>,
    logprobs: Option<serde_json::Value>,
    finish: FinishReason,
    usage: Usage,
) -> serde_json::Value {
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(calls) = tool_calls {
        message["tool_calls"] = calls;
    }
    match endpoint {
        Endpoint::Chat => json!({
            "id": header.id,
            "object": "chat.completion",
            "created": header.created,
            "model": header.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": finish,
            }],
            "usage": usage,
        }),
        Endpoint::Completion => json!({
            "id": header.id,
            "object": "text_completion",
            "created": header.created,
            "model": header.model,
            "choices": [{
                "index": 0,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": finish,
            }],
            "usage": usage,
        }),
    }
}

/// One streamed chunk: the first chat chunk carries the role, later ones text, the last
/// one the finish reason. With `include_usage`, every chunk has `"usage": null` and one
/// extra chunk with empty `choices` carries the usage (OpenAI's documented behaviour).
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk<'a> {
    /// Chat only: `{"role":"assistant","content":""}`.
    Role,
    /// A piece of text, with its tokens' `logprobs` when the request asked.
    Text(&'a str, Option<serde_json::Value>),
    /// Chat only: the answer's tool calls (each with its `index`), in one delta.
    ToolCalls(serde_json::Value),
    /// The end of the choice.
    Finish(FinishReason),
    /// The usage chunk (only with `include_usage`).
    Usage(Usage),
}

/// A chunk as an SSE event (`data: {json}\n\n`).
pub fn sse_chunk(
    endpoint: Endpoint,
    header: &Header,
    chunk: &Chunk<'_>,
    include_usage: bool,
) -> String {
    let (object, choices, usage) = match (endpoint, chunk) {
        (_, Chunk::Usage(usage)) => (object(endpoint), json!([]), json!(usage)),
        (Endpoint::Chat, Chunk::Role) => (
            object(endpoint),
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            serde_json::Value::Null,
        ),
        (Endpoint::Chat, Chunk::Text(text, logprobs)) => (
            object(endpoint),
            json!([{"index": 0, "delta": {"content": text}, "logprobs": logprobs, "finish_reason": null}]),
            serde_json::Value::Null,
        ),
        (Endpoint::Chat, Chunk::ToolCalls(calls)) => (
            object(endpoint),
            json!([{"index": 0, "delta": {"tool_calls": calls}, "logprobs": null, "finish_reason": null}]),
            serde_json::Value::Null,
        ),
        // Completions have no tools; the parser never makes this chunk for them.
        (Endpoint::Completion, Chunk::ToolCalls(_)) => (
            object(endpoint),
            json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": null}]),
            serde_json::Value::Null,
        ),
        (Endpoint::Chat, Chunk::Finish(reason)) => (
            object(endpoint),
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]),
            serde_json::Value::Null,
        ),
        (Endpoint::Completion, Chunk::Role) => (
            object(endpoint),
            json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": null}]),
            serde_json::Value::Null,
        ),
        (Endpoint::Completion, Chunk::Text(text, logprobs)) => (
            object(endpoint),
            json!([{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": null}]),
            serde_json::Value::Null,
        ),
        (Endpoint::Completion, Chunk::Finish(reason)) => (
            object(endpoint),
            json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": reason}]),
            serde_json::Value::Null,
        ),
    };
    let mut body = json!({
        "id": header.id,
        "object": object,
        "created": header.created,
        "model": header.model,
        "choices": choices,
    });
    if include_usage {
        body["usage"] = usage;
    }
    format!("data: {body}\n\n")
}

/// The stream's terminator.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// An error after the stream started (status is already 200): OpenAI sends the error body as
/// an event, then ends the stream.
pub fn sse_error(message: &str, code: &str) -> String {
    let body =
        json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}});
    format!("data: {body}\n\n")
}

fn object(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chat.completion.chunk",
        Endpoint::Completion => "text_completion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::new(Endpoint::Chat, "r1", 1_700_000_000, "smollm2")
    }

    fn parse_event(event: &str) -> serde_json::Value {
        let data = event
            .strip_prefix("data: ")
            .and_then(|e| e.strip_suffix("\n\n"))
            .expect("an SSE data event");
        serde_json::from_str(data).expect("JSON")
    }

    #[test]
    fn chat_completion_shape() {
        let body = complete(
            Endpoint::Chat,
            &header(),
            "hello",
            None,
            FinishReason::Stop,
            Usage::new(3, 2).with_cached(2),
        );
        assert_eq!(body["id"], "chatcmpl-r1");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["message"]["content"], "hello");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["total_tokens"], 5);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    }

    #[test]
    fn text_completion_shape() {
        let h = Header::new(Endpoint::Completion, "r2", 1, "m");
        let body = complete(
            Endpoint::Completion,
            &h,
            "x",
            None,
            FinishReason::Length,
            Usage::new(1, 1),
        );
        assert_eq!(body["id"], "cmpl-r2");
        assert_eq!(body["object"], "text_completion");
        assert_eq!(body["choices"][0]["text"], "x");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn chat_stream_chunks() {
        let h = header();
        let role = parse_event(&sse_chunk(Endpoint::Chat, &h, &Chunk::Role, false));
        assert_eq!(role["object"], "chat.completion.chunk");
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert!(role.get("usage").is_none());
        let text = parse_event(&sse_chunk(
            Endpoint::Chat,
            &h,
            &Chunk::Text("a\"b\n", None),
            true,
        ));
        assert_eq!(text["choices"][0]["delta"]["content"], "a\"b\n");
        assert!(text["usage"].is_null());
        let fin = parse_event(&sse_chunk(
            Endpoint::Chat,
            &h,
            &Chunk::Finish(FinishReason::Length),
            true,
        ));
        assert_eq!(fin["choices"][0]["finish_reason"], "length");
        let usage = parse_event(&sse_chunk(
            Endpoint::Chat,
            &h,
            &Chunk::Usage(Usage::new(4, 5)),
            true,
        ));
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 5);
        assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    }

    #[test]
    fn errors_in_a_stream_are_events() {
        let e = parse_event(&sse_error("audit log unavailable", "audit_unavailable"));
        assert_eq!(e["error"]["code"], "audit_unavailable");
        assert_eq!(SSE_DONE, "data: [DONE]\n\n");
    }
}
