//! The HTTPS service: actix-web on a runtime built only after the pre-runtime steps of
//! `cli::serve` (policy, Landlock, listeners, TLS material, audit log, models, seccomp)
//! succeeded.
//!
//! Per connection, the verified client certificate becomes an [`Identity`] in the
//! connection data (`HttpRequest::conn_data::<Identity>()`); each route's guard checks it
//! against the route's [`Access`](middleware::Access) (see [`routes::configure`]).
pub mod admin;
pub mod audit;
pub mod error;
pub mod identity;
pub mod import;
pub mod metrics;
pub mod middleware;
pub mod models;
pub mod openai;
pub mod ratelimit;
pub mod routes;
pub mod state;
pub mod tls;

use std::any::Any;
use std::net::TcpListener;
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::{App, HttpServer, web};
use policy::Policy;

pub use identity::Identity;
pub use state::{AppState, Readiness, ReadinessHandle};

/// Seconds a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// Builds the actix System and serves on `listeners` until SIGTERM/SIGINT, then drains
/// in-flight requests for `server.shutdown_grace_secs`.
///
/// The audit log records `service.stop` once the server has drained, then closes with a
/// final signed checkpoint. `lockdown` is what the egress lockdown achieved before this
/// call; `/readyz` shows it.
pub fn run(
    policy: Arc<Policy>,
    listeners: Vec<TcpListener>,
    tls: rustls::ServerConfig,
    audit_log: Arc<::audit::AuditLog>,
    lockdown: crate::lockdown::Status,
    models: Vec<models::Prepared>,
) -> std::io::Result<()> {
    let grace = policy.server.shutdown_grace_secs;
    let mut app_state = AppState::new(policy.clone());
    let audit_ready = app_state
        .readiness
        .register(state::component::AUDIT, "opening");
    app_state.audit = audit::AuditHandle::new(audit_log.clone(), audit_ready, &app_state.metrics);
    lockdown.report_readiness(&app_state.readiness);
    serve_models(&app_state, models)?;
    let state = web::Data::new(app_state);
    let conn_policy = policy.clone();
    let result = actix_web::rt::System::new().block_on(async move {
        import::spawn(state.clone());
        if !lockdown.report.is_complete() {
            actix_web::rt::spawn(crate::lockdown::warn_while_off(lockdown));
        }
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
                .wrap(from_fn(middleware::body_limit))
                .wrap(from_fn(middleware::observe))
                .wrap(from_fn(middleware::request_id))
        })
        .on_connect(move |conn, ext| on_connect(&conn_policy, conn, ext))
        // Streamed tokens are small writes. With Nagle's algorithm on, each waits for the ACK
        // of the previous one, which the client delays by up to 40 ms: the first token of a
        // cached prompt reached the client after 46 ms although it left the engine after 6.
        .tcp_nodelay(true)
        .tls_handshake_timeout(std::time::Duration::from_secs(TLS_HANDSHAKE_TIMEOUT_SECS))
        .shutdown_timeout(grace)
        .shutdown_signal(shutdown_requested(grace));
        for listener in listeners {
            server = server.listen_rustls_0_23(listener, tls.clone())?;
        }
        let result = server.run().await;
        tracing::info!("stopped");
        result
    });
    audit::record_stop(&audit_log, result.as_ref().err());
    result
}

/// Starts a decode thread for each loaded model, and hot reload: after an activation or
/// rollback (admin API) the new version is loaded on a thread of its own and replaces the old
/// one for new requests, while requests in flight finish on the old one.
fn serve_models(state: &AppState, models: Vec<models::Prepared>) -> std::io::Result<()> {
    let limits = state.policy.limits.clone();
    let engine_config = state.policy.engine.clone();
    for prepared in models {
        let model = models::LoadedModel::start(
            prepared,
            &engine_config,
            limits.queue_depth,
            state.scheduler_metrics.clone(),
        )
        .map_err(std::io::Error::other)?;
        tracing::info!(name = %model.name, version = %model.version, "serving model");
        state.models.insert(model);
    }
    let registry = state.models.clone();
    let metrics = state.scheduler_metrics.clone();
    state.model_hooks.on_activate(Arc::new(move |active| {
        let (registry, metrics, config) =
            (registry.clone(), metrics.clone(), engine_config.clone());
        let active = active.clone();
        let queue_depth = limits.queue_depth;
        let spawned = std::thread::Builder::new()
            .name("model-reload".into())
            .spawn(move || {
                let (name, version) = (active.name.clone(), active.version.to_string());
                let loaded = models::prepare(active, &config)
                    .and_then(|p| models::LoadedModel::start(p, &config, queue_depth, metrics));
                match loaded {
                    Ok(model) => {
                        tracing::info!(%name, %version, "hot reload: now serving");
                        registry.insert(model);
                    }
                    // The previous version keeps serving: a bad reload never leaves the
                    // service without the model it had.
                    Err(e) => tracing::error!(%name, %version, error = %e, "hot reload failed"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the model reload thread");
        }
    }));
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT (both graceful: actix's own handler would treat
/// SIGINT as a forced stop, dropping in-flight requests).
async fn shutdown_requested(grace: u64) {
    use actix_web::rt::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            let name = tokio_select(term.recv(), int.recv()).await;
            tracing::info!("{name} received: draining in-flight requests for up to {grace}s");
            crate::notify::stopping(&format!("{name}: draining for up to {grace}s"));
        }
        (Err(e), _) | (_, Err(e)) => {
            // Without handlers the default action (terminate) applies: no drain, but no hang.
            tracing::error!("cannot install signal handlers: {e}");
            std::future::pending::<()>().await;
        }
    }
}

/// Waits for whichever signal stream yields first.
async fn tokio_select(
    term: impl std::future::Future<Output = Option<()>>,
    int: impl std::future::Future<Output = Option<()>>,
) -> &'static str {
    use futures_util::future::{Either, select};
    let term = std::pin::pin!(term);
    let int = std::pin::pin!(int);
    match select(term, int).await {
        Either::Left(_) => "SIGTERM",
        Either::Right(_) => "SIGINT",
    }
}

/// Runs once per accepted TLS connection, after the handshake (so after rustls verified
/// the client certificate): stores the caller's [`Identity`] in the connection data.
fn on_connect(policy: &Policy, conn: &dyn Any, ext: &mut Extensions) {
    let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() else {
        // Only TLS listeners exist; anything else gets no identity and is refused.
        tracing::error!("connection is not TLS; refusing it an identity");
        return;
    };
    let (tcp, session) = tls.get_ref();
    let peer = tcp.peer_addr().ok();
    match Identity::from_verified_session(session, peer, policy) {
        Some(identity) => {
            tracing::debug!(
                subject = identity.subject(),
                roles = %identity.roles(),
                "client connected"
            );
            ext.insert(identity);
        }
        None => tracing::warn!(?peer, "verified client certificate could not be parsed"),
    }
}
