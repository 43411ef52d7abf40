//! The Airlock policy file: what the appliance serves, to whom, and within which limits.
//!
//! # Design
//! The policy is one TOML file (see `airlock.example.toml` beside this crate). It is plain
//! data: one sub-config struct per component ([`ServerConfig`], [`TlsConfig`], [`Limits`],
//! the `[[identity]]` rules), each with its defaults as named constants. Loading is
//! *parse, don't validate*: globs, CIDRs, fingerprints and roles are parsed into typed values
//! while the file is deserialised, so a [`Policy`] that exists is a valid one.
//!
//! # Invariants
//! - Every table rejects unknown keys (`deny_unknown_fields`): a misspelt key is an error,
//!   never a silently ignored setting.
//! - Every error names the policy file, the key path (`identity[2].match.cn`) and the reason.
//! - Relative paths in the file are resolved against the directory of the policy file, so a
//!   loaded policy holds absolute paths only.
//! - Identity matching is default deny: a certificate that matches no rule gets the empty
//!   [`RoleSet`].
//!
//! # Non-goals
//! This crate does no TLS, no certificate parsing and no HTTP: the appliance extracts
//! [`CertFacts`] from a certificate that rustls has already verified and asks
//! [`Policy::roles_for`] which roles they carry. The `[trust]` section names the bundle
//! publishers' keys; verifying bundles is the `airlock-bundle` crate's job.
//!
//! The one exception to "plain data" is [`lockdown`]: the Landlock and seccomp layers that
//! `[egress]` ([`EgressConfig`]) turns on, kept here so that a probe or another binary
//! applies exactly the functions the service applies.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod audit;
mod config;
mod egress;
mod engine;
mod error;
mod identity;
mod load;
pub mod lockdown;
mod trust;

pub use audit::{
    AuditConfig, AuditContent, DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_INTERVAL_SECS,
    DEFAULT_RESERVE_FREE_MIB,
};
pub use config::{
    DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_COMPLETION_TOKENS,
    DEFAULT_MAX_PROMPT_TOKENS, DEFAULT_QUEUE_DEPTH, DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_SHUTDOWN_GRACE_SECS, DEFAULT_STATE_DIR, Limits, Policy, ServerConfig, TlsConfig,
};
pub use egress::{DEFAULT_LOCKDOWN, EgressConfig, Lockdown};
pub use engine::{DEFAULT_KV_CACHE_MIB, DEFAULT_MAX_BATCH, Device, EngineConfig};
pub use error::{LockdownError, PolicyError};
pub use identity::{
    CertFacts, Fingerprint, IdentityRule, Match, Pattern, Role, RoleSet, UnknownRole,
};
pub use trust::{
    DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_TRUST_THRESHOLD, Publisher, PublisherKey, TrustConfig,
};

/// The commented example policy shipped with the crate (it parses: see the tests).
pub const EXAMPLE_POLICY: &str = include_str!("../airlock.example.toml");
