//! The audit log's life in the service: where it lives, its configuration from the policy,
//! opening it at start (`service.start`, `policy.load`) and closing it at stop
//! (`service.stop`, final checkpoint). Appending during service is
//! [`server::audit::AuditHandle`](crate::server::audit::AuditHandle)'s job.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use audit::{AuditLog, Event, Kind};
use policy::Policy;

/// The audit log's directory inside the service's state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(AUDIT_SUBDIR)
}

/// Name of the audit log's directory inside the state directory.
pub const AUDIT_SUBDIR: &str = "audit";

/// The `audit` crate's configuration for the policy's `[audit]` section.
pub fn config(p: &policy::AuditConfig) -> audit::Config {
    const DAY: Duration = Duration::from_secs(86_400);
    audit::Config {
        content: match p.content {
            policy::AuditContent::Digest => audit::ContentMode::Digest,
            policy::AuditContent::Sealed => audit::ContentMode::Sealed,
        },
        checkpoint_every: p.checkpoint_every,
        checkpoint_interval: (p.checkpoint_interval_secs > 0)
            .then(|| Duration::from_secs(p.checkpoint_interval_secs)),
        origin: p.origin.clone(),
        retention: (p.retention_days > 0)
            .then(|| DAY.saturating_mul(u32::try_from(p.retention_days).unwrap_or(u32::MAX))),
        ..audit::Config::default()
    }
}

/// Opens (creating on first start) the log in `STATE_DIR/audit`. A store that does not
/// verify or an unwritable directory is an error: the service must not start without its
/// log. The start itself is recorded by [`record_start`], once the lockdown is in force.
pub fn open(policy: &Policy) -> audit::Result<Arc<AuditLog>> {
    Ok(Arc::new(AuditLog::open(
        dir(&policy.state_dir),
        config(&policy.audit),
    )?))
}

/// Records `service.start` and `policy.load`. `lockdown` is the egress lockdown now in force
/// (`lockdown::Status::detail`, e.g. `lockdown=enforce landlock=enforced(...) seccomp=...`),
/// or why the start failed before it was complete: an auditor reads at every start which
/// layers held (ARCHITECTURE.md §6, §8). A failed append is an error: no log, no service.
pub fn record_start(
    log: &AuditLog,
    policy: &Policy,
    lockdown: Result<&str, &str>,
) -> audit::Result<()> {
    let start = Event::new(Kind::ServiceStart)
        .param("version", env!("CARGO_PKG_VERSION"))
        .param("pid", std::process::id().to_string());
    log.append(match lockdown {
        Ok(layers) => start.status("ok").param("lockdown", layers),
        Err(why) => start
            .status("error")
            .param("lockdown", "not in force: the start failed")
            .param("error", why),
    })?;
    let mut load = Event::new(Kind::PolicyLoad)
        .status("ok")
        .param("path", policy.source().display().to_string())
        .param(
            "audit.content",
            match policy.audit.content {
                policy::AuditContent::Digest => "digest",
                policy::AuditContent::Sealed => "sealed",
            },
        );
    // The digest pins which policy text was in force (the file may change later).
    if let Ok(bytes) = std::fs::read(policy.source()) {
        load = load.param("sha256", audit::Digest::of(&bytes).to_string());
    }
    log.append(load)?;
    Ok(())
}

/// Records `service.stop` and closes the log with a final signed checkpoint. Errors are
/// logged: the process is exiting either way.
pub fn record_stop(log: &AuditLog, server_error: Option<&std::io::Error>) {
    let mut event = Event::new(Kind::ServiceStop).status(if server_error.is_some() {
        "error"
    } else {
        "ok"
    });
    if let Some(e) = server_error {
        event = event.param("error", e.to_string());
    }
    if let Err(e) = log.append(event) {
        tracing::error!(error = %e, "cannot record service.stop in the audit log");
    }
    match log.close() {
        Ok(()) => tracing::info!(records = log.len(), "audit log closed"),
        Err(e) => tracing::error!(error = %e, "closing the audit log failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_section_maps_to_the_log_config() {
        let p = policy::AuditConfig {
            content: policy::AuditContent::Sealed,
            checkpoint_every: 5,
            checkpoint_interval_secs: 0,
            retention_days: 2,
            origin: Some("h.example/audit".into()),
            reserve_free_mib: 0,
        };
        let c = config(&p);
        assert_eq!(c.content, audit::ContentMode::Sealed);
        assert_eq!(c.checkpoint_every, 5);
        assert_eq!(c.checkpoint_interval, None);
        assert_eq!(c.retention, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(c.origin.as_deref(), Some("h.example/audit"));
        assert_eq!(config(&policy::AuditConfig::default()).retention, None);
    }
}
