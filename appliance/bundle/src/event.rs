//! What bundle and model operations report, for audit records (`bundle.verify`,
//! `bundle.install`, `bundle.reject`, `model.activate`, `model.rollback`).

use crate::Sha256;

/// One reportable event.
///
/// Exhaustive on purpose: a sink (the audit log) must map every kind, checked when it
/// compiles, rather than file an unknown one under some other kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `bundle.verify`: a bundle's header verified (before its payload is written).
    Verify {
        /// Bundle name.
        name: String,
        /// Version.
        version: String,
        /// Sequence.
        sequence: u64,
        /// Policy names of the keys that signed.
        signers: Vec<String>,
    },
    /// `bundle.install`: a bundle was installed (files in `models/NAME/VERSION/`).
    Install {
        /// Bundle name.
        name: String,
        /// Version.
        version: String,
        /// Sequence.
        sequence: u64,
        /// SHA-256 of the model file.
        sha256: Sha256,
    },
    /// `bundle.reject`: a bundle was refused; nothing of it was kept.
    Reject {
        /// The bundle name, when the manifest got that far.
        name: Option<String>,
        /// The error, one line.
        reason: String,
    },
    /// `model.activate`: the active pointer of a name now names `version`.
    Activate {
        /// Model name.
        name: String,
        /// Version now active.
        version: String,
        /// Version active before, if any.
        previous: Option<String>,
        /// SHA-256 of the model file.
        sha256: Sha256,
    },
    /// `model.rollback`: explicit operator rollback to the previously active version.
    Rollback {
        /// Model name.
        name: String,
        /// Version that was active.
        from: String,
        /// Version active now.
        to: String,
        /// SHA-256 of the model file now active.
        sha256: Sha256,
    },
}

impl Event {
    /// The audit record kind (ARCHITECTURE.md §6).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Verify { .. } => "bundle.verify",
            Event::Install { .. } => "bundle.install",
            Event::Reject { .. } => "bundle.reject",
            Event::Activate { .. } => "model.activate",
            Event::Rollback { .. } => "model.rollback",
        }
    }
}

/// Receives events as they happen. An error aborts the operation before its effect
/// becomes visible (for an audit log that must be written first); a rejection is
/// reported after the fact, and its sink error is only logged.
pub trait EventSink {
    /// Records one event.
    fn record(&mut self, event: &Event) -> Result<(), SinkError>;
}

/// Why a sink could not record an event: the sink's own error (an audit log's I/O error,
/// say), kept whole so callers can report its cause chain.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Logs events with `tracing` (target `airlock::bundle`) and never fails.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn record(&mut self, event: &Event) -> Result<(), SinkError> {
        tracing::info!(target: "airlock::bundle", kind = event.kind(), event = ?event, "bundle event");
        Ok(())
    }
}

/// Collects events (tests, and callers that write them somewhere after the fact).
impl EventSink for Vec<Event> {
    fn record(&mut self, event: &Event) -> Result<(), SinkError> {
        self.push(event.clone());
        Ok(())
    }
}
