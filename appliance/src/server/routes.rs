//! The route table: every endpoint with its role guard, in one place (ARCHITECTURE.md §4).
//!
//! To add an endpoint, add one line to [`configure`] with its [`Access`]; the handler lives
//! in its own module (e.g. `server/openai/handlers.rs` for the OpenAI API, `server/audit.rs`).
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Bytes};
use actix_web::{Error, HttpRequest, HttpResponse, Resource};
use futures_util::StreamExt;
use policy::Role;
use serde_json::json;

use super::admin;
use super::audit;
use super::error::ApiError;
use super::identity::Identity;
use super::middleware::{Access, guard};
use super::openai::handlers as openai;
use super::state::AppState;

/// Registers every route with its guard.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use Access::{AnyCertificate, AnyRole};
    let role = Access::Role;
    cfg.service(resource("/healthz", AnyCertificate).route(web::get().to(healthz)))
        .service(resource("/readyz", AnyRole).route(web::get().to(readyz)))
        .service(resource("/metrics", role(Role::Operator)).route(web::get().to(metrics)))
        .service(resource("/v1/models", role(Role::User)).route(web::get().to(openai::list_models)))
        .service(
            resource("/v1/chat/completions", role(Role::User)).route(web::post().to(openai::chat)),
        )
        .service(
            resource("/v1/completions", role(Role::User))
                .route(web::post().to(openai::completions)),
        )
        .service(
            resource("/v1/audit/checkpoint", role(Role::Auditor))
                .route(web::get().to(audit::checkpoint)),
        )
        .service(
            resource("/v1/audit/records", role(Role::Auditor)).route(web::get().to(audit::records)),
        )
        .service(
            resource("/v1/audit/erase", role(Role::Privacy)).route(web::post().to(audit::erase)),
        )
        .service(
            resource("/v1/admin/bundles", role(Role::Admin)).route(web::post().to(admin::upload)),
        )
        .service(resource("/v1/admin/models", role(Role::Admin)).route(web::get().to(admin::list)))
        .service(
            resource("/v1/admin/models/{name}/activate", role(Role::Admin))
                .route(web::post().to(admin::activate)),
        )
        .service(
            resource("/v1/admin/models/{name}/rollback", role(Role::Admin))
                .route(web::post().to(admin::rollback)),
        );
}

/// A resource behind the role guard, answering 405 (OpenAI-shaped) to other methods.
pub fn resource(
    path: &str,
    access: Access,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = Error,
        InitError = (),
    >,
> {
    web::resource(path)
        .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
            guard(access, req, next)
        }))
        .default_service(web::to(method_not_allowed))
}

/// Reads a request body, refusing it past `limits.max_body_bytes` (chunked bodies have no
/// declared length for the middleware pre-check to see).
pub async fn read_body(state: &AppState, mut payload: web::Payload) -> Result<Bytes, ApiError> {
    let limit = state.policy.limits.max_body_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadRequest {
            message: "could not read the request body".into(),
            param: None,
        })?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Default service: unknown route.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(req.method().to_string()))
}

/// Liveness. Also tells the caller who the server thinks it is (handy when writing a
/// policy); the body holds nothing the caller's own certificate does not.
async fn healthz(req: HttpRequest) -> HttpResponse {
    let identity = req.conn_data::<Identity>().map(|id| {
        json!({
            "subject": id.subject(),
            "fingerprint": id.fingerprint().to_string(),
            "roles": id.roles().iter().map(Role::as_str).collect::<Vec<_>>(),
        })
    });
    HttpResponse::Ok().json(json!({ "status": "ok", "identity": identity }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    state.audit.refresh_readiness();
    let (ready, components) = state.readiness.snapshot();
    let body = json!({ "ready": ready, "components": components });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.encode().map_err(|_| ApiError::Internal)?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
                .parse()
                .map_err(|_| ApiError::Internal)?,
        ))
        .body(text))
}
