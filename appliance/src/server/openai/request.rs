//! OpenAI request bodies, parsed and validated into one [`Generation`] the scheduler runs.
//!
//! Parse, don't validate: a handler only ever sees a [`Generation`] whose every field is in
//! range. Unknown parameters and parameters we do not implement with a non-default value are
//! refused with a 400 that names the parameter, so a client never silently gets behaviour it
//! did not ask for (OpenAI itself answers "Unrecognized request argument supplied").
use airlock_grammar::tools::ToolSpec;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::server::error::ApiError;

/// At most this many stop sequences (OpenAI's limit).
pub const MAX_STOP_SEQUENCES: usize = 4;
/// `top_k` when the request does not set it (llama.cpp's default).
pub const DEFAULT_TOP_K: u32 = 40;
/// `min_p` when the request does not set it (llama.cpp's default).
pub const DEFAULT_MIN_P: f32 = 0.05;
/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Longest `model` name, in bytes (installed bundle names are far shorter).
pub const MAX_MODEL_BYTES: usize = 256;
/// Longest `user`, in bytes. OpenAI's end-user id reaches every request's audit record, so
/// it is bounded like every client-supplied value that is stored (ARCHITECTURE.md, "Bounds
/// on client-supplied values").
pub const MAX_USER_BYTES: usize = 256;

/// Most alternatives per token in `top_logprobs` (chat) or `logprobs` (completions):
/// OpenAI's limit for chat, applied to both.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Longest `response_format.json_schema.name` (OpenAI: a-z, A-Z, 0-9, `_`, `-`, up to 64).
pub const MAX_SCHEMA_NAME_BYTES: usize = 64;

/// Most tools one request may offer.
pub const MAX_TOOLS: usize = 64;
/// Largest `tools` array, in bytes of its JSON text (the schemas compile into a grammar, and
/// the template prints them into the prompt).
pub const MAX_TOOLS_BYTES: usize = 64 * 1024;
/// Longest tool or tool-call id and function name (OpenAI: a-z, A-Z, 0-9, `_`, `-`, 64).
pub const MAX_IDENTIFIER_BYTES: usize = 64;

/// Which endpoint a request came from: decides the prompt's shape and the response's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`: `messages`, rendered with the model's chat template.
    Chat,
    /// `POST /v1/completions`: a raw `prompt`.
    Completion,
}

impl Endpoint {
    /// The metrics/audit label.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completion => "completions",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool` (`developer` is read as `system`).
    pub role: String,
    /// The text (empty for an assistant message that only calls tools).
    pub content: String,
    /// An assistant's earlier tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A plain message.
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call in the conversation (an earlier answer's, sent back by the client).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolCall {
    /// Its id (`[A-Za-z0-9_-]`, 1..=64).
    pub id: String,
    /// The function (`[A-Za-z0-9_-]`, 1..=64).
    pub name: String,
    /// The arguments, a JSON object (OpenAI sends them as a JSON string).
    pub arguments: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model must not call a tool (tools are not shown to it).
    None,
    /// The model decides; calls in its answer are returned as `tool_calls`.
    Auto,
    /// The model must call one (or, with `parallel_tool_calls`, several) of the tools.
    Required,
    /// The model must call this function.
    Named(String),
}

/// The tools of a chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    /// The functions offered, in order.
    pub specs: Vec<ToolSpec>,
    /// What the model may or must do with them.
    pub choice: ToolChoice,
    /// `parallel_tool_calls` (default true): more than one call per answer.
    pub parallel: bool,
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Chat messages, to be rendered with the model's template.
    Chat(Vec<Message>),
    /// Raw text.
    Text(String),
}

/// Sampling and stopping parameters, every one in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy. Range [0, 2].
    pub temperature: f32,
    /// Nucleus mass, (0, 1].
    pub top_p: f32,
    /// 0 = off. Extension (llama.cpp server accepts it too).
    pub top_k: u32,
    /// 0 = off, [0, 1). Extension.
    pub min_p: f32,
    /// 1 = off. Extension.
    pub repetition_penalty: f32,
    /// Seed for reproducible sampling; `None` = from the OS.
    pub seed: Option<u64>,
    /// Generation stops before any of these strings.
    pub stop: Vec<String>,
    /// Most tokens to generate; `None` = up to the policy's maximum.
    pub max_tokens: Option<u32>,
}

/// What shape the answer must have (`response_format`).
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// `{"type": "json_object"}`: any JSON object.
    JsonObject,
    /// `{"type": "json_schema", …}`: valid against `schema`.
    JsonSchema {
        /// `json_schema.name` (recorded in the audit log).
        name: String,
        /// `json_schema.schema` (`{}` when absent: any JSON value).
        schema: Value,
        /// `json_schema.strict`: accepted either way; decoding is always constrained.
        strict: bool,
    },
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Where it came from.
    pub endpoint: Endpoint,
    /// The `model` the client named.
    pub model: String,
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling.
    pub sampling: Sampling,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// OpenAI's `user` field: an end-user id the client passes along (audited).
    pub user: Option<String>,
    /// Report log-probabilities with this many alternatives per token (`None`: off). Chat:
    /// `logprobs: true` with `top_logprobs`; completions: `logprobs: n`.
    pub logprobs: Option<u32>,
    /// Constrain the answer's shape (`None`: free text).
    pub response_format: Option<ResponseFormat>,
    /// Chat only: the tools offered (`None`: none).
    pub tools: Option<Tools>,
}

/// Parses a request body of `endpoint`. `max_completion_tokens` is the policy's ceiling.
pub fn parse(
    endpoint: Endpoint,
    body: &[u8],
    max_completion_tokens: u32,
) -> Result<Generation, ApiError> {
    let value: Value = super::json::parse(body).map_err(|e| {
        bad(
            format!("the request body is not valid JSON: {e}"),
            None::<&str>,
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err(bad("the request body must be a JSON object", None::<&str>));
    };
    let model = take_string(&mut fields, "model")?
        .ok_or_else(|| bad("you must provide a model parameter", Some("model")))?;
    check_len("model", &model, MAX_MODEL_BYTES)?;
    let prompt = match endpoint {
        Endpoint::Chat => Prompt::Chat(take_messages(&mut fields)?),
        Endpoint::Completion => Prompt::Text(take_prompt(&mut fields)?),
    };
    let stream = take::<bool>(&mut fields, "stream")?.unwrap_or(false);
    let include_usage = match fields.remove("stream_options") {
        None | Some(Value::Null) => false,
        Some(options) => {
            if !stream {
                return Err(bad(
                    "stream_options is only allowed when stream is true",
                    Some("stream_options"),
                ));
            }
            parse_stream_options(options)?
        }
    };
    let sampling = take_sampling(&mut fields, endpoint, max_completion_tokens)?;
    let user = take_string(&mut fields, "user")?;
    if let Some(user) = &user {
        check_len("user", user, MAX_USER_BYTES)?;
    }
    let logprobs = take_logprobs(&mut fields, endpoint)?;
    let response_format = match fields.remove("response_format") {
        None | Some(Value::Null) => None,
        Some(value) => parse_response_format(value)?,
    };
    let tools = match endpoint {
        Endpoint::Chat => take_tools(&mut fields)?,
        Endpoint::Completion => None,
    };
    if tools.as_ref().is_some_and(|t| t.choice != ToolChoice::None) && response_format.is_some() {
        return Err(bad(
            "response_format cannot be combined with tools (each constrains the answer)",
            Some("response_format"),
        ));
    }
    refuse_unsupported(&mut fields)?;
    if let Some(name) = fields.keys().next() {
        return Err(bad(
            format!("unrecognized request argument supplied: {name}"),
            Some(name.as_str()),
        ));
    }
    Ok(Generation {
        endpoint,
        model,
        prompt,
        sampling,
        stream,
        include_usage,
        user,
        logprobs,
        response_format,
        tools,
    })
}

/// `[A-Za-z0-9_-]{1,64}`: function names and call ids, which templates compare and print
/// as they are.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IDENTIFIER_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `tools`, `tool_choice`, `parallel_tool_calls` (chat).
fn take_tools(fields: &mut Map<String, Value>) -> Result<Option<Tools>, ApiError> {
    let tools = fields.remove("tools");
    let choice = fields.remove("tool_choice");
    let parallel = take::<bool>(fields, "parallel_tool_calls")?.unwrap_or(true);
    let items = match tools {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad("tools must be an array", Some("tools"))),
    };
    let size = serde_json::to_vec(&items).map_or(usize::MAX, |v| v.len());
    if items.len() > MAX_TOOLS || size > MAX_TOOLS_BYTES {
        return Err(bad(
            format!("at most {MAX_TOOLS} tools of {MAX_TOOLS_BYTES} bytes in all"),
            Some("tools"),
        ));
    }
    let mut specs: Vec<ToolSpec> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let spec = parse_tool(i, item)?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(bad(
                format!("two tools are named {}", spec.name),
                Some(format!("tools[{i}].function.name")),
            ));
        }
        specs.push(spec);
    }
    let choice = match choice {
        None | Some(Value::Null) => {
            if specs.is_empty() {
                ToolChoice::None
            } else {
                ToolChoice::Auto
            }
        }
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(
                    format!(
                        "tool_choice must be none, auto, required or a function, not '{other}'"
                    ),
                    Some("tool_choice"),
                ));
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match (o.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) if specs.iter().any(|s| s.name == name) => {
                    ToolChoice::Named(name.to_owned())
                }
                (Some("function"), Some(name)) => {
                    return Err(bad(
                        format!(
                            "tool_choice names {:?}, which is not among the tools",
                            name.chars().take(64).collect::<String>()
                        ),
                        Some("tool_choice"),
                    ));
                }
                _ => {
                    return Err(bad(
                        "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": …}}",
                        Some("tool_choice"),
                    ));
                }
            }
        }
        Some(_) => {
            return Err(bad(
                "tool_choice must be a string or an object",
                Some("tool_choice"),
            ));
        }
    };
    if specs.is_empty() {
        return match choice {
            ToolChoice::None => Ok(None),
            _ => Err(bad("tool_choice needs tools", Some("tool_choice"))),
        };
    }
    Ok(Some(Tools {
        specs,
        choice,
        parallel,
    }))
}

fn parse_tool(i: usize, item: Value) -> Result<ToolSpec, ApiError> {
    let p = |field: &str| format!("tools[{i}].{field}");
    let Value::Object(mut tool) = item else {
        return Err(bad(
            "each tool must be an object",
            Some(format!("tools[{i}]")),
        ));
    };
    if tool.remove("type").as_ref().and_then(Value::as_str) != Some("function") {
        return Err(bad(
            "only tools of type \"function\" are supported",
            Some(p("type")),
        ));
    }
    let Some(Value::Object(mut function)) = tool.remove("function") else {
        return Err(bad("a tool needs a function object", Some(p("function"))));
    };
    if let Some(name) = tool.keys().next() {
        return Err(bad(
            format!("unrecognized tool field: {name}"),
            Some(p(name)),
        ));
    }
    let name = match function.remove("name") {
        Some(Value::String(n)) if is_identifier(&n) => n,
        _ => {
            return Err(bad(
                "a function name is 1 to 64 characters of a-z, A-Z, 0-9, _ and -",
                Some(p("function.name")),
            ));
        }
    };
    let description = match function.remove("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d),
        Some(_) => {
            return Err(bad(
                "description must be a string",
                Some(p("function.description")),
            ));
        }
    };
    let parameters = match function.remove("parameters") {
        None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(bad(
                "parameters must be a JSON Schema object",
                Some(p("function.parameters")),
            ));
        }
    };
    // `strict` is accepted either way: a required or named call is always enforced.
    function.remove("strict");
    if let Some(field) = function.keys().next() {
        return Err(bad(
            format!("unrecognized function field: {field}"),
            Some(p(&format!("function.{field}"))),
        ));
    }
    Ok(ToolSpec {
        name,
        description,
        parameters,
    })
}

/// Chat: `logprobs` (bool) and `top_logprobs` (0–20, only with `logprobs: true`, as OpenAI
/// requires). Completions: `logprobs` (0–20 alternatives; `null` is off).
fn take_logprobs(
    fields: &mut Map<String, Value>,
    endpoint: Endpoint,
) -> Result<Option<u32>, ApiError> {
    let check = |name: &str, n: u32| {
        if n > MAX_TOP_LOGPROBS {
            Err(bad(
                format!("{name} must be between 0 and {MAX_TOP_LOGPROBS}"),
                Some(name),
            ))
        } else {
            Ok(n)
        }
    };
    match endpoint {
        Endpoint::Chat => {
            let on = take::<bool>(fields, "logprobs")?.unwrap_or(false);
            let top = take::<u32>(fields, "top_logprobs")?;
            match (on, top) {
                (false, Some(_)) => Err(bad(
                    "top_logprobs requires logprobs to be true",
                    Some("top_logprobs"),
                )),
                (false, None) => Ok(None),
                (true, top) => check("top_logprobs", top.unwrap_or(0)).map(Some),
            }
        }
        Endpoint::Completion => take::<u32>(fields, "logprobs")?
            .map(|n| check("logprobs", n))
            .transpose(),
    }
}

/// `response_format`: `text` (→ `None`), `json_object`, or `json_schema` with a name.
fn parse_response_format(value: Value) -> Result<Option<ResponseFormat>, ApiError> {
    const P: &str = "response_format";
    let Value::Object(mut format) = value else {
        return Err(bad("response_format must be an object", Some(P)));
    };
    let kind = match format.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => {
            return Err(bad(
                "response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
                Some("response_format.type"),
            ));
        }
    };
    let parsed = match kind.as_str() {
        "text" => None,
        "json_object" => Some(ResponseFormat::JsonObject),
        "json_schema" => Some(parse_json_schema(format.remove("json_schema"))?),
        other => {
            return Err(bad(
                format!(
                    "unsupported response_format.type '{other}' (expected text, json_object or json_schema)"
                ),
                Some("response_format.type"),
            ));
        }
    };
    if let Some(name) = format.keys().next() {
        return Err(bad(
            format!("unrecognized response_format field: {name}"),
            Some(format!("{P}.{name}")),
        ));
    }
    Ok(parsed)
}

fn parse_json_schema(value: Option<Value>) -> Result<ResponseFormat, ApiError> {
    const P: &str = "response_format.json_schema";
    let Some(Value::Object(mut spec)) = value else {
        return Err(bad(
            "response_format of type json_schema needs a json_schema object",
            Some(P),
        ));
    };
    let name = match spec.remove("name") {
        Some(Value::String(name))
            if !name.is_empty()
                && name.len() <= MAX_SCHEMA_NAME_BYTES
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            name
        }
        _ => {
            return Err(bad(
                format!(
                    "json_schema.name must be 1 to {MAX_SCHEMA_NAME_BYTES} characters of a-z, A-Z, 0-9, _ and -"
                ),
                Some(format!("{P}.name")),
            ));
        }
    };
    let schema = match spec.remove("schema") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(schema @ Value::Object(_)) => schema,
        Some(_) => {
            return Err(bad(
                "json_schema.schema must be a JSON Schema object",
                Some(format!("{P}.schema")),
            ));
        }
    };
    let strict = match spec.remove("strict") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(bad(
                "json_schema.strict must be a boolean",
                Some(format!("{P}.strict")),
            ));
        }
    };
    match spec.remove("description") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => {
            return Err(bad(
                "json_schema.description must be a string",
                Some(format!("{P}.description")),
            ));
        }
    }
    if let Some(field) = spec.keys().next() {
        return Err(bad(
            format!("unrecognized json_schema field: {field}"),
            Some(format!("{P}.{field}")),
        ));
    }
    Ok(ResponseFormat::JsonSchema {
        name,
        schema,
        strict,
    })
}

fn bad(message: impl Into<String>, param: Option<impl Into<String>>) -> ApiError {
    ApiError::BadRequest {
        message: message.into(),
        param: param.map(Into::into),
    }
}

/// Removes `name` and deserializes it; `null` counts as absent (OpenAI's clients send it).
fn take<T: for<'de> Deserialize<'de>>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| bad(format!("invalid value for {name}: {e}"), Some(name))),
    }
}

/// 400 naming `name` when `value` is empty or longer than `max` bytes.
fn check_len(name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(bad(
            format!("{name} must be 1 to {max} bytes (got {})", value.len()),
            Some(name),
        ));
    }
    Ok(())
}

fn take_string(fields: &mut Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    take::<String>(fields, name)
}

fn take_messages(fields: &mut Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(value) = fields.remove("messages") else {
        return Err(bad(
            "you must provide a messages parameter",
            Some("messages"),
        ));
    };
    let Value::Array(items) = value else {
        return Err(bad("messages must be an array", Some("messages")));
    };
    if items.is_empty() {
        return Err(bad("messages must not be empty", Some("messages")));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_message(i, item))
        .collect()
}

fn parse_message(index: usize, item: Value) -> Result<Message, ApiError> {
    let param = |field: &str| format!("messages[{index}].{field}");
    let Value::Object(mut fields) = item else {
        return Err(bad(
            "each message must be an object",
            Some(format!("messages[{index}]")),
        ));
    };
    let role = match fields.remove("role") {
        Some(Value::String(role)) => role,
        _ => return Err(bad("each message needs a string role", Some(param("role")))),
    };
    let role = match role.as_str() {
        "system" | "user" | "assistant" | "tool" => role,
        "developer" => "system".to_owned(),
        other => {
            return Err(bad(
                format!(
                    "unsupported role '{other}' (expected system, developer, user, assistant or tool)"
                ),
                Some(param("role")),
            ));
        }
    };
    let tool_calls = match fields.remove("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) if role == "assistant" => calls
            .into_iter()
            .enumerate()
            .map(|(j, call)| parse_tool_call(call, &format!("messages[{index}].tool_calls[{j}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                "tool_calls must be an array, on assistant messages only",
                Some(param("tool_calls")),
            ));
        }
    };
    let content = match fields.remove("content") {
        Some(Value::String(text)) => text,
        Some(Value::Array(parts)) => text_parts(parts, &param("content"))?,
        // An assistant message that only calls tools has no content.
        None | Some(Value::Null) if !tool_calls.is_empty() => String::new(),
        _ => {
            return Err(bad(
                "each message needs content: a string or an array of text parts",
                Some(param("content")),
            ));
        }
    };
    let tool_call_id = match (role.as_str(), fields.remove("tool_call_id")) {
        ("tool", Some(Value::String(id))) if is_identifier(&id) => Some(id),
        ("tool", _) => {
            return Err(bad(
                "a tool message needs the tool_call_id it answers (1 to 64 of a-z, A-Z, 0-9, _ and -)",
                Some(param("tool_call_id")),
            ));
        }
        (_, None | Some(Value::Null)) => None,
        (_, Some(_)) => {
            return Err(bad(
                "tool_call_id is for tool messages",
                Some(param("tool_call_id")),
            ));
        }
    };
    // `name` is accepted and ignored by templates that do not use it; anything else (audio,
    // refusals...) is not supported and must not be silently dropped.
    fields.remove("name");
    if let Some(name) = fields.keys().next() {
        return Err(bad(
            format!("unsupported message field: {name}"),
            Some(param(name)),
        ));
    }
    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

/// `{"id", "type": "function", "function": {"name", "arguments": "<JSON object>"}}`.
fn parse_tool_call(call: Value, param: &str) -> Result<ToolCall, ApiError> {
    let invalid = |what: &str| bad(format!("invalid tool call: {what}"), Some(param.to_owned()));
    let Value::Object(call) = call else {
        return Err(invalid("not an object"));
    };
    let id = match call.get("id") {
        Some(Value::String(id)) if is_identifier(id) => id.clone(),
        _ => return Err(invalid("id must be 1 to 64 of a-z, A-Z, 0-9, _ and -")),
    };
    if call.get("type").and_then(Value::as_str) != Some("function") {
        return Err(invalid("type must be \"function\""));
    }
    let function = call
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("no function"))?;
    let name = match function.get("name") {
        Some(Value::String(n)) if is_identifier(n) => n.clone(),
        _ => {
            return Err(invalid(
                "function.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
            ));
        }
    };
    let arguments = match function.get("arguments") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| invalid("function.arguments must be a JSON object (as a string)"))?,
        Some(v @ Value::Object(_)) => v.clone(),
        _ => {
            return Err(invalid(
                "function.arguments must be a JSON object (as a string)",
            ));
        }
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

/// `[{"type":"text","text":"..."}]` → the texts joined; any other part type is refused.
fn text_parts(parts: Vec<Value>, param: &str) -> Result<String, ApiError> {
    let mut text = String::new();
    for part in parts {
        match (part.get("type").and_then(Value::as_str), part.get("text")) {
            (Some("text"), Some(Value::String(t))) => text.push_str(t),
            _ => {
                return Err(bad(
                    "only content parts of type \"text\" are supported",
                    Some(param),
                ));
            }
        }
    }
    Ok(text)
}

fn take_prompt(fields: &mut Map<String, Value>) -> Result<String, ApiError> {
    match fields.remove("prompt") {
        Some(Value::String(text)) => Ok(text),
        // The openai client wraps a single prompt in a list when asked to.
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            Ok(items[0].as_str().unwrap_or_default().to_owned())
        }
        Some(Value::Array(_)) => Err(bad(
            "prompt must be a string (batches and token arrays are not supported)",
            Some("prompt"),
        )),
        None | Some(Value::Null) => Err(bad("you must provide a prompt parameter", Some("prompt"))),
        Some(_) => Err(bad("prompt must be a string", Some("prompt"))),
    }
}

fn parse_stream_options(options: Value) -> Result<bool, ApiError> {
    let Value::Object(mut options) = options else {
        return Err(bad(
            "stream_options must be an object",
            Some("stream_options"),
        ));
    };
    let include = match options.remove("include_usage") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(bad(
                "stream_options.include_usage must be a boolean",
                Some("stream_options.include_usage"),
            ));
        }
    };
    if let Some(name) = options.keys().next() {
        return Err(bad(
            format!("unrecognized stream option: {name}"),
            Some(format!("stream_options.{name}")),
        ));
    }
    Ok(include)
}

fn take_sampling(
    fields: &mut Map<String, Value>,
    endpoint: Endpoint,
    ceiling: u32,
) -> Result<Sampling, ApiError> {
    let temperature = take::<f32>(fields, "temperature")?.unwrap_or(1.0);
    in_range("temperature", temperature, 0.0..=2.0)?;
    let top_p = take::<f32>(fields, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad("top_p must be in (0, 1]", Some("top_p")));
    }
    // Unset top_k / min_p get llama.cpp's defaults (40, 0.05): with OpenAI's default
    // temperature of 1 and no truncation, small local models wander into noise.
    let top_k = take::<u32>(fields, "top_k")?.unwrap_or(DEFAULT_TOP_K);
    let min_p = take::<f32>(fields, "min_p")?.unwrap_or(DEFAULT_MIN_P);
    if !(0.0..1.0).contains(&min_p) {
        return Err(bad("min_p must be in [0, 1)", Some("min_p")));
    }
    let repetition_penalty = take::<f32>(fields, "repetition_penalty")?.unwrap_or(1.0);
    in_range("repetition_penalty", repetition_penalty, 0.5..=2.0)?;
    // OpenAI documents seed as an integer; negative seeds are accepted by its API, so take
    // the two's-complement bits rather than refusing them.
    let seed = match take::<i128>(fields, "seed")? {
        None => None,
        Some(s) if s >= i128::from(i64::MIN) && s <= i128::from(u64::MAX) => Some(s as u64),
        Some(_) => return Err(bad("seed must fit in 64 bits", Some("seed"))),
    };
    let stop = match fields.remove("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(bad(
                    "stop must be a string or an array of strings",
                    Some("stop"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                "stop must be a string or an array of strings",
                Some("stop"),
            ));
        }
    };
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(bad(
            format!("at most {MAX_STOP_SEQUENCES} stop sequences are allowed"),
            Some("stop"),
        ));
    }
    if stop
        .iter()
        .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
    {
        return Err(bad(
            format!("each stop sequence must be 1 to {MAX_STOP_BYTES} bytes"),
            Some("stop"),
        ));
    }
    let max_tokens = match endpoint {
        // The chat API renamed the field; accept both, refuse disagreement.
        Endpoint::Chat => {
            let new = take::<u32>(fields, "max_completion_tokens")?;
            let old = take::<u32>(fields, "max_tokens")?;
            match (new, old) {
                (Some(a), Some(b)) if a != b => {
                    return Err(bad(
                        "max_tokens and max_completion_tokens disagree; send one",
                        Some("max_completion_tokens"),
                    ));
                }
                (a, b) => a.or(b),
            }
        }
        Endpoint::Completion => take::<u32>(fields, "max_tokens")?,
    };
    if let Some(n) = max_tokens
        && (n == 0 || n > ceiling)
    {
        return Err(bad(
            format!("max_tokens must be between 1 and {ceiling} (the policy's limit)"),
            Some("max_tokens"),
        ));
    }
    Ok(Sampling {
        temperature,
        top_p,
        top_k,
        min_p,
        repetition_penalty,
        seed,
        stop,
        max_tokens,
    })
}

fn in_range(name: &str, value: f32, range: std::ops::RangeInclusive<f32>) -> Result<(), ApiError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(bad(
            format!(
                "{name} must be between {} and {}",
                range.start(),
                range.end()
            ),
            Some(name),
        ))
    }
}

/// Parameters clients commonly send at their default value: accepted at that value, refused
/// (naming the parameter) otherwise, because we do not implement them.
fn refuse_unsupported(fields: &mut Map<String, Value>) -> Result<(), ApiError> {
    let defaults: &[(&str, Value)] = &[
        ("n", Value::from(1)),
        ("frequency_penalty", Value::from(0)),
        ("presence_penalty", Value::from(0)),
        ("echo", Value::Bool(false)),
        ("best_of", Value::from(1)),
    ];
    for (name, default) in defaults {
        match fields.remove(*name) {
            None | Some(Value::Null) => {}
            Some(value) if same_number_or_value(&value, default) => {}
            Some(_) => {
                return Err(bad(
                    format!("{name} is not supported (only its default {default} is accepted)"),
                    Some(*name),
                ));
            }
        }
    }
    // Empty forms of features we lack are harmless; anything else is refused by the
    // unknown-argument check.
    for name in ["functions", "logit_bias", "metadata"] {
        if let Some(value) = fields.get(name) {
            let empty = match value {
                Value::Null => true,
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            };
            if empty {
                fields.remove(name);
            } else {
                return Err(bad(format!("{name} is not supported"), Some(name)));
            }
        }
    }
    Ok(())
}

fn same_number_or_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Generation, ApiError> {
        parse(Endpoint::Chat, body.as_bytes(), 1024)
    }

    fn param_of(err: ApiError) -> Option<String> {
        match err {
            ApiError::BadRequest { param, .. } => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn minimal_chat_request_gets_openai_defaults() {
        let g = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(g.model, "m");
        assert_eq!(g.prompt, Prompt::Chat(vec![Message::text("user", "hi")]));
        assert_eq!(g.sampling.temperature, 1.0);
        assert_eq!(g.sampling.top_p, 1.0);
        assert_eq!(g.sampling.max_tokens, None);
        assert!(!g.stream && !g.include_usage);
    }

    #[test]
    fn full_chat_request_is_read() {
        let g = chat(
            r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                "stream":true,"stream_options":{"include_usage":true},"temperature":0,"top_p":0.5,
                "seed":-1,"stop":["x","y"],"max_completion_tokens":7,"user":"case-42","n":1,
                "frequency_penalty":0.0,"logprobs":false,"tools":[]}"#,
        )
        .unwrap();
        assert_eq!(g.prompt, Prompt::Chat(vec![Message::text("system", "ab")]));
        assert!(g.stream && g.include_usage);
        assert_eq!(g.sampling.temperature, 0.0);
        assert_eq!(g.sampling.seed, Some(u64::MAX));
        assert_eq!(g.sampling.stop, vec!["x", "y"]);
        assert_eq!(g.sampling.max_tokens, Some(7));
        assert_eq!(g.user.as_deref(), Some("case-42"));
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let cases = [
            (r#"{"messages":[{"role":"user","content":"hi"}]}"#, "model"),
            (r#"{"model":"m"}"#, "messages"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                "messages[0].tool_call_id",
            ),
            (
                r#"{"model":"m","messages":[{"role":"critic","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[]}]}"#,
                "messages[0].tool_calls",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
                "n",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                "top_p",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":5000}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_completion_tokens":6}"#,
                "max_completion_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                "stream_options",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"presence_penalty":1}"#,
                "presence_penalty",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#,
                "tools[0].function",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}"#,
                "tool_choice",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#,
                "tool_choice",
            ),
            (
                r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}"#,
                "messages[0].tool_calls[0]",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"frobnicate":1}"#,
                "frobnicate",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":"x"}"#,
                "seed",
            ),
        ];
        for (body, param) in cases {
            let err = chat(body).expect_err(body);
            assert_eq!(param_of(err).as_deref(), Some(param), "{body}");
        }
    }

    /// Regression (hardening issue, vulnerability 2): a 4 MB `user` reached every record.
    #[test]
    fn stored_strings_are_bounded_and_named() {
        let long = "u".repeat(MAX_USER_BYTES + 1);
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"user":"{long}"}}"#
        );
        assert_eq!(
            param_of(chat(&body).expect_err("user")).as_deref(),
            Some("user")
        );
        let ok = body.replace(&long, &long[1..]);
        assert!(chat(&ok).is_ok());
        let body = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"x"}}]}}"#,
            "m".repeat(MAX_MODEL_BYTES + 1)
        );
        assert_eq!(
            param_of(chat(&body).expect_err("model")).as_deref(),
            Some("model")
        );
    }

    #[test]
    fn completion_prompt_shapes() {
        let p = |body: &str| parse(Endpoint::Completion, body.as_bytes(), 16);
        assert_eq!(
            p(r#"{"model":"m","prompt":"abc","max_tokens":16}"#)
                .unwrap()
                .prompt,
            Prompt::Text("abc".into())
        );
        assert_eq!(
            p(r#"{"model":"m","prompt":["abc"]}"#).unwrap().prompt,
            Prompt::Text("abc".into())
        );
        for body in [
            r#"{"model":"m","prompt":["a","b"]}"#,
            r#"{"model":"m","prompt":[1,2]}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","prompt":"a","echo":true}"#,
            r#"{"model":"m","prompt":"a","max_completion_tokens":3}"#,
        ] {
            let err = p(body).expect_err(body);
            assert!(param_of(err).is_some(), "{body}");
        }
    }

    #[test]
    fn non_json_and_non_object_bodies_are_400_without_param() {
        for body in ["", "{", "[]", "42"] {
            let err = chat(body).expect_err(body);
            assert_eq!(param_of(err), None, "{body}");
        }
    }
}
