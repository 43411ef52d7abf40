//! Airlock audit log (filled in by the audit issue).
#![forbid(unsafe_code)]

pub mod merkle;
