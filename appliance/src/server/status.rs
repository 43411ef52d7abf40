//! The service's own endpoints: liveness (`/healthz`), readiness (`/readyz`) and metrics.
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use policy::Role;
use serde_json::json;

use super::error::ApiError;
use super::identity::Identity;
use super::state::AppState;

/// Liveness. Also tells the caller who the server thinks it is (handy when writing a
/// policy); the body holds nothing the caller's own certificate does not.
pub async fn healthz(req: HttpRequest) -> HttpResponse {
    let identity = req.conn_data::<Identity>().map(|id| {
        json!({
            "subject": id.subject(),
            "fingerprint": id.fingerprint().to_string(),
            "roles": id.roles().iter().map(Role::as_str).collect::<Vec<_>>(),
        })
    });
    HttpResponse::Ok().json(json!({ "status": "ok", "identity": identity }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    state.audit.refresh_readiness();
    let (ready, components) = state.readiness.snapshot();
    let body = json!({ "ready": ready, "components": components });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.encode().map_err(|_| ApiError::Internal)?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
                .parse()
                .map_err(|_| ApiError::Internal)?,
        ))
        .body(text))
}
