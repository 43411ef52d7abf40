//! The audit log's life in the service: where it lives, its configuration from the policy,
//! opening it at start (the installer's receipts as `software.install`, then
//! `service.start`, `policy.load`) and closing it at stop (`service.stop`, final
//! checkpoint). Appending during service is
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

/// `STATE_DIR/install/pending/`: receipts `install.sh` leaves for each install, upgrade and
/// rollback of the binary (it cannot write the log the service holds).
pub fn receipts_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("install").join("pending")
}

/// Largest receipt read (they are one short JSON line).
const MAX_RECEIPT_BYTES: u64 = 4096;

/// A receipt as `install.sh` writes it (docs/offline-kit.md).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallReceipt {
    action: String,
    binary_sha256: String,
    previous_sha256: Option<String>,
    version: Option<String>,
    kit_manifest_sha256: Option<String>,
    kit_signer: Option<String>,
    time: String,
}

impl InstallReceipt {
    /// Checks every field against what `install.sh` can write, so that nothing unbounded or
    /// unexpected reaches the log.
    fn check(&self) -> Result<(), String> {
        let hex64 =
            |v: &str| v.len() == 64 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let word = |v: &str, max: usize| {
            !v.is_empty()
                && v.len() <= max
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-:=/".contains(&b))
        };
        if !matches!(self.action.as_str(), "install" | "upgrade" | "rollback") {
            return Err(format!(
                "unknown action {:?}",
                self.action.chars().take(32).collect::<String>()
            ));
        }
        let hashes = [
            Some(&self.binary_sha256),
            self.previous_sha256.as_ref(),
            self.kit_manifest_sha256.as_ref(),
        ];
        if hashes.into_iter().flatten().any(|h| !hex64(h)) {
            return Err("a SHA-256 is not 64 lowercase hex digits".into());
        }
        let words = [
            (self.version.as_ref(), 64),
            (self.kit_signer.as_ref(), 64),
            (Some(&self.time), 32),
        ];
        if words
            .into_iter()
            .any(|(v, max)| v.is_some_and(|v| !word(v, max)))
        {
            return Err("version, kit_signer or time is not a short word".into());
        }
        Ok(())
    }

    fn event(&self, file: &str) -> Event {
        let mut event = Event::new(Kind::SoftwareInstall)
            .status(self.action.clone())
            .param("binary_sha256", self.binary_sha256.clone())
            .param("installed_at", self.time.clone())
            .param("receipt", file);
        let optional = [
            ("previous_sha256", &self.previous_sha256),
            ("version", &self.version),
            ("kit_manifest_sha256", &self.kit_manifest_sha256),
            ("kit_signer", &self.kit_signer),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                event = event.param(key, v.clone());
            }
        }
        event
    }
}

/// Records each pending install receipt as a `software.install` record (status = the
/// action), oldest first, and removes it once the record is durable. A receipt that does not
/// parse is recorded as status `malformed` (with why) and moved to `install/rejected/`: an
/// auditor should see that something unexpected was there. Returns how many were recorded.
pub fn record_installs(log: &AuditLog, state_dir: &Path) -> audit::Result<usize> {
    let dir = receipts_dir(state_dir);
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.') && n.len() <= 128)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    names.sort();
    for name in &names {
        let path = dir.join(name);
        let parsed = read_receipt(&path);
        let event = match &parsed {
            Ok(receipt) => receipt.event(name),
            Err(why) => Event::new(Kind::SoftwareInstall)
                .status("malformed")
                .param("receipt", name.as_str())
                .param("error", why.chars().take(200).collect::<String>()),
        };
        log.append(event)?;
        if parsed.is_ok() {
            std::fs::remove_file(&path)?;
        } else {
            let rejected = dir.with_file_name("rejected");
            std::fs::create_dir_all(&rejected)?;
            std::fs::rename(&path, rejected.join(name))?;
        }
    }
    Ok(names.len())
}

fn read_receipt(path: &Path) -> Result<InstallReceipt, String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_RECEIPT_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_RECEIPT_BYTES {
        return Err(format!("longer than {MAX_RECEIPT_BYTES} bytes"));
    }
    let receipt: InstallReceipt = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    receipt.check()?;
    Ok(receipt)
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
