//! `POST /v1/embeddings`: one vector per input, from the loaded chat model's hidden states.
//!
//! Order of work, as for generations: parse (400) → find the model (404) → tokenize and check
//! every input against the limits (400) → append `inference.request` and wait until it is
//! durable (503: no record, no answer) → queue on the model's decode thread (429 if full),
//! which computes the vectors between decode steps → append `inference.response` → answer.
//! The record holds the inputs as the prompt (digested or sealed per `[audit] content`) and
//! the SHA-256 of the vectors as sent (`vectors_sha256`), never the vectors themselves.
use std::time::Instant;

use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use airlock_engine::airlock_tokenizer::EncodeOptions;
use audit::Kind;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::server::audit::request_event;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::subject::Subject;

/// Most inputs in one request (OpenAI allows 2048; each input here runs through the whole
/// model, so a smaller batch keeps one request from holding the decode thread for minutes).
pub const MAX_INPUTS: usize = 256;

/// What to embed, as the client sent it.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    /// Texts, tokenized here.
    Texts(Vec<String>),
    /// Token ids, used as they are.
    Tokens(Vec<Vec<u32>>),
}

/// `encoding_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// A JSON array of numbers.
    Float,
    /// The little-endian f32 bytes in base64 (what the `openai` Python client asks for).
    Base64,
}

#[derive(Debug)]
struct EmbeddingRequest {
    model: String,
    input: Input,
    encoding: Encoding,
    dimensions: Option<u64>,
    user: Option<String>,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::BadRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

fn parse(body: &[u8]) -> Result<EmbeddingRequest, ApiError> {
    let value: Value = super::json::parse(body).map_err(|e| ApiError::BadRequest {
        message: format!("the request body is not valid JSON: {e}"),
        param: None,
    })?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::BadRequest {
            message: "the request body must be a JSON object".into(),
            param: None,
        });
    };
    let model = match fields.remove("model") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= super::request::MAX_MODEL_BYTES => m,
        Some(Value::String(_)) => {
            return Err(bad(
                format!(
                    "model must be 1 to {} bytes",
                    super::request::MAX_MODEL_BYTES
                ),
                "model",
            ));
        }
        _ => return Err(bad("you must provide a model parameter", "model")),
    };
    let input = parse_input(fields.remove("input"))?;
    let encoding = match fields.remove("encoding_format") {
        None | Some(Value::Null) => Encoding::Float,
        Some(Value::String(s)) if s == "float" => Encoding::Float,
        Some(Value::String(s)) if s == "base64" => Encoding::Base64,
        Some(_) => {
            return Err(bad(
                "encoding_format must be \"float\" or \"base64\"",
                "encoding_format",
            ));
        }
    };
    let dimensions = match fields.remove("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("dimensions must be a positive integer", "dimensions"))?,
        ),
    };
    let user = match fields.remove("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if !u.is_empty() && u.len() <= super::request::MAX_USER_BYTES => {
            Some(u)
        }
        Some(_) => {
            return Err(bad(
                format!(
                    "user must be a string of 1 to {} bytes",
                    super::request::MAX_USER_BYTES
                ),
                "user",
            ));
        }
    };
    if let Some(name) = fields.keys().next() {
        return Err(bad(
            format!("unrecognized request argument supplied: {name}"),
            name,
        ));
    }
    Ok(EmbeddingRequest {
        model,
        input,
        encoding,
        dimensions,
        user,
    })
}

/// `input`: a string, a list of strings, a list of token ids, or a list of such lists.
fn parse_input(value: Option<Value>) -> Result<Input, ApiError> {
    const P: &str = "input";
    let empty = || bad("input must not be empty", P);
    let too_many = || bad(format!("at most {MAX_INPUTS} inputs per request"), P);
    let ids = |items: &[Value]| -> Option<Vec<u32>> {
        items
            .iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect()
    };
    match value {
        Some(Value::String(s)) if s.is_empty() => Err(empty()),
        Some(Value::String(s)) => Ok(Input::Texts(vec![s])),
        Some(Value::Array(items)) if items.is_empty() => Err(empty()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            if items.len() > MAX_INPUTS {
                return Err(too_many());
            }
            let texts: Vec<String> = items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            if texts.iter().any(String::is_empty) {
                return Err(empty());
            }
            Ok(Input::Texts(texts))
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => ids(&items)
            .map(|t| Input::Tokens(vec![t]))
            .ok_or_else(|| bad("token ids must be integers from 0 to 2^32-1", P)),
        Some(Value::Array(items)) if items.iter().all(Value::is_array) => {
            if items.len() > MAX_INPUTS {
                return Err(too_many());
            }
            let lists: Option<Vec<Vec<u32>>> = items
                .iter()
                .map(|v| v.as_array().and_then(|a| ids(a)))
                .collect();
            let lists =
                lists.ok_or_else(|| bad("token ids must be integers from 0 to 2^32-1", P))?;
            if lists.iter().any(Vec::is_empty) {
                return Err(empty());
            }
            Ok(Input::Tokens(lists))
        }
        None | Some(Value::Null) => Err(bad("you must provide an input parameter", P)),
        Some(_) => Err(bad(
            "input must be a string, an array of strings, an array of token ids, or an array of such arrays",
            P,
        )),
    }
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let limits = &state.policy.limits;
    let body = super::handlers::inference_body(&state, payload).await?;
    let request = parse(&body)?;
    let subject = Subject::from_request(&req)?.map(Subject::into_string);
    let model = state
        .models
        .get(&request.model)
        .ok_or_else(|| ApiError::ModelNotFound(request.model.clone()))?;
    let engine = &model.engine;
    let pooling = engine
        .pooling()
        .map_err(|why| bad(why.to_owned(), "model"))?;
    let width = engine.model().config().d_model;
    if let Some(d) = request.dimensions
        && d != width as u64
    {
        return Err(bad(
            format!(
                "this model's embeddings have {width} dimensions; dimensions cannot change that"
            ),
            "dimensions",
        ));
    }
    // One token limit for every input: the policy's prompt limit within the context.
    let limit = (limits.max_prompt_tokens as usize).min(engine.model().config().context_length);
    let vocab = engine.model().config().vocab_size;
    let (prompt_record, tokens) = match &request.input {
        Input::Texts(texts) => {
            let bytes: usize = texts.iter().map(String::len).sum();
            if bytes / engine.tokenizer().max_token_bytes().max(1) > limit * texts.len() {
                return Err(bad(
                    format!("the inputs cannot fit {limit} tokens each"),
                    "input",
                ));
            }
            let (m, owned) = (model.clone(), texts.clone());
            let tokens = web::block(move || {
                owned
                    .iter()
                    .map(|t| {
                        m.engine.tokenizer().encode(
                            t,
                            EncodeOptions {
                                parse_special: false,
                                add_special: true,
                            },
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|_| ApiError::Internal)?;
            (serde_json::to_vec(texts).unwrap_or_default(), tokens)
        }
        Input::Tokens(lists) => {
            if let Some(&id) = lists.iter().flatten().find(|&&t| t as usize >= vocab) {
                return Err(bad(
                    format!("token id {id} is outside the vocabulary (size {vocab})"),
                    "input",
                ));
            }
            (serde_json::to_vec(lists).unwrap_or_default(), lists.clone())
        }
    };
    if let Some((i, t)) = tokens
        .iter()
        .enumerate()
        .find(|(_, t)| t.is_empty() || t.len() > limit)
    {
        return Err(bad(
            format!(
                "input {i} is {} tokens; each input must be 1 to {limit} tokens",
                t.len()
            ),
            "input",
        ));
    }
    let prompt_tokens: usize = tokens.iter().map(Vec::len).sum();

    let model_ref = audit::ModelRef {
        name: model.name.clone(),
        version: model.version.clone(),
        sha256: model.sha256,
    };
    let mut params = std::collections::BTreeMap::new();
    params.insert("endpoint".to_owned(), "embeddings".to_owned());
    params.insert("inputs".to_owned(), tokens.len().to_string());
    params.insert("pooling".to_owned(), pooling.as_str().to_owned());
    if let Some(user) = &request.user {
        params.insert(
            "user_sha256".to_owned(),
            audit::Digest::of(user.as_bytes()).to_string(),
        );
    }
    let mut record = request_event(Kind::InferenceRequest, &req);
    record.model = Some(model_ref.clone());
    record.prompt = Some(prompt_record);
    record.subject = subject.clone();
    record.params = params;
    state.audit.append(record).await?;

    let mut response = request_event(Kind::InferenceResponse, &req);
    response.model = Some(model_ref);
    response.subject = subject;
    response.tokens = Some(audit::Tokens {
        prompt: prompt_tokens as u64,
        completion: 0,
    });
    let outcome = match model.scheduler.embed(tokens) {
        Ok(rx) => rx.await.map_err(|_| "the embedding was dropped".to_owned()),
        Err(e) => Ok(Err(e.to_string())),
    };
    let vectors = match outcome {
        Ok(Ok(vectors)) => vectors,
        Ok(Err(why)) | Err(why) => {
            tracing::error!(%why, "embeddings failed");
            response.status = Some("error".into());
            response.params.insert("reason".into(), why);
            response.duration_ms = Some(started.elapsed().as_millis() as u64);
            let _ = state.audit.append(response).await;
            return Err(ApiError::Internal);
        }
    };
    let mut bytes = Vec::with_capacity(vectors.len() * width * 4);
    for v in &vectors {
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    response.status = Some("ok".into());
    response.params.insert(
        "vectors_sha256".into(),
        audit::Digest::of(&bytes).to_string(),
    );
    response.duration_ms = Some(started.elapsed().as_millis() as u64);
    // The vectors are shown only once their record is durable.
    state.audit.append(response).await?;

    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = match request.encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => {
                    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(raw))
                }
            };
            let mut o = Map::new();
            o.insert("object".into(), "embedding".into());
            o.insert("index".into(), i.into());
            o.insert("embedding".into(), embedding);
            Value::Object(o)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(body: &str) -> Option<String> {
        match parse(body.as_bytes()) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn input_shapes() {
        let p = |b: &str| parse(b.as_bytes()).expect(b).input;
        assert_eq!(
            p(r#"{"model":"m","input":"a"}"#),
            Input::Texts(vec!["a".into()])
        );
        assert_eq!(
            p(r#"{"model":"m","input":["a","b"]}"#),
            Input::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            p(r#"{"model":"m","input":[1,2]}"#),
            Input::Tokens(vec![vec![1, 2]])
        );
        assert_eq!(
            p(r#"{"model":"m","input":[[1],[2,3]]}"#),
            Input::Tokens(vec![vec![1], vec![2, 3]])
        );
    }

    #[test]
    fn bad_requests_name_the_parameter() {
        for (body, name) in [
            (r#"{"model":"m","input":""}"#, "input"),
            (r#"{"model":"m","input":[]}"#, "input"),
            (r#"{"model":"m","input":["a",""]}"#, "input"),
            (r#"{"model":"m","input":[[]]}"#, "input"),
            (r#"{"model":"m","input":[-1]}"#, "input"),
            (r#"{"model":"m","input":["a",1]}"#, "input"),
            (r#"{"model":"m"}"#, "input"),
            (r#"{"input":"a"}"#, "model"),
            (
                r#"{"model":"m","input":"a","encoding_format":"hex"}"#,
                "encoding_format",
            ),
            (r#"{"model":"m","input":"a","dimensions":-3}"#, "dimensions"),
            (r#"{"model":"m","input":"a","frob":1}"#, "frob"),
        ] {
            assert_eq!(param(body).as_deref(), Some(name), "{body}");
        }
        let many = format!(
            r#"{{"model":"m","input":[{}]}}"#,
            vec!["\"x\""; MAX_INPUTS + 1].join(",")
        );
        assert_eq!(param(&many).as_deref(), Some("input"));
    }
}
