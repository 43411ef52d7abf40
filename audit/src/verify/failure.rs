//! What verification reports: the first [`Failure`] with its [`Reason`], or a [`Report`].

use std::fmt;

use crate::record::Digest;

/// Why verification stopped. Each reason names what an auditor should suspect.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Another process (the running service) holds the state directory's database.
    Locked(std::path::PathBuf),
    /// The line or stored value is not a well-formed record.
    Malformed(String),
    /// The export or state directory could not be read at all.
    Unreadable(String),
    /// The record's content does not match its `hash`: a field was edited.
    Edited,
    /// `prev` does not equal the previous record's hash: a record before this one was
    /// replaced, or this record's `prev` was edited.
    BrokenLink,
    /// Records are missing: expected this seq, found `found`.
    Missing { found: u64 },
    /// Seq `found` appears before the expected seq (two records swapped).
    Reordered { found: u64 },
    /// A record with an already-used seq `found` appears (duplicated or inserted).
    Inserted { found: u64 },
    /// A signed checkpoint covers more records than are present: the log was truncated.
    Truncated { checkpoint_size: u64, present: u64 },
    /// A checkpoint record or checkpoint note is malformed.
    BadCheckpoint(String),
    /// The checkpoint carries a signature line of the trusted key that does not verify.
    BadSignature,
    /// The checkpoint carries no signature of the trusted key (signed by another key).
    WrongKey,
    /// The records do not hash to the root signed in the checkpoint of this size; the
    /// previous checkpoint that matched had size `since` (the change is in `since..size`).
    RootMismatch { size: u64, since: u64 },
    /// An older checkpoint given by the auditor is not extended by this log.
    Inconsistent(String),
    /// The export header's last seq (`to`) is not the last record's: records were cut off
    /// or added after the export was written.
    RangeMismatch {
        header_to: Option<u64>,
        last: Option<u64>,
    },
    /// The export belongs to another log than the trusted key's.
    OtherLog { origin: String, key_name: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(why) => write!(f, "malformed record: {why}"),
            Reason::Unreadable(why) => write!(f, "unreadable: {why}"),
            Reason::Locked(path) => write!(
                f,
                "the audit database {} is in use by another process (is the service running?)",
                path.display()
            ),
            Reason::Edited => f.write_str("edited: record content does not match its hash"),
            Reason::BrokenLink => f.write_str(
                "broken chain: prev does not match the previous record's hash \
                 (previous record replaced, or prev edited)",
            ),
            Reason::Missing { found } => write!(f, "missing: next record present is seq {found}"),
            Reason::Reordered { found } => {
                write!(f, "reordered: seq {found} appears before this seq")
            }
            Reason::Inserted { found } => {
                write!(f, "inserted: a second record with seq {found} appears here")
            }
            Reason::Truncated {
                checkpoint_size,
                present,
            } => write!(
                f,
                "truncated: a signed checkpoint covers {checkpoint_size} records \
                 but only {present} are present"
            ),
            Reason::BadCheckpoint(why) => write!(f, "bad checkpoint: {why}"),
            Reason::BadSignature => f.write_str("bad signature on checkpoint"),
            Reason::WrongKey => f.write_str("checkpoint is not signed by the trusted key"),
            Reason::RootMismatch { size, since } => write!(
                f,
                "records do not extend the signed checkpoint of size {size}: a record in \
                 seq {since}..{size} was edited, inserted or removed and the chain re-hashed"
            ),
            Reason::Inconsistent(why) => {
                write!(f, "not consistent with the older checkpoint: {why}")
            }
            Reason::RangeMismatch { header_to, last } => write!(
                f,
                "the export header says the last record is seq {} but it is seq {}",
                header_to.map_or("none".to_string(), |t| t.to_string()),
                last.map_or("none".to_string(), |t| t.to_string())
            ),
            Reason::OtherLog { origin, key_name } => write!(
                f,
                "wrong key: the export is of log {origin:?} but the key is {key_name:?}'s"
            ),
        }
    }
}

/// The first finding, located by seq (when known) and by line in an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The first bad seq (the expected seq at the point of failure).
    pub seq: Option<u64>,
    /// 1-based line number in the export file, when verifying an export.
    pub line: Option<u64>,
    pub reason: Reason,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FAIL: ")?;
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}")?;
        } else {
            f.write_str("export")?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for Failure {}

/// A successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Number of records checked.
    pub records: u64,
    /// Seq of the first record checked (0 for a full log).
    pub first_seq: u64,
    /// Hash of the last record (the chain head), `None` for an empty log.
    pub head: Option<Digest>,
    /// Size of the largest signed checkpoint checked, if any.
    pub last_checkpoint: Option<u64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OK: {} records", self.records)?;
        if self.first_seq > 0 {
            write!(f, " (seq {}..)", self.first_seq)?;
        }
        match &self.head {
            Some(h) => write!(f, ", head {h}")?,
            None => f.write_str(", head none")?,
        }
        match self.last_checkpoint {
            Some(size) => write!(f, ", last checkpoint {size}"),
            None => f.write_str(", last checkpoint none"),
        }
    }
}
