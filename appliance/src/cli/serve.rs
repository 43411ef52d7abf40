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
    raise_open_file_limit();

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
    let audit_log = crate::audit_log::open(&policy).with_context(|| {
        format!(
            "cannot open the audit log in {}",
            crate::audit_log::dir(&policy.state_dir).display()
        )
    })?;
    // Installs, upgrades and rollbacks since the last start (install.sh's receipts): the
    // binary now running is the one the last of them names.
    let installs = crate::audit_log::record_installs(&audit_log, &policy.state_dir)
        .context("cannot record the install receipts in the audit log")?;
    if installs > 0 {
        tracing::info!(installs, "install receipts recorded (software.install)");
    }
    // The log is open: a start that fails from here on must say so in it, or the log would
    // read as if the service never tried.
    let started = (|| {
        // The active models: one that does not load is reported (`/readyz`), not fatal.
        let models = server::models::prepare_all(&policy.state_dir, &policy.engine)
            .context("cannot read the installed models")?;
        // Everything loaded at start-up (TLS, audit log, models above) must be loaded before
        // this line: from here on no thread of this process can create a network socket.
        let lockdown = lockdown::after_listening(landlocked, origin)?;
        anyhow::Ok((models, lockdown))
    })();
    let (models, lockdown) = match started {
        Ok(v) => {
            crate::audit_log::record_start(&audit_log, &policy, Ok(&v.1.detail()))
                .context("cannot record the start in the audit log")?;
            v
        }
        Err(e) => {
            let why = format!("start failed: {e:#}");
            if let Err(audit_error) = crate::audit_log::record_start(&audit_log, &policy, Err(&why))
            {
                tracing::error!(error = %audit_error, "cannot record the failed start");
            }
            crate::audit_log::record_stop(&audit_log, Some(&std::io::Error::other(why)));
            return Err(e);
        }
    };
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

/// Raises the soft limit on open files to the hard one: each connection is a descriptor,
/// and at the usual soft limit (1 024) a flood of idle sockets would leave none for the
/// next legitimate client (accept fails with EMFILE). systemd's unit sets the hard limit.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
