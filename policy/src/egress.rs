//! `[egress]`: the process lockdown that makes outbound connections impossible
//! (ARCHITECTURE.md §8). The layers themselves live in [`crate::lockdown`].
use serde::{Deserialize, Serialize};

/// Whether the service locks itself down. [`Lockdown::Enforce`] unless the policy says.
pub const DEFAULT_LOCKDOWN: Lockdown = Lockdown::Enforce;

/// `egress.lockdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lockdown {
    /// Landlock before the runtime and seccomp once listening; start-up fails when the
    /// kernel cannot apply either.
    #[default]
    Enforce,
    /// No lockdown, for debugging only: the service logs a warning every minute and
    /// `/readyz` reports not ready.
    Off,
}

impl Lockdown {
    /// The value as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Lockdown::Enforce => "enforce",
            Lockdown::Off => "off",
        }
    }
}

/// `[egress]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// `"enforce"` (default) or `"off"`.
    #[serde(default)]
    pub lockdown: Lockdown,
}
