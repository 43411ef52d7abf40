//! Airlock's tamper-evident audit log (ARCHITECTURE.md §6).
//!
//! # What it does
//! - Every event becomes a [`Record`] in a **hash chain** stored in sled:
//!   `hash = SHA-256(0x00 || prev || canonical_bytes)` (see [`record`] for the encoding).
//! - [`AuditLog::append`] returns a [`Receipt`] only after the record was **flushed** to
//!   disk; concurrent appends share one flush (group commit, see [`store`]).
//! - Offline verification from an export file or a state directory ([`verify`]).
//!
//! # Invariants
//! - `seq` is dense from 0, and records are never rewritten or deleted.
//! - A `Receipt` is only constructed by the store after a successful flush.
//! - No function panics on untrusted input (exports, stored values).
//!
//! # Non-goals
//! No HTTP, no CLI parsing, no burn/actix: the appliance composes this crate. The log is
//! tamper-*evident*, not tamper-proof: see `THREAT_MODEL.md`.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod codec;
pub mod error;
pub mod export;
mod keyfile;
mod keys;
mod layout;
pub mod merkle;
pub mod note;
mod pending;
pub mod proof;
pub mod record;
pub mod seal;
mod sealing;
pub mod store;
pub mod verify;

pub use error::{Error, Result};
pub use export::{ExportReader, ExportSummary, Header, parse_export};
pub use keyfile::KeyFileError;
pub use pending::Pending;
pub use proof::{
    ConsistencyProof, InclusionProof, verify_consistency_proof, verify_inclusion_proof,
};
pub use record::{Actor, Digest, Event, Kind, ModelRef, Record, Sealed, Tokens};
pub use sealing::Shown;
pub use store::{AuditLog, Config, ContentMode, LOCK_WAIT, Receipt, exists, public_key};
pub use verify::{
    Failure, Options, Reason, Report, verify_export, verify_export_each, verify_state,
    verify_state_each,
};
