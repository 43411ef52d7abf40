//! Offline verification of a chain of records, from an export file or a state directory.
//!
//! One streaming [`ChainVerifier`] is fed records in file (or key) order and checks, for
//! each record, in this order:
//!
//! 1. **Sequence**: `seq` is the next expected one. A gap is reported as *missing*, a seq
//!    that appears before its predecessor as *reordered* (one record of look-ahead tells a
//!    swap from a gap), a seq lower than expected as *inserted* (a duplicate or a forged
//!    record).
//! 2. **Content**: the recomputed `SHA-256(0x00 || prev || canonical_bytes)` equals the
//!    stored `hash`, else the record was *edited*.
//! 3. **Link**: `prev` equals the previous record's `hash` (genesis: 32 zero bytes).
//!
//! The first failure stops verification and names its seq: later findings would only be
//! consequences of the first one.
//!
//! What a hash chain alone cannot show (an attacker who rewrites the tail and recomputes
//! every hash, or cuts records off the end) is caught by signed checkpoints; see
//! `THREAT_MODEL.md`.

use std::fmt;

use crate::record::{Digest, GENESIS_PREV, Record};

/// Why verification stopped. Each reason names what an auditor should suspect.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
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
    /// The records do not hash to the root signed in the checkpoint of this size.
    RootMismatch { size: u64 },
    /// An older checkpoint given by the auditor is not extended by this log.
    Inconsistent(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(why) => write!(f, "malformed record: {why}"),
            Reason::Unreadable(why) => write!(f, "unreadable: {why}"),
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
            Reason::RootMismatch { size } => write!(
                f,
                "records do not extend the signed checkpoint of size {size} \
                 (a record before seq {size} was edited, inserted or removed and re-hashed)"
            ),
            Reason::Inconsistent(why) => {
                write!(f, "not consistent with the older checkpoint: {why}")
            }
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

/// Streaming chain checker; see the module docs for the checks and their order.
#[derive(Debug)]
pub(crate) struct ChainVerifier {
    first_seq: u64,
    next_seq: u64,
    prev: Digest,
    /// The record awaiting its look-ahead, with its line number.
    held: Option<(Record, Option<u64>)>,
    checked: u64,
}

impl ChainVerifier {
    /// A verifier for a chain that starts at `first_seq`. For a full log `first_seq` is 0
    /// and `prev` must be the genesis value; a partial export starts wherever it starts and
    /// its first `prev` is taken as given (checkpoints anchor it).
    pub(crate) fn new(first_seq: u64, first_prev: Option<Digest>) -> ChainVerifier {
        ChainVerifier {
            first_seq,
            next_seq: first_seq,
            prev: first_prev.unwrap_or(GENESIS_PREV),
            held: None,
            checked: 0,
        }
    }

    /// Feeds the next record. Returns the records that passed, in order (zero or one: the
    /// verifier holds one record back for its look-ahead).
    pub(crate) fn push(
        &mut self,
        record: Record,
        line: Option<u64>,
    ) -> Result<Option<Record>, Failure> {
        let held = self.held.replace((record, line));
        match held {
            None => Ok(None),
            Some((r, l)) => {
                let next = self.held.as_ref().map(|(n, _)| n.seq);
                self.check(r, l, next).map(Some)
            }
        }
    }

    /// Checks the held record; returns it if it passed.
    pub(crate) fn finish(&mut self) -> Result<Option<Record>, Failure> {
        match self.held.take() {
            None => Ok(None),
            Some((r, l)) => self.check(r, l, None).map(Some),
        }
    }

    fn check(
        &mut self,
        r: Record,
        line: Option<u64>,
        next: Option<u64>,
    ) -> Result<Record, Failure> {
        let expected = self.next_seq;
        let fail = |reason| Failure {
            seq: Some(expected),
            line,
            reason,
        };
        if r.seq > expected {
            return Err(fail(if next == Some(expected) {
                Reason::Reordered { found: r.seq }
            } else {
                Reason::Missing { found: r.seq }
            }));
        }
        if r.seq < expected {
            return Err(fail(Reason::Inserted { found: r.seq }));
        }
        if !r.compute_hash().ct_eq(&r.hash) {
            return Err(fail(Reason::Edited));
        }
        // The first record of a partial export has no predecessor here to link to.
        let linked = self.checked == 0 && self.first_seq > 0;
        if !linked && !r.prev.ct_eq(&self.prev) {
            return Err(fail(Reason::BrokenLink));
        }
        self.prev = r.hash;
        self.next_seq += 1;
        self.checked += 1;
        Ok(r)
    }

    pub(crate) fn report(&self, last_checkpoint: Option<u64>) -> Report {
        Report {
            records: self.checked,
            first_seq: self.first_seq,
            head: (self.checked > 0).then_some(self.prev),
            last_checkpoint,
        }
    }
}

/// Verifies an export read from `input`: every record's hash and link, in file order.
///
/// Returns the [`Report`] printed as `OK: …`, or the first [`Failure`].
pub fn verify_export(input: impl std::io::BufRead) -> Result<Report, Failure> {
    let (header, mut reader) = crate::export::ExportReader::new(input)?;
    let mut log = LogVerifier::new(header.from);
    let mut position = header.from;
    loop {
        let next = reader.next_record().map_err(|mut f| {
            f.seq = Some(position);
            f
        })?;
        match next {
            Some((record, line)) => {
                log.push(record, Some(line))?;
                position += 1;
            }
            None => break,
        }
    }
    log.finish()
}

/// Verifies the records stored in the state directory `dir` (the service must be stopped:
/// sled allows one process per database). Nothing is written.
pub fn verify_state(dir: impl AsRef<std::path::Path>) -> Result<Report, Failure> {
    let db_path = dir.as_ref().join(crate::store::DB_DIR);
    let unreadable = |why: String| Failure {
        seq: None,
        line: None,
        reason: Reason::Unreadable(why),
    };
    if !db_path.is_dir() {
        return Err(unreadable(format!(
            "no audit database at {}",
            db_path.display()
        )));
    }
    let db = crate::store::open_db(&db_path).map_err(|e| unreadable(e.to_string()))?;
    let records = db
        .open_tree(crate::store::RECORDS_TREE)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut log = LogVerifier::new(0);
    check_tree(&records, &mut log)?;
    log.finish()
}

/// Feeds every record of a records tree, in key order, to `log`.
pub(crate) fn check_tree(records: &sled::Tree, log: &mut LogVerifier) -> Result<(), Failure> {
    for item in records.iter() {
        let (k, v) = item.map_err(|e| Failure {
            seq: Some(log.position()),
            line: None,
            reason: Reason::Unreadable(e.to_string()),
        })?;
        let expected = log.position();
        let key_seq = <[u8; 8]>::try_from(k.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| Failure {
                seq: Some(expected),
                line: None,
                reason: Reason::Malformed(format!("key of {} bytes", k.len())),
            })?;
        let record = Record::from_json(&v).map_err(|why| Failure {
            seq: Some(key_seq.min(expected)),
            line: None,
            reason: Reason::Malformed(why),
        })?;
        if record.seq != key_seq {
            return Err(Failure {
                seq: Some(key_seq.min(expected)),
                line: None,
                reason: Reason::Malformed(format!(
                    "stored under key seq {key_seq} but says seq {}",
                    record.seq
                )),
            });
        }
        log.push(record, None)?;
    }
    Ok(())
}

/// Chain checks plus (with the `proofs` modules) Merkle and checkpoint checks.
#[derive(Debug)]
pub(crate) struct LogVerifier {
    chain: ChainVerifier,
    pushed: u64,
    first: u64,
}

impl LogVerifier {
    pub(crate) fn new(first_seq: u64) -> LogVerifier {
        LogVerifier {
            chain: ChainVerifier::new(first_seq, None),
            pushed: 0,
            first: first_seq,
        }
    }

    /// Seq the next pushed record should have, counting the one held for look-ahead.
    pub(crate) fn position(&self) -> u64 {
        self.first + self.pushed
    }

    pub(crate) fn push(&mut self, record: Record, line: Option<u64>) -> Result<(), Failure> {
        self.pushed += 1;
        if let Some(passed) = self.chain.push(record, line)? {
            self.on_passed(&passed)?;
        }
        Ok(())
    }

    fn on_passed(&mut self, _record: &Record) -> Result<(), Failure> {
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<Report, Failure> {
        if let Some(passed) = self.chain.finish()? {
            self.on_passed(&passed)?;
        }
        Ok(self.chain.report(None))
    }
}
