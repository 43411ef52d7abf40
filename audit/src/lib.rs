//! Airlock audit log (filled in by the audit issue).
#![forbid(unsafe_code)]

mod keyfile;
pub mod merkle;
pub mod note;
pub mod seal;

pub use keyfile::KeyFileError;
