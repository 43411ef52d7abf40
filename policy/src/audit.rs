//! `[audit]`: what the audit log keeps and how often it signs checkpoints (ARCHITECTURE.md §6).
//!
//! Plain data; the appliance turns it into the `audit` crate's `Config`. The audit log
//! itself lives in `STATE_DIR/audit/`.
use serde::{Deserialize, Serialize};

/// A signed checkpoint after this many new records, unless the policy says otherwise.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
/// A signed checkpoint after this many seconds with new records, unless the policy says.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;
/// Free space (MiB) the audit log leaves on its file system unless the policy says otherwise.
pub const DEFAULT_RESERVE_FREE_MIB: u64 = 256;
/// Longest accepted checkpoint origin (the audit crate's limit on its origin file).
pub(crate) const MAX_ORIGIN_LEN: usize = 1024;

/// What is kept of prompts and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditContent {
    /// Only SHA-256 digests of prompt and output (data minimisation, GDPR Art. 5(1)(c)).
    #[default]
    Digest,
    /// Digests plus the content sealed with AES-256-GCM under a per-data-subject key,
    /// erasable by `airlock audit erase` (crypto-shredding, GDPR Art. 17).
    Sealed,
}

/// `[audit]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `"digest"` (default) or `"sealed"`.
    #[serde(default)]
    pub content: AuditContent,
    /// Sign a checkpoint after this many new records; 0: not by count.
    #[serde(default = "d_every")]
    pub checkpoint_every: u64,
    /// Sign a checkpoint when this many seconds passed with new records; 0: not by time.
    #[serde(default = "d_interval")]
    pub checkpoint_interval_secs: u64,
    /// Sealed content older than this many days is shredded (its keys are destroyed;
    /// digests and the chain stay). 0: kept until erased.
    #[serde(default)]
    pub retention_days: u64,
    /// Checkpoint origin line, also the audit key's name (C2SP `tlog-checkpoint` /
    /// `signed-note`), e.g. `hospital.example/airlock/audit`. Unset: the log picks
    /// `airlock/audit/<random>` on first start. Fixed for the life of a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Records that clients cause (`inference.request`, `access.denied`) are refused while
    /// the audit log's file system has less than this many MiB free: the request gets 503
    /// and `/readyz` says why, instead of the append-only log filling the disk (when every
    /// request, and the rest of the host, would fail). 0: no reserve.
    #[serde(default = "d_reserve")]
    pub reserve_free_mib: u64,
}

fn d_reserve() -> u64 {
    DEFAULT_RESERVE_FREE_MIB
}

fn d_every() -> u64 {
    DEFAULT_CHECKPOINT_EVERY
}
fn d_interval() -> u64 {
    DEFAULT_CHECKPOINT_INTERVAL_SECS
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            content: AuditContent::Digest,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval_secs: DEFAULT_CHECKPOINT_INTERVAL_SECS,
            retention_days: 0,
            origin: None,
            reserve_free_mib: DEFAULT_RESERVE_FREE_MIB,
        }
    }
}

impl AuditConfig {
    /// Rules serde cannot express, as (key path, reason).
    pub(crate) fn check(&self) -> Result<(), (String, String)> {
        if self.checkpoint_every == 0 && self.checkpoint_interval_secs == 0 {
            return Err((
                "audit.checkpoint_every".into(),
                "checkpoint_every and checkpoint_interval_secs are both 0: checkpoints would \
                 only be signed at shutdown"
                    .into(),
            ));
        }
        if self.retention_days > 36_500 {
            return Err((
                "audit.retention_days".into(),
                "more than 100 years; use 0 to keep sealed content until erased".into(),
            ));
        }
        if let Some(origin) = &self.origin
            && let Err(why) = check_key_name(origin)
        {
            return Err(("audit.origin".into(), why));
        }
        Ok(())
    }
}

/// C2SP `signed-note` key names "must be non-empty, and must not contain any Unicode
/// spaces or pluses"; the checkpoint origin is one line, so no control characters either.
fn check_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_ORIGIN_LEN {
        return Err(format!("longer than {MAX_ORIGIN_LEN} bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '+')
    {
        return Err(format!(
            "must not contain {c:?} (C2SP key names have no spaces, pluses or control characters)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_c2sp() {
        assert!(check_key_name("hospital.example/airlock/audit").is_ok());
        for bad in ["", "a b", "a+b", "a\u{a0}b", "a\nb", "a\tb"] {
            assert!(check_key_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_key_name(&"a".repeat(MAX_ORIGIN_LEN + 1)).is_err());
    }
}
