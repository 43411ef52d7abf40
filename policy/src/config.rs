//! The policy schema: one sub-config per component, defaults as named constants.
//!
//! Each component's section is a field of [`Policy`] with its own struct (and
//! `#[serde(default)]` where the section is optional): `audit: AuditConfig` (in `audit.rs`),
//! `engine: EngineConfig` (`engine.rs`), `egress: EgressConfig` (`egress.rs`), `trust:
//! Option<TrustConfig>` (`trust.rs`, bundle publisher keys). A new section follows the same
//! pattern.
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::egress::EgressConfig;
use crate::identity::{CertFacts, IdentityRule, RoleSet};

/// Where the service keeps its state (audit log, models, logs) unless the policy says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/airlock";
/// The listen address when the policy names none (and systemd passes no socket).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8443));
/// How long in-flight requests may run after SIGTERM/SIGINT before they are dropped.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Largest request body accepted (413 above). 4 MiB holds a long prompt with room to spare.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Largest prompt, in tokens (400 above).
pub const DEFAULT_MAX_PROMPT_TOKENS: u32 = 4096;
/// Largest `max_tokens` a request may ask for.
pub const DEFAULT_MAX_COMPLETION_TOKENS: u32 = 1024;
/// Requests waiting for the engine before new ones get 429.
pub const DEFAULT_QUEUE_DEPTH: u32 = 64;
/// Requests per minute per client certificate (0 = unlimited).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 600;

/// A loaded, validated policy. Paths are absolute (resolved against the policy file's
/// directory) and the files they name existed when the policy was loaded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Directory for the service's state: audit log, installed models, `logs/`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Listeners and shutdown.
    #[serde(default)]
    pub server: ServerConfig,
    /// Server certificate and client-certificate trust.
    pub tls: TlsConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Outbound lockdown (`[egress]`).
    #[serde(default)]
    pub egress: EgressConfig,
    /// Audit log content and checkpoints (`[audit]`, see [`crate::AuditConfig`]).
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// Threads, batching and KV-cache budget (`[engine]`, see [`crate::EngineConfig`]).
    #[serde(default)]
    pub engine: crate::engine::EngineConfig,
    /// Identity rules, in file order (`[[identity]]`).
    #[serde(default, rename = "identity")]
    pub identities: Vec<IdentityRule>,
    /// Model-bundle publishers (`[trust]`); without it no bundle can be installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<crate::trust::TrustConfig>,
    /// The file the policy was loaded from.
    #[serde(skip)]
    pub(crate) source: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to listen on. Ignored when systemd passes sockets (`LISTEN_FDS`).
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
}

fn default_listen() -> Vec<SocketAddr> {
    vec![DEFAULT_LISTEN]
}

fn default_grace() -> u64 {
    DEFAULT_SHUTDOWN_GRACE_SECS
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
        }
    }
}

/// `[tls]`. There is no default: a server without a client CA would either refuse
/// everyone or, worse, trust everyone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Server private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// CA bundles (PEM) client certificates must chain to. At least one.
    pub client_ca: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER), honoured for every client certificate.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// Also offer TLS 1.2 (ECDHE with AEAD suites only). TLS 1.3 only when false.
    #[serde(default)]
    pub tls12: bool,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body in bytes (413 above).
    #[serde(default = "d_body")]
    pub max_body_bytes: u64,
    /// Largest prompt in tokens.
    #[serde(default = "d_prompt")]
    pub max_prompt_tokens: u32,
    /// Largest completion a request may ask for, in tokens.
    #[serde(default = "d_completion")]
    pub max_completion_tokens: u32,
    /// Requests queued for the engine before 429.
    #[serde(default = "d_queue")]
    pub queue_depth: u32,
    /// Requests per minute per client certificate; 0 disables the limit.
    #[serde(default = "d_rpm")]
    pub requests_per_minute: u32,
}

fn d_body() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn d_prompt() -> u32 {
    DEFAULT_MAX_PROMPT_TOKENS
}
fn d_completion() -> u32 {
    DEFAULT_MAX_COMPLETION_TOKENS
}
fn d_queue() -> u32 {
    DEFAULT_QUEUE_DEPTH
}
fn d_rpm() -> u32 {
    DEFAULT_REQUESTS_PER_MINUTE
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_prompt_tokens: DEFAULT_MAX_PROMPT_TOKENS,
            max_completion_tokens: DEFAULT_MAX_COMPLETION_TOKENS,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
        }
    }
}

impl Policy {
    /// The file this policy was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The roles of a verified client certificate connecting from `peer`: the union of
    /// the roles of every matching rule, empty when none matches (default deny).
    pub fn roles_for(&self, cert: &CertFacts, peer: Option<std::net::IpAddr>) -> RoleSet {
        self.identities
            .iter()
            .filter(|rule| rule.matcher.matches(cert, peer))
            .flat_map(|rule| rule.roles.iter().copied())
            .collect()
    }

    /// The effective policy as TOML: every default filled in, every path absolute.
    /// `airlock policy check` prints this.
    pub fn render_effective(&self) -> Result<String, crate::PolicyError> {
        let body = toml::to_string_pretty(self).map_err(|e| crate::PolicyError::Invalid {
            path: self.source.clone(),
            line: None,
            key: ".".to_owned(),
            reason: format!("cannot render effective policy: {e}"),
        })?;
        Ok(format!(
            "# Effective policy loaded from {} (defaults filled in, paths resolved)\n{body}",
            self.source.display()
        ))
    }
}
