//! HTTP errors and their one mapping to a status code and OpenAI's error body
//! `{"error":{"message","type","param","code"}}`.
//!
//! Messages are written for the caller and reveal no internals (paths, addresses, stack).
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use policy::Role;
use serde::Serialize;

/// Everything a handler or middleware can refuse a request with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad parameter).
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The offending parameter, if one.
        param: Option<String>,
    },
    /// The certificate lacks the role the route requires.
    #[error("this endpoint requires the `{0}` role")]
    MissingRole(Role),
    /// The certificate maps to no role at all (default deny).
    #[error("your certificate is not granted any role by the policy")]
    NoRole,
    /// No such route.
    #[error("no such endpoint: {method} {path}")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path (no query).
        path: String,
    },
    /// The request names a model that is not loaded.
    #[error("the model `{0}` does not exist or is not loaded")]
    ModelNotFound(String),
    /// Prompt plus requested completion do not fit the model's context.
    #[error(
        "this model's maximum context length is {context} tokens; the prompt has {prompt} and {requested} more were requested"
    )]
    ContextLengthExceeded {
        /// The model's context length.
        context: usize,
        /// Prompt tokens.
        prompt: usize,
        /// Completion tokens asked for.
        requested: usize,
    },
    /// The route exists but not for this method.
    #[error("method {0} is not allowed on this endpoint")]
    MethodNotAllowed(String),
    /// The body is larger than `limits.max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: u64,
    },
    /// Too many requests from this certificate, or the queue is full.
    #[error("{message}")]
    TooManyRequests {
        /// Why.
        message: String,
        /// Seconds after which a retry may succeed (`Retry-After`).
        retry_after_secs: u64,
    },
    /// A component the route needs is not ready (no model, audit log unavailable...).
    #[error("{message}")]
    Unavailable {
        /// What is missing, for the caller.
        message: String,
        /// Machine-readable code (`model_not_loaded`, `audit_unavailable`, ...).
        code: &'static str,
    },
    /// Anything else. Details go to the log, never to the caller.
    #[error("internal error")]
    Internal,
}

/// OpenAI's error envelope.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Debug, Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    /// The one mapping from an error to (status, OpenAI `type`, `code`).
    fn classify(&self) -> (StatusCode, &'static str, Option<&'static str>) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            ApiError::MissingRole(_) => (
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("missing_role"),
            ),
            ApiError::NoRole => (StatusCode::FORBIDDEN, "permission_error", Some("no_role")),
            ApiError::NotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("not_found"),
            ),
            ApiError::ModelNotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            ApiError::ContextLengthExceeded { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("context_length_exceeded"),
            ),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                Some("method_not_allowed"),
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
            ),
            ApiError::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            ),
            ApiError::Unavailable { code, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error", Some(code))
            }
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        }
    }

    /// A generic error for a status produced outside our handlers (actix internals).
    pub fn from_status(status: StatusCode) -> ApiError {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: 0 },
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(String::new()),
            s if s.is_client_error() => ApiError::BadRequest {
                message: s.canonical_reason().unwrap_or("bad request").to_lowercase(),
                param: None,
            },
            _ => ApiError::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.classify().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, kind, code) = self.classify();
        let message = self.to_string();
        let param = match self {
            ApiError::BadRequest { param, .. } => param.as_deref(),
            ApiError::ModelNotFound(_) => Some("model"),
            ApiError::ContextLengthExceeded { .. } => Some("messages"),
            _ => None,
        };
        let mut resp = HttpResponse::build(status);
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            resp.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        resp.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        resp.json(Envelope {
            error: Body {
                message: &message,
                kind,
                param,
                code,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(e: &ApiError) -> serde_json::Value {
        let resp = e.error_response();
        let bytes = resp.into_body().try_into_bytes().expect("sized body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn openai_shape_for_every_variant() {
        let errors = [
            ApiError::BadRequest {
                message: "bad".into(),
                param: Some("max_tokens".into()),
            },
            ApiError::MissingRole(Role::Operator),
            ApiError::NoRole,
            ApiError::NotFound {
                method: "GET".into(),
                path: "/x".into(),
            },
            ApiError::MethodNotAllowed("PUT".into()),
            ApiError::PayloadTooLarge { limit: 10 },
            ApiError::TooManyRequests {
                message: "slow down".into(),
                retry_after_secs: 3,
            },
            ApiError::Unavailable {
                message: "no model".into(),
                code: "model_not_loaded",
            },
            ApiError::Internal,
            ApiError::ModelNotFound("x".into()),
            ApiError::ContextLengthExceeded {
                context: 8,
                prompt: 6,
                requested: 4,
            },
        ];
        for e in &errors {
            let v = body(e);
            let obj = v["error"].as_object().expect("error object");
            let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["code", "message", "param", "type"], "{e:?}");
            assert_eq!(v["error"]["message"], e.to_string());
        }
        assert_eq!(body(&errors[0])["error"]["param"], "max_tokens");
        let resp = errors[6].error_response();
        assert_eq!(resp.headers().get("retry-after").expect("retry-after"), "3");
    }
}
