//! Errors of the audit crate.
//!
//! [`Error`] is what the store returns to the service: each variant says who probably caused
//! it. Verification failures are not errors of the program but findings about the evidence;
//! they are [`crate::verify::Failure`] values carried by [`Error::Corrupt`] when a store
//! refuses to open.

use std::path::PathBuf;

use crate::verify::Failure;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The disk, the filesystem or sled failed (disk full, read-only mount, I/O error).
    /// The append was not acknowledged; the caller answers 503.
    #[error("audit storage error: {0}")]
    Storage(String),

    /// A previous flush failed, so the in-memory chain head can no longer be trusted to
    /// match the disk; the log refuses appends until it is reopened (which re-reads and
    /// re-checks the tail from disk).
    #[error("audit log unavailable since a failed write ({cause}); reopen it to continue")]
    Poisoned { cause: String },

    /// Another process holds the database (sled allows one process per database): the
    /// service is probably running; use its admin API instead.
    #[error("the audit database {} is in use by another process (is the service running?)", path.display())]
    Locked { path: PathBuf },

    /// The directory holds no audit log (no origin, signing key or database), and this
    /// operation does not create one.
    #[error("no audit log in {} (has the service started once?)", path.display())]
    NoLog { path: PathBuf },

    /// The log was closed (or its writer thread is gone).
    #[error("audit log is closed")]
    Closed,

    /// The stored chain does not verify: someone edited the database, or the disk corrupted
    /// it. The log refuses to open rather than extend a broken chain.
    #[error("audit store at {path} is corrupt: {failure}")]
    Corrupt { path: PathBuf, failure: Failure },

    /// A key file or the state directory could not be read, created or parsed.
    #[error("audit key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },

    /// A caller bug: an event the log refuses to record as given.
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),

    /// The configuration contradicts the stored state (e.g. a different origin).
    #[error("audit configuration: {0}")]
    Config(String),

    /// Asked for a record or proof that does not exist.
    #[error("no such record: {0}")]
    NotFound(String),

    /// Writing an export failed.
    #[error("export I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
