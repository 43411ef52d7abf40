//! Errors of policy loading and validation.
use std::path::PathBuf;

/// Why a policy file could not be loaded. Every variant names the file; those about
/// content name the key path and, where known, the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read (missing, permissions): an operator or installer mistake.
    #[error("{}: cannot read policy file: {source}", path.display())]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}: TOML syntax error: {message}", path.display())]
    Syntax {
        /// The policy file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// What the parser expected.
        message: String,
    },
    /// The file is TOML but a key is unknown, has the wrong type or an invalid value
    /// (bad glob, bad CIDR, unknown role, missing file, ...).
    #[error("{}{}: {key}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// 1-based line of the offending value, when the parser knows it.
        line: Option<usize>,
        /// Key path, e.g. `identity[2].match.cn` or `tls.client_ca[0]`.
        key: String,
        /// Why it is invalid.
        reason: String,
    },
}

impl PolicyError {
    /// The key path of an [`PolicyError::Invalid`] error.
    pub fn key(&self) -> Option<&str> {
        match self {
            PolicyError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Why a lockdown layer could not be applied. With `egress.lockdown = "enforce"` each of
/// these stops the service from starting: it never serves with fewer layers than the
/// policy asks for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockdownError {
    /// The kernel has no usable Landlock (not built in, disabled at boot, or older than
    /// ABI 4, which brought the TCP rules): an operating-system limitation.
    #[error(
        "Landlock is required by egress.lockdown = \"enforce\" but unavailable: {reason} \
         (needs Linux >= 6.7 with landlock in the lsm= list)"
    )]
    LandlockUnsupported {
        /// What the kernel or the landlock crate said.
        reason: String,
    },
    /// A Landlock rule could not be added or the ruleset not applied (e.g. the state
    /// directory cannot be opened).
    #[error("Landlock: {0}")]
    Landlock(String),
    /// The seccomp filter could not be built (unsupported CPU architecture: a port is
    /// needed, not a configuration change).
    #[error("seccomp filter: {0}")]
    SeccompBuild(String),
    /// The kernel refused the seccomp filter, or could not synchronise it to every
    /// thread (`ThreadSync` names the thread that could not take it).
    #[error("seccomp: {0}")]
    SeccompInstall(String),
}
