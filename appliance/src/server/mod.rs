//! The HTTPS service: actix-web on a runtime built only after the pre-runtime steps of
//! `main` (policy, lockdown hook, listeners, TLS material) succeeded.
//!
//! Per connection, the verified client certificate becomes an [`Identity`] in the
//! connection data (`HttpRequest::conn_data::<Identity>()`); each route's guard checks it
//! against the route's [`Access`](middleware::Access) (see [`routes::configure`]).
pub mod admin;
pub mod audit;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod middleware;
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
) -> std::io::Result<()> {
    let grace = policy.server.shutdown_grace_secs;
    let mut app_state = AppState::new(policy.clone());
    let audit_ready = app_state
        .readiness
        .register(state::component::AUDIT, "opening");
    app_state.audit = audit::AuditHandle::new(audit_log.clone(), audit_ready, &app_state.metrics);
    lockdown.report_readiness(&app_state.readiness);
    let state = web::Data::new(app_state);
    let conn_policy = policy.clone();
    let result = actix_web::rt::System::new().block_on(async move {
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
