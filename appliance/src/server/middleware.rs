//! Middleware: request ids, the access log + metrics + error normalisation, the
//! per-certificate rate limit, the body-size pre-check and the per-route role guard.
//!
//! Nothing here reads or logs a request or response body: prompts and completions never
//! reach a log line.
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};
use policy::Role;

use super::error::ApiError;
use super::identity::Identity;
use super::request_id::{REQUEST_ID, RequestId};
use super::state::AppState;

/// Outermost: assigns the request id and stamps it on the response, whatever happened.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = RequestId::generate();
    req.extensions_mut().insert(id.clone());
    // No clone of the request may be held across `next.call` (actix's router needs the
    // request uniquely owned), so an `Err` cannot be turned into a response here. None of
    // our inner layers return `Err` (handlers' errors are already responses); should one
    // appear, actix renders it after this layer, without the request id.
    let mut res = next.call(req).await?.map_into_boxed_body();
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(res)
}

/// Access log, metrics, and the guarantee that every error body is OpenAI-shaped (errors
/// produced inside actix, e.g. a malformed request, come without a JSON body).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let start = Instant::now();
    // A fixed set: the raw method is client text (an 8 000-byte method is valid HTTP), and
    // each distinct label value is a series kept for the life of the process.
    let method = super::metrics::method_label(req.method());
    // See `request_id` on why `Err` is passed through.
    let mut res = next.call(req).await?.map_into_boxed_body();
    let http_req = res.request().clone();
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() >= 400 && !is_json {
        let replacement = ApiError::from_status(status).error_response();
        res = ServiceResponse::new(http_req.clone(), replacement);
    }
    let route = http_req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    let identity = http_req.conn_data::<Identity>();
    if let Some(state) = http_req.app_data::<web::Data<AppState>>() {
        let roles = identity.map(Identity::roles).unwrap_or_default();
        let role = if roles.is_empty() {
            "none".to_owned()
        } else {
            roles.to_string()
        };
        state
            .metrics
            .observe_request(&route, method, status, &role, elapsed.as_secs_f64());
    }
    let ext = http_req.extensions();
    if ext.get::<QuietRefusal>().is_some() {
        return Ok(res);
    }
    let request_id = ext.get::<RequestId>().map(|r| r.0.as_str()).unwrap_or("-");
    tracing::info!(
        target: "airlock::access",
        request_id,
        method,
        route,
        status,
        duration_ms = elapsed.as_millis() as u64,
        fingerprint = identity.map(|i| i.fingerprint().to_string()).unwrap_or_default(),
        roles = %identity.map(|i| i.roles()).unwrap_or_default(),
        peer = identity.and_then(|i| i.peer()).map(|p| p.to_string()).unwrap_or_default(),
        "request"
    );
    Ok(res)
}

/// A request the rate limiter refused after the first of a flood: counted, not logged.
#[derive(Debug, Clone, Copy)]
struct QuietRefusal;

/// The per-certificate rate limit (`limits.requests_per_minute`), on every route: the API,
/// `/healthz`, unknown paths and wrong methods alike, so a certificate the policy grants
/// nothing cannot grow the logs, the metrics or the audit log (`access.denied`) faster than
/// the policy's rate. It runs before the role guard for that reason.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if let (Some(state), Some(id)) = (
        req.app_data::<web::Data<AppState>>(),
        req.conn_data::<Identity>(),
    ) && let Err(refusal) = state.rate_limiter.check(id.fingerprint(), Instant::now())
    {
        let e = ApiError::TooManyRequests {
            message: format!(
                "rate limit of {} requests per minute exceeded",
                state.policy.limits.requests_per_minute
            ),
            retry_after_secs: refusal.wait.as_secs() + 1,
        };
        if refusal.first {
            // The first refusal of a flood is audited (`access.denied`, status 429) so the
            // report shows who hit the limit; the rest are only counted in metrics.
            super::audit::record_denial(&req, &e).await;
        } else {
            req.extensions_mut().insert(QuietRefusal);
        }
        return Ok(req.into_response(e.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Refuses a declared body over the limit before any handler or extractor runs. Bodies
/// without a length (chunked) are bounded where they are read ([`super::routes::read_body`]).
pub async fn body_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let policy = req.app_data::<web::Data<AppState>>().map(|s| &s.policy);
    let limit = match policy {
        // A bundle upload is bounded by the trust policy's limit (checked again while
        // streaming it to disk, see server::admin::upload).
        Some(p) if req.path() == "/v1/admin/bundles" => p
            .trust
            .as_ref()
            .map_or(p.limits.max_body_bytes, |t| t.max_bundle_bytes),
        Some(p) => p.limits.max_body_bytes,
        None => policy::DEFAULT_MAX_BODY_BYTES,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        let resp = ApiError::PayloadTooLarge { limit }.error_response();
        return Ok(req.into_response(resp));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Who may call a route (ARCHITECTURE.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any verified client certificate, even one the policy grants no role (`/healthz`).
    AnyCertificate,
    /// A certificate with at least one role.
    AnyRole,
    /// A certificate with this role.
    Role(Role),
}

impl Access {
    /// Decides for a caller. `None` identity (unparseable certificate) is refused.
    pub fn check(self, identity: Option<&Identity>) -> Result<(), ApiError> {
        let Some(id) = identity else {
            return Err(ApiError::NoRole);
        };
        match self {
            Access::AnyCertificate => Ok(()),
            _ if id.roles().is_empty() => Err(ApiError::NoRole),
            Access::AnyRole => Ok(()),
            Access::Role(role) if id.has(role) => Ok(()),
            Access::Role(role) => Err(ApiError::MissingRole(role)),
        }
    }
}

/// The role guard of one route.
pub async fn guard(
    access: Access,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if let Err(e) = access.check(req.conn_data::<Identity>()) {
        tracing::info!(
            target: "airlock::access",
            route = req.match_pattern().unwrap_or_default(),
            reason = %e,
            "access denied"
        );
        super::audit::record_denial(&req, &e).await;
        return Ok(req.into_response(e.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
