//! `airlock serve`: the service.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use policy::Policy;

use crate::{listeners, lockdown, logging, server};

/// Run the mTLS service with a policy file (what systemd runs).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock serve --config /etc/airlock/airlock.toml\n\n\
Listens on the policy's server.listen addresses, or on the sockets systemd passes\n\
(LISTEN_FDS). SIGTERM or SIGINT stops accepting and drains in-flight requests for\n\
server.shutdown_grace_secs. Logs: stderr and STATE_DIR/logs/airlock.DATE.jsonl."
)]
pub struct Args {
    /// Policy file.
    #[arg(long, short, env = "AIRLOCK_CONFIG", default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let policy = Policy::load(&args.config)?;
    serve(policy, None, |_| {})
}

/// The start-up sequence shared by `serve` and `dev`. `announce` runs once the listeners
/// are bound (connections queue from then on), before the runtime starts.
pub(super) fn serve(
    policy: Policy,
    listen_override: Option<SocketAddr>,
    announce: impl FnOnce(&[SocketAddr]),
) -> anyhow::Result<()> {
    logging::init_service(&policy.state_dir).with_context(|| {
        format!(
            "cannot create the log directory {}",
            policy.state_dir.join("logs").display()
        )
    })?;
    tracing::info!(policy = %policy.source().display(), "policy loaded");

    let addrs = listen_override.map_or_else(|| policy.server.listen.clone(), |a| vec![a]);
    // Landlock, while this is the only thread: nothing above has spawned one.
    let landlocked = lockdown::before_runtime(&policy, &addrs)?;
    let (listeners, origin) = listeners::acquire(&addrs)?;
    let tls = server::tls::server_config(&policy.tls)?;
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for addr in &bound {
        tracing::info!(%addr, ?origin, tls12 = policy.tls.tls12, "listening");
    }
    // The audit log: a store that does not verify or cannot be written stops the start.
    let audit_log = server::audit::open(&policy).with_context(|| {
        format!(
            "cannot open the audit log in {}",
            server::audit::dir(&policy.state_dir).display()
        )
    })?;
    // The active models (bundle store): a model that does not load stops the start, since
    // serving without it would silently answer 404 for a model the operator activated.
    let models = server::models::prepare_all(&policy.state_dir, &policy.engine)
        .context("cannot load the active models")?;
    // Everything loaded at start-up (TLS, audit log, models above) must be loaded before
    // this line: from here on no thread of this process can create a network socket.
    let lockdown = lockdown::after_listening(landlocked, origin)?;
    announce(&bound);
    // systemd (Type=notify): listeners bound, TLS, audit log and models loaded, seccomp on
    // every thread. Connections have queued in the kernel since the bind; they are served
    // once the runtime below starts.
    crate::notify::ready(&format!("serving on {} ({origin:?})", list(&bound)));
    server::run(
        Arc::new(policy),
        listeners,
        tls,
        audit_log,
        lockdown,
        models,
    )
    .context("server failed")
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
