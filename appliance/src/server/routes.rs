//! The route table: every endpoint with its role guard, in one place (ARCHITECTURE.md §4).
//!
//! To add an endpoint, add one line to [`configure`] with its [`Access`]; the handler lives
//! in its own module (`server/openai/` for the OpenAI API, `server/audit.rs`,
//! `server/admin.rs`).
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::web;
use actix_web::{Error, Resource};
use policy::Role;

use super::admin;
use super::audit;
use super::fallback::method_not_allowed;
use super::middleware::{Access, guard};
use super::openai::handlers as openai;
use super::status::{healthz, metrics, readyz};

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
            resource("/v1/embeddings", role(Role::User))
                .route(web::post().to(super::openai::embeddings::embeddings)),
        )
        .service(
            resource("/v1/audit/checkpoint", role(Role::Auditor))
                .route(web::get().to(audit::checkpoint)),
        )
        .service(
            resource("/v1/audit/records", role(Role::Auditor)).route(web::get().to(audit::records)),
        )
        .service(
            resource("/v1/audit/report", role(Role::Auditor)).route(web::get().to(audit::report)),
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
