//! `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`.
//!
//! Order of work for a generation, each step refusing before the next costs anything:
//! parse and validate (400) → find the model (404) → render and tokenize, check prompt and
//! context limits (400) → append `inference.request` to the audit log and wait until it is
//! durable (503 if not: no record, no answer) → queue for the decode thread (429 if full) →
//! stream or collect the answer → append `inference.response` (also when the client went
//! away mid-stream: it is then marked cancelled).
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use airlock_engine::{CacheScope, EngineError, SamplingParams, TokenConstraint};
use audit::{Event, Kind, ModelRef};
use futures_util::stream::Stream;
use serde_json::json;
use tokio::sync::mpsc;

use super::logprobs::LogprobsWriter;
use super::request::{self, Endpoint, Generation, Prompt, ResponseFormat};
use super::response::{self, Chunk, FinishReason, Header, Usage};
use crate::scheduler::{Event as GenEvent, Finish, Job, SubmitError};
use crate::server::audit::request_event;
use crate::server::body::read_body;
use crate::server::error::ApiError;
use crate::server::identity::Identity;
use crate::server::models::{LoadedModel, unix_now};
use crate::server::state::AppState;
use crate::server::subject::Subject;

/// `GET /v1/models`.
pub async fn list_models(state: web::Data<AppState>) -> HttpResponse {
    let data: Vec<_> = state
        .models
        .list()
        .iter()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": m.loaded_at,
                "owned_by": "airlock",
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    generate(Endpoint::Chat, req, state, payload).await
}

/// `POST /v1/completions`.
pub async fn completions(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    generate(Endpoint::Completion, req, state, payload).await
}

async fn generate(
    endpoint: Endpoint,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let limits = &state.policy.limits;
    let body = inference_body(&state, payload).await?;
    let generation = request::parse(endpoint, &body, limits.max_completion_tokens)?;
    let subject = Subject::from_request(&req)?.map(Subject::into_string);
    let model = state
        .models
        .get(&generation.model)
        .ok_or_else(|| ApiError::ModelNotFound(generation.model.clone()))?;
    let (prompt_text, prompt) = tokenize(&model, &generation, limits.max_prompt_tokens).await?;
    let context = model.engine.model().config().context_length;
    if prompt.len() > limits.max_prompt_tokens as usize {
        return Err(ApiError::BadRequest {
            message: format!(
                "the prompt is {} tokens; the policy allows at most {}",
                prompt.len(),
                limits.max_prompt_tokens
            ),
            param: Some(prompt_param(endpoint).into()),
        });
    }
    let room = context.saturating_sub(prompt.len());
    let max_tokens = match generation.sampling.max_tokens {
        Some(n) if n as usize > room => {
            return Err(ApiError::ContextLengthExceeded {
                context,
                prompt: prompt.len(),
                requested: n as usize,
            });
        }
        Some(n) => n as usize,
        None if room == 0 => {
            return Err(ApiError::ContextLengthExceeded {
                context,
                prompt: prompt.len(),
                requested: 1,
            });
        }
        None => room.min(limits.max_completion_tokens as usize),
    };

    let constraint = match (&generation.response_format, &generation.tools) {
        (Some(format), _) => Some(constrain(&model, format).await?),
        (None, Some(tools)) => match super::tools::grammar(&model.engine, tools) {
            Some(Ok(grammar)) => Some(compile(&model, grammar, "tools").await?),
            Some(Err(why)) => {
                return Err(ApiError::BadRequest {
                    message: format!("tool calls cannot be enforced for this model: {why}"),
                    param: Some("tool_choice".into()),
                });
            }
            None => None,
        },
        (None, None) => None,
    };

    // The record of the request is durable before any token is computed.
    let model_ref = model_ref(&model);
    let mut request_record = request_event(Kind::InferenceRequest, &req);
    request_record.model = Some(model_ref.clone());
    request_record.prompt = Some(prompt_text.into_bytes());
    request_record.subject = subject.clone();
    request_record.params = params(&generation, max_tokens);
    state.audit.append(request_record).await?;

    let job = Job {
        prompt: prompt.clone(),
        max_tokens,
        sampling: sampling(&generation),
        stop: generation.sampling.stop.clone(),
        cache_scope: req
            .conn_data::<Identity>()
            .map(|id| cache_scope(id, generation.user.as_deref(), subject.as_deref())),
        logprobs: generation.logprobs.map(|n| n as usize),
        constraint,
    };
    let mut response_record = request_event(Kind::InferenceResponse, &req);
    response_record.model = Some(model_ref);
    response_record.subject = subject;
    let mut finisher = Finisher {
        state: state.clone(),
        record: Some(response_record),
        output: String::new(),
        prompt_tokens: prompt.len() as u64,
        completion_tokens: 0,
        cached_tokens: None,
        started,
    };
    let events = match model.scheduler.submit(job) {
        Ok(events) => events,
        Err(e) => {
            let e = submit_error(e);
            // The request record is durable: its outcome must be too, or the refusal reads
            // like a request cut off by a crash. The client hears the refusal either way.
            if let Some(record) = finisher.record.as_mut() {
                record.params.insert("reason".into(), e.to_string());
            }
            finisher.finish(e.status_code().as_str()).await;
            return Err(e);
        }
    };

    let header = Header::new(endpoint, &request_id(&req), unix_now(), &model.name);
    let logprobs = generation.logprobs.map(|_| Logprobs {
        model: Arc::clone(&model),
        writer: LogprobsWriter::new(endpoint),
    });
    let tools = generation
        .tools
        .clone()
        .filter(|t| t.choice != request::ToolChoice::None)
        .map(|tools| ToolContext {
            model: Arc::clone(&model),
            tools,
            request_id: request_id(&req),
            held: Vec::new(),
        });
    if generation.stream {
        let stream = sse_stream(
            endpoint,
            header,
            generation.include_usage,
            events,
            finisher,
            logprobs,
            tools,
        );
        Ok(HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/event-stream"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .streaming(stream))
    } else {
        collect(endpoint, header, events, finisher, logprobs, tools).await
    }
}

/// A chat request that offered tools: its answer is read for calls once complete (a stream
/// holds its text back until then, since a call's start cannot be told from prose early).
struct ToolContext {
    model: Arc<LoadedModel>,
    tools: request::Tools,
    request_id: String,
    /// Log-probabilities of the held-back text.
    held: Vec<airlock_engine::TokenLogprobs>,
}

/// The answer of a request with tools, as the client gets it.
struct ToolAnswer {
    content: Option<String>,
    calls: serde_json::Value,
    names: Vec<String>,
}

impl ToolContext {
    /// The calls in `text`, if any.
    fn answer(&self, text: &str, streamed: bool) -> Option<ToolAnswer> {
        let (content, calls) = super::tools::split(&self.model.engine, Some(&self.tools), text)?;
        if calls.is_empty() {
            return None;
        }
        Some(ToolAnswer {
            content,
            calls: super::tools::openai_calls(
                &self.model.engine,
                &self.request_id,
                &calls,
                streamed,
            ),
            names: calls.into_iter().map(|c| c.name).collect(),
        })
    }
}

/// Reads the calls in a finished answer `text` (a request with tools), records them on the
/// response record (names are `[A-Za-z0-9_-]{1,64}` from the request's tools: bounded), and
/// gives the record's status and the finish reason: `tool_calls` when the answer ended
/// naturally with calls.
fn read_calls(
    tools: Option<&ToolContext>,
    finisher: &mut Finisher,
    text: &str,
    finish: Finish,
    streamed: bool,
) -> (Option<ToolAnswer>, &'static str, FinishReason) {
    let answer = tools.and_then(|t| t.answer(text, streamed));
    if let (Some(answer), Some(record)) = (&answer, finisher.record.as_mut()) {
        record
            .params
            .insert("tool_calls".into(), answer.names.join(","));
    }
    let (status, reason) = match (&answer, finish) {
        (Some(_), Finish::Stop) => ("tool_calls", FinishReason::ToolCalls),
        _ => (status_of(finish), finish_reason(finish)),
    };
    (answer, status, reason)
}

/// Compiles `format` against the model's vocabulary (off the I/O threads: indexing the
/// vocabulary the first time takes a few hundred milliseconds, a schema milliseconds).
async fn constrain(
    model: &Arc<LoadedModel>,
    format: &ResponseFormat,
) -> Result<Box<dyn TokenConstraint>, ApiError> {
    const SCHEMA: &str = "response_format.json_schema.schema";
    let grammar = match format {
        ResponseFormat::JsonObject => airlock_grammar::json_object(),
        ResponseFormat::JsonSchema { schema, .. } => airlock_grammar::json_schema(schema.clone())
            .map_err(|e| ApiError::BadRequest {
            message: e.to_string(),
            param: Some(SCHEMA.into()),
        })?,
    };
    let param = match format {
        ResponseFormat::JsonObject => "response_format",
        ResponseFormat::JsonSchema { .. } => SCHEMA,
    };
    compile(model, grammar, param).await
}

/// Compiles `grammar` for `model`; a grammar that cannot be enforced is a 400 naming `param`.
async fn compile(
    model: &Arc<LoadedModel>,
    grammar: airlock_grammar::Grammar,
    param: &str,
) -> Result<Box<dyn TokenConstraint>, ApiError> {
    let model = Arc::clone(model);
    let compiled = web::block(move || {
        let vocabulary = model.vocabulary()?;
        vocabulary.compile(&grammar)
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    match compiled {
        Ok(constraint) => Ok(Box::new(constraint)),
        Err(airlock_grammar::GrammarError::Unsupported(why)) => Err(ApiError::BadRequest {
            message: format!("the schema cannot be enforced: {why}"),
            param: Some(param.into()),
        }),
        Err(e @ airlock_grammar::GrammarError::Vocabulary(_)) => Err(ApiError::BadRequest {
            message: format!("structured output is not available for this model: {e}"),
            param: Some("response_format".into()),
        }),
    }
}

/// What a response needs to report log-probabilities: the tokenizer (through the model the
/// request holds) and the writer's running text offset.
struct Logprobs {
    model: Arc<LoadedModel>,
    writer: LogprobsWriter,
}

impl Logprobs {
    fn write(&mut self, tokens: &[airlock_engine::TokenLogprobs]) -> serde_json::Value {
        self.writer.write(self.model.engine.tokenizer(), tokens)
    }
}

/// The body of an inference request (within `max_body_bytes`: 413), once a model is there to
/// answer it (503 `model_not_loaded` otherwise: parsing waits until it could matter).
pub(super) async fn inference_body(
    state: &AppState,
    payload: web::Payload,
) -> Result<Bytes, ApiError> {
    let body = read_body(state, payload).await?;
    if state.models.is_empty() {
        return Err(ApiError::Unavailable {
            message: "no model is loaded yet (install and activate a bundle)".into(),
            code: "model_not_loaded",
        });
    }
    Ok(body)
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::QueueFull => ApiError::TooManyRequests {
            message: "the inference queue is full; retry shortly".into(),
            retry_after_secs: 1,
        },
        SubmitError::TooLarge { needed, budget } => ApiError::BadRequest {
            message: format!(
                "the request needs {needed} KV-cache positions (prompt + max_tokens); the server's budget is {budget}"
            ),
            param: Some("max_tokens".into()),
        },
        SubmitError::Closed => ApiError::Unavailable {
            message: "the model is being replaced; retry".into(),
            code: "model_not_loaded",
        },
    }
}

/// Whose cached prompt prefixes a request may reuse: the client certificate's, and within it
/// the same end user (`user`) and data subject (`Airlock-Subject`) only. Shared across
/// identities, a faster first token would tell one client what another's prompts begin with
/// (see `airlock_engine::prefix`); narrowing by `user` and subject keeps that true between the
/// end users of an application that shares one certificate, when it names them.
fn cache_scope(id: &Identity, user: Option<&str>, subject: Option<&str>) -> CacheScope {
    let mut key = id.fingerprint().0.to_vec();
    // Each part length-prefixed (absent ≠ empty), so no two scopes share an encoding.
    for part in [user, subject] {
        match part {
            None => key.push(0),
            Some(p) => {
                key.push(1);
                key.extend_from_slice(&(p.len() as u64).to_be_bytes());
                key.extend_from_slice(p.as_bytes());
            }
        }
    }
    CacheScope::new(key)
}

fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<crate::server::request_id::RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "unknown".into())
}

fn prompt_param(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "messages",
        Endpoint::Completion => "prompt",
    }
}

/// The prompt as the model sees it (template applied) and its token ids.
///
/// Encoding costs time in proportion to the text, so a prompt that cannot fit
/// `max_prompt_tokens` whatever its encoding is refused from its length alone, and the
/// encoding runs on the blocking pool: a few huge prompts must not stall the I/O workers
/// that answer every other connection (`/healthz` took 13 s behind ten 4 MB prompts).
async fn tokenize(
    model: &Arc<LoadedModel>,
    generation: &Generation,
    max_prompt_tokens: u32,
) -> Result<(String, Vec<u32>), ApiError> {
    let engine = &model.engine;
    let param = prompt_param(generation.endpoint);
    let bytes = match &generation.prompt {
        Prompt::Chat(messages) => messages.iter().map(|m| m.content.len()).sum(),
        Prompt::Text(text) => text.len(),
    };
    // Each token stands for at most `max_token_bytes`: fewer tokens cannot cover the text.
    let at_least = bytes / engine.tokenizer().max_token_bytes().max(1);
    if at_least > max_prompt_tokens as usize {
        return Err(ApiError::BadRequest {
            message: format!(
                "the prompt is at least {at_least} tokens ({bytes} bytes); the policy allows at most {max_prompt_tokens}"
            ),
            param: Some(param.into()),
        });
    }
    if let Prompt::Chat(_) = &generation.prompt
        && !engine.has_chat_template()
    {
        return Err(ApiError::BadRequest {
            message: format!(
                "model {} has no chat template; use /v1/completions",
                model.name
            ),
            param: Some("model".into()),
        });
    }
    let (model, prompt, tools) = (
        Arc::clone(model),
        generation.prompt.clone(),
        generation.tools.clone(),
    );
    let (text, ids) = web::block(move || encode(&model, prompt, tools.as_ref()))
        .await
        .map_err(|_| ApiError::Internal)??;
    if ids.is_empty() {
        return Err(ApiError::BadRequest {
            message: "the prompt is empty".into(),
            param: Some(param.into()),
        });
    }
    Ok((text, ids))
}

fn encode(
    model: &LoadedModel,
    prompt: Prompt,
    tools: Option<&request::Tools>,
) -> Result<(String, Vec<u32>), ApiError> {
    match prompt {
        Prompt::Chat(messages) => {
            let (messages, tools) = super::tools::conversation(&model.engine, messages, tools);
            let prompt = model
                .engine
                .chat_prompt_with_tools(&messages, tools.as_ref())
                .map_err(chat_prompt_error)?;
            Ok((prompt.text, prompt.ids))
        }
        // Special tokens in a raw prompt are parsed, as llama.cpp's server does: the
        // completions endpoint is for callers that format prompts themselves (the prompt
        // is their own template), so `<|im_start|>` there is the caller's choice.
        Prompt::Text(text) => {
            let ids = model
                .engine
                .encode(&text, true)
                .map_err(|_| ApiError::Internal)?;
            Ok((text, ids))
        }
    }
}

/// A chat prompt the template or the tokenizer refused: the client's messages are at fault
/// (a template's `raise_exception`, a reserved character) unless the template itself mangles
/// content, which no request can fix.
fn chat_prompt_error(e: EngineError) -> ApiError {
    use airlock_engine::airlock_tokenizer::TokenizerError as T;
    match e {
        EngineError::Tokenizer(T::ReservedCharacter { message, .. }) => ApiError::BadRequest {
            message: e.to_string(),
            param: Some(format!("messages[{message}].content")),
        },
        EngineError::Tokenizer(T::ReservedToolCharacter { .. }) => ApiError::BadRequest {
            message: e.to_string(),
            param: Some("tools".into()),
        },
        EngineError::Tokenizer(T::TemplateRender { .. }) => ApiError::BadRequest {
            message: format!("the model's chat template refused these messages: {e}"),
            param: Some("messages".into()),
        },
        EngineError::Tokenizer(T::TemplateAltersContent { .. }) => ApiError::BadRequest {
            message: format!("{e}; use /v1/completions with a prompt formatted by the caller"),
            param: Some("messages".into()),
        },
        _ => ApiError::Internal,
    }
}

fn model_ref(model: &LoadedModel) -> ModelRef {
    ModelRef {
        name: model.name.clone(),
        version: model.version.clone(),
        sha256: model.sha256,
    }
}

fn sampling(generation: &Generation) -> SamplingParams {
    let s = &generation.sampling;
    SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k as usize,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repetition_penalty,
        seed: s.seed,
        ..SamplingParams::greedy()
    }
}

/// The parameters recorded with the request (never the content: that is the prompt field,
/// digested or sealed per policy).
fn params(
    generation: &Generation,
    max_tokens: usize,
) -> std::collections::BTreeMap<String, String> {
    let s = &generation.sampling;
    let mut p = std::collections::BTreeMap::new();
    p.insert("endpoint".into(), generation.endpoint.as_str().into());
    p.insert("max_tokens".into(), max_tokens.to_string());
    p.insert("temperature".into(), s.temperature.to_string());
    p.insert("top_p".into(), s.top_p.to_string());
    p.insert("stream".into(), generation.stream.to_string());
    if let Some(seed) = s.seed {
        p.insert("seed".into(), seed.to_string());
    }
    if !s.stop.is_empty() {
        p.insert("stop_count".into(), s.stop.len().to_string());
    }
    if let Some(user) = &generation.user {
        let (key, value) = stored_user(user);
        p.insert(key.into(), value);
    }
    if let Some(n) = generation.logprobs {
        p.insert("logprobs".into(), n.to_string());
    }
    if let Some(tools) = &generation.tools {
        // Names are `[A-Za-z0-9_-]{1,64}`, at most MAX_TOOLS of them: bounded.
        let names: Vec<&str> = tools.specs.iter().map(|s| s.name.as_str()).collect();
        p.insert("tools".into(), names.join(","));
        let choice = match &tools.choice {
            request::ToolChoice::None => "none".to_owned(),
            request::ToolChoice::Auto => "auto".to_owned(),
            request::ToolChoice::Required => "required".to_owned(),
            request::ToolChoice::Named(n) => format!("function:{n}"),
        };
        if matches!(
            tools.choice,
            request::ToolChoice::Required | request::ToolChoice::Named(_)
        ) {
            p.insert("constrained".into(), "true".into());
        }
        p.insert("tool_choice".into(), choice);
    }
    // Structured outputs: what constrained the answer, never the schema itself (it may
    // hold field names and examples from the client's domain); its digest identifies it.
    match &generation.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => {
            p.insert("response_format".into(), "json_object".into());
            p.insert("constrained".into(), "true".into());
        }
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            p.insert("response_format".into(), "json_schema".into());
            p.insert("constrained".into(), "true".into());
            // Validated: 1-64 characters of [A-Za-z0-9_-].
            p.insert("schema_name".into(), name.clone());
            p.insert("schema_strict".into(), strict.to_string());
            let text = serde_json::to_vec(schema).unwrap_or_default();
            p.insert("schema_sha256".into(), audit::Digest::of(&text).to_string());
        }
    }
    p
}

/// Longest `user` kept verbatim in a record; a longer or non-printable one is kept as its
/// digest, which still tells an auditor which requests came from the same end user.
const MAX_STORED_USER_BYTES: usize = 64;

fn stored_user(user: &str) -> (&'static str, String) {
    if user.len() <= MAX_STORED_USER_BYTES && !user.chars().any(char::is_control) {
        ("user", user.to_owned())
    } else {
        (
            "user_sha256",
            audit::Digest::of(user.as_bytes()).to_string(),
        )
    }
}

/// Writes `inference.response` once, when the generation ends or is abandoned.
struct Finisher {
    state: web::Data<AppState>,
    record: Option<Event>,
    output: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Prompt tokens resumed from the prefix cache, once the scheduler has said.
    cached_tokens: Option<u64>,
    started: Instant,
}

impl Finisher {
    fn event(&mut self, status: &str) -> Option<Event> {
        let mut record = self.record.take()?;
        record.output = Some(std::mem::take(&mut self.output).into_bytes());
        record.tokens = Some(audit::Tokens {
            prompt: self.prompt_tokens,
            completion: self.completion_tokens,
        });
        if let Some(n) = self.cached_tokens {
            record.params.insert("cached_tokens".into(), n.to_string());
        }
        record.status = Some(status.into());
        record.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        Some(record)
    }

    /// Records the end; returns whether the record is durable.
    async fn finish(&mut self, status: &str) -> bool {
        match self.event(status) {
            Some(event) => self.state.audit.append(event).await.is_ok(),
            None => true,
        }
    }
}

impl Drop for Finisher {
    /// The client went away (or the stream failed) before [`Finisher::finish`]: record the
    /// cancellation from a task, since `Drop` cannot wait.
    fn drop(&mut self) {
        if let Some(event) = self.event("cancelled") {
            let state = self.state.clone();
            actix_web::rt::spawn(async move {
                if state.audit.append(event).await.is_err() {
                    tracing::error!("could not record a cancelled generation");
                }
            });
        }
    }
}

fn finish_reason(finish: Finish) -> FinishReason {
    match finish {
        Finish::Stop => FinishReason::Stop,
        Finish::Length => FinishReason::Length,
    }
}

fn status_of(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

async fn collect(
    endpoint: Endpoint,
    header: Header,
    mut events: mpsc::UnboundedReceiver<GenEvent>,
    mut finisher: Finisher,
    mut logprobs: Option<Logprobs>,
    tools: Option<ToolContext>,
) -> Result<HttpResponse, ApiError> {
    let mut tokens = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            GenEvent::Text {
                text,
                completion_tokens,
                logprobs,
            } => {
                finisher.output.push_str(&text);
                finisher.completion_tokens = completion_tokens as u64;
                tokens.extend(logprobs);
            }
            GenEvent::Done {
                finish,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            } => {
                finisher.completion_tokens = completion_tokens as u64;
                finisher.cached_tokens = Some(cached_tokens as u64);
                let text = finisher.output.clone();
                let (answer, status, reason) =
                    read_calls(tools.as_ref(), &mut finisher, &text, finish, false);
                // The answer is shown only once its record is durable.
                if !finisher.finish(status).await {
                    return Err(ApiError::from(crate::server::audit::AuditUnavailable));
                }
                let usage = Usage::new(prompt_tokens as u32, completion_tokens as u32)
                    .with_cached(cached_tokens as u32);
                let logprobs = logprobs.as_mut().map(|l| l.write(&tokens));
                let body = match answer {
                    Some(answer) => response::complete_with_tools(
                        endpoint,
                        &header,
                        answer.content.as_deref(),
                        Some(answer.calls),
                        logprobs,
                        reason,
                        usage,
                    ),
                    None => response::complete(endpoint, &header, &text, logprobs, reason, usage),
                };
                return Ok(HttpResponse::Ok().json(body));
            }
            GenEvent::Failed(message) => {
                tracing::error!(%message, "generation failed");
                finisher.finish("error").await;
                return Err(ApiError::Internal);
            }
        }
    }
    finisher.finish("error").await;
    Err(ApiError::Internal)
}

fn sse_stream(
    endpoint: Endpoint,
    header: Header,
    include_usage: bool,
    events: mpsc::UnboundedReceiver<GenEvent>,
    finisher: Finisher,
    logprobs: Option<Logprobs>,
    tools: Option<ToolContext>,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let first = if endpoint == Endpoint::Chat {
        Some(response::sse_chunk(
            endpoint,
            &header,
            &Chunk::Role,
            include_usage,
        ))
    } else {
        None
    };
    let state = (events, finisher, (logprobs, tools), first, false);
    futures_util::stream::unfold(
        state,
        move |(mut events, mut finisher, (mut logprobs, mut tools), first, done)| {
            let header = header.clone();
            async move {
                if done {
                    return None;
                }
                if let Some(first) = first {
                    return Some((
                        Ok(Bytes::from(first)),
                        (events, finisher, (logprobs, tools), None, false),
                    ));
                }
                let out = match events.recv().await {
                    Some(GenEvent::Text {
                        text,
                        completion_tokens,
                        logprobs: tokens,
                    }) => {
                        finisher.output.push_str(&text);
                        // Kept up to date so a cancellation records the tokens produced so far
                        // (it used to record 0).
                        finisher.completion_tokens = completion_tokens as u64;
                        if let Some(t) = tools.as_mut() {
                            // Held back until the answer can be read for calls.
                            t.held.extend(tokens);
                            return Some((
                                Ok(Bytes::new()),
                                (events, finisher, (logprobs, tools), None, false),
                            ));
                        }
                        let lp = logprobs.as_mut().map(|l| l.write(&tokens));
                        let chunk = response::sse_chunk(
                            endpoint,
                            &header,
                            &Chunk::Text(&text, lp),
                            include_usage,
                        );
                        return Some((
                            Ok(Bytes::from(chunk)),
                            (events, finisher, (logprobs, tools), None, false),
                        ));
                    }
                    Some(GenEvent::Done {
                        finish,
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens,
                    }) => {
                        finisher.completion_tokens = completion_tokens as u64;
                        finisher.cached_tokens = Some(cached_tokens as u64);
                        let mut out = String::new();
                        let text = finisher.output.clone();
                        let (answer, status, reason) =
                            read_calls(tools.as_ref(), &mut finisher, &text, finish, true);
                        if finisher.finish(status).await {
                            if let Some(t) = tools.as_mut() {
                                // The held-back answer: its text, then its calls.
                                let content = match &answer {
                                    Some(a) => a.content.clone(),
                                    None => Some(text.clone()).filter(|t| !t.is_empty()),
                                };
                                if let Some(content) = content {
                                    let lp = logprobs.as_mut().map(|l| l.write(&t.held));
                                    out.push_str(&response::sse_chunk(
                                        endpoint,
                                        &header,
                                        &Chunk::Text(&content, lp),
                                        include_usage,
                                    ));
                                }
                                if let Some(a) = answer {
                                    out.push_str(&response::sse_chunk(
                                        endpoint,
                                        &header,
                                        &Chunk::ToolCalls(a.calls),
                                        include_usage,
                                    ));
                                }
                            }
                            out.push_str(&response::sse_chunk(
                                endpoint,
                                &header,
                                &Chunk::Finish(reason),
                                include_usage,
                            ));
                            if include_usage {
                                let usage =
                                    Usage::new(prompt_tokens as u32, completion_tokens as u32)
                                        .with_cached(cached_tokens as u32);
                                out.push_str(&response::sse_chunk(
                                    endpoint,
                                    &header,
                                    &Chunk::Usage(usage),
                                    true,
                                ));
                            }
                        } else {
                            out.push_str(&response::sse_error(
                                "the audit log is unavailable; the answer cannot be recorded",
                                "audit_unavailable",
                            ));
                        }
                        out.push_str(response::SSE_DONE);
                        out
                    }
                    Some(GenEvent::Failed(message)) => {
                        tracing::error!(%message, "generation failed");
                        finisher.finish("error").await;
                        let mut out = response::sse_error("the engine failed", "engine_error");
                        out.push_str(response::SSE_DONE);
                        out
                    }
                    None => {
                        finisher.finish("error").await;
                        let mut out = response::sse_error(
                            "the generation ended unexpectedly",
                            "engine_error",
                        );
                        out.push_str(response::SSE_DONE);
                        out
                    }
                };
                Some((
                    Ok(Bytes::from(out)),
                    (events, finisher, (logprobs, tools), None, true),
                ))
            }
        },
    )
}
