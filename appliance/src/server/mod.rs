//! The HTTPS service: actix-web on a runtime built only after the pre-runtime steps of
//! `cli::serve` (policy, Landlock, listeners, TLS material, audit log, models, seccomp)
//! succeeded.
//!
//! Per connection, the verified client certificate becomes an [`Identity`] in the
//! connection data (`HttpRequest::conn_data::<Identity>()`); each route's guard checks it
//! against the route's [`Access`](middleware::Access) (see [`routes::configure`]).
pub mod admin;
pub mod audit;
pub mod body;
pub mod error;
pub mod fallback;
pub mod identity;
pub mod import;
pub mod metrics;
pub mod middleware;
pub mod models;
pub mod openai;
pub mod ratelimit;
pub mod readiness;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod status;
pub mod subject;
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
pub use readiness::{Readiness, ReadinessHandle};
pub use state::AppState;

/// Seconds a client has to finish the TLS handshake. Short: a peer that connects and sends
/// nothing holds a socket and a handshake slot until then.
const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 5;
/// TLS handshakes in progress per worker. actix's default (256) let 600 idle sockets (no
/// ClientHello) queue legitimate handshakes behind them for seconds; a pending handshake
/// costs a few KiB, so allow many and let the timeout reap the idle ones.
const MAX_PENDING_HANDSHAKES: usize = 4096;

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
    models: models::AtStart,
) -> std::io::Result<()> {
    let grace = policy.server.shutdown_grace_secs;
    let mut app_state = AppState::new(policy.clone());
    let audit_ready = app_state
        .readiness
        .register(readiness::component::AUDIT, "opening");
    let reserve = audit::DiskReserve::new(
        crate::audit_log::dir(&policy.state_dir),
        policy.audit.reserve_free_mib,
    );
    app_state.audit =
        audit::AuditHandle::new(audit_log.clone(), audit_ready, &app_state.metrics, reserve);
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
                .default_service(web::to(fallback::not_found))
                .wrap(from_fn(middleware::body_limit))
                .wrap(from_fn(middleware::rate_limit))
                .wrap(from_fn(middleware::observe))
                .wrap(from_fn(middleware::request_id))
        })
        .on_connect(move |conn, ext| on_connect(&conn_policy, conn, ext))
        // Streamed tokens are small writes. With Nagle's algorithm on, each waits for the ACK
        // of the previous one, which the client delays by up to 40 ms: the first token of a
        // cached prompt reached the client after 46 ms although it left the engine after 6.
        .tcp_nodelay(true)
        .tls_handshake_timeout(std::time::Duration::from_secs(TLS_HANDSHAKE_TIMEOUT_SECS))
        .max_connection_rate(MAX_PENDING_HANDSHAKES)
        .shutdown_timeout(grace)
        // The stop sequence is ours (`drain_on_signal`): actix's would drop connections.
        .disable_signals();
        for listener in listeners {
            server = server.listen_rustls_0_23(listener, tls.clone())?;
        }
        let server = server.run();
        actix_web::rt::spawn(drain_on_signal(server.handle(), grace));
        let result = server.await;
        tracing::info!("stopped");
        result
    });
    crate::audit_log::record_stop(&audit_log, result.as_ref().err());
    result
}

/// Starts a decode thread for each model loaded at start; those that did not load are
/// reported by `/readyz`. Later activations swap models in where they happen
/// ([`admin`], [`import`]), after a load test.
fn serve_models(state: &AppState, models: models::AtStart) -> std::io::Result<()> {
    for (name, why) in models.failed {
        state.models.failed_to_load(&name, why);
    }
    for prepared in models.loaded {
        state.serve(prepared).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// How long accepting stays paused before the graceful stop, so that every connection
/// already accepted reaches a worker.
const PAUSE_BEFORE_STOP: std::time::Duration = std::time::Duration::from_millis(250);

/// On SIGTERM or SIGINT: stop accepting, then stop gracefully (in-flight requests get up to
/// `grace` seconds). The pause comes first because actix-server's graceful stop drops the
/// connections its accept thread took but had not yet handed to a worker: a client would
/// see its connection reset. Paused, new connections wait in the listening socket's
/// backlog; under socket activation systemd keeps that socket, so the next process (an
/// upgrade's, a restart's) answers them.
async fn drain_on_signal(server: actix_web::dev::ServerHandle, grace: u64) {
    shutdown_requested(grace).await;
    server.pause().await;
    actix_web::rt::time::sleep(PAUSE_BEFORE_STOP).await;
    server.stop(true).await;
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
