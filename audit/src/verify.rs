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

use crate::merkle::{self, Frontier, Hash};
use crate::note::{self, NoteError, VerifiedCheckpoint, Verifier};
use crate::record::{Digest, GENESIS_PREV, Kind, Record};

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

    /// Feeds the next record. Returns the record that passed with its line, if any (the
    /// verifier holds one record back for its look-ahead).
    pub(crate) fn push(
        &mut self,
        record: Record,
        line: Option<u64>,
    ) -> Result<Option<(Record, Option<u64>)>, Failure> {
        let held = self.held.replace((record, line));
        match held {
            None => Ok(None),
            Some((r, l)) => {
                let next = self.held.as_ref().map(|(n, _)| n.seq);
                self.check(r, l, next).map(|r| Some((r, l)))
            }
        }
    }

    /// Checks the held record; returns it if it passed.
    pub(crate) fn finish(&mut self) -> Result<Option<(Record, Option<u64>)>, Failure> {
        match self.held.take() {
            None => Ok(None),
            Some((r, l)) => self.check(r, l, None).map(|r| Some((r, l))),
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

/// Extra inputs of a verification.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// An older signed checkpoint (note text) the auditor kept: the log must extend it.
    pub since_checkpoint: Option<&'a [u8]>,
}

/// Verifies an export read from `input` against the trusted log key `key`.
///
/// Returns the [`Report`] printed as `OK: …`, or the first [`Failure`].
pub fn verify_export(
    input: impl std::io::BufRead,
    key: &Verifier,
    options: &Options<'_>,
) -> Result<Report, Failure> {
    let (header, mut reader) = crate::export::ExportReader::new(input)?;
    let header_fail = |reason| Failure {
        seq: None,
        line: Some(1),
        reason,
    };
    if header.origin != key.name() {
        return Err(header_fail(Reason::OtherLog {
            origin: header.origin.clone(),
            key_name: key.name().to_string(),
        }));
    }
    let prefix = match (&header.prefix, header.from) {
        (None, 0) => Frontier::new(),
        (None, from) => {
            return Err(header_fail(Reason::Malformed(format!(
                "export starts at seq {from} but has no Merkle prefix"
            ))));
        }
        (Some(p), from) => {
            let f = crate::codec::unb64(p)
                .and_then(|b| Frontier::from_bytes(&b).ok())
                .ok_or_else(|| header_fail(Reason::Malformed("bad Merkle prefix".into())))?;
            if f.size() != from {
                return Err(header_fail(Reason::Malformed(format!(
                    "Merkle prefix has size {} but the export starts at seq {from}",
                    f.size()
                ))));
            }
            f
        }
    };
    let mut log = LogVerifier::new(key.clone(), prefix);
    if let Some(note) = &header.checkpoint {
        log.claim(note.as_bytes(), None)?;
    }
    if let Some(old) = options.since_checkpoint {
        log.since(old)?;
    }
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
    let verified = log.finish()?;
    // The header's range must describe the records (it is unsigned, but a mismatch means
    // the file was cut or edited).
    let last = (position > header.from).then(|| position - 1);
    if header.to != last {
        return Err(Failure {
            seq: Some(position),
            line: Some(1),
            reason: Reason::RangeMismatch {
                header_to: header.to,
                last,
            },
        });
    }
    Ok(verified.report)
}

/// Verifies the state directory `dir` against the trusted log key `key`: every stored
/// record, and the latest checkpoint kept beside the database. The service must be stopped
/// (sled allows one process per database). Nothing is written.
pub fn verify_state(
    dir: impl AsRef<std::path::Path>,
    key: &Verifier,
    options: &Options<'_>,
) -> Result<Report, Failure> {
    let dir = dir.as_ref();
    let db_path = dir.join(crate::store::DB_DIR);
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
    let latest =
        crate::store::read_latest_checkpoint(dir).map_err(|e| unreadable(e.to_string()))?;
    let db =
        crate::store::open_db(&db_path).map_err(|e| match crate::store::db_error(&db_path, e) {
            crate::Error::Locked { path } => Failure {
                seq: None,
                line: None,
                reason: Reason::Locked(path),
            },
            e => unreadable(e.to_string()),
        })?;
    let records = db
        .open_tree(crate::store::RECORDS_TREE)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut log = LogVerifier::new(key.clone(), Frontier::new());
    if let Some(note) = latest {
        log.claim(&note, None)?;
    }
    if let Some(old) = options.since_checkpoint {
        log.since(old)?;
    }
    check_tree(&records, &mut log)?;
    log.finish().map(|v| v.report)
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

/// Maps a note error to what an auditor should suspect.
fn note_reason(e: NoteError) -> Reason {
    match e {
        NoteError::NoKnownSignature => Reason::WrongKey,
        NoteError::InvalidSignature { .. } | NoteError::DuplicateSignature { .. } => {
            Reason::BadSignature
        }
        other => Reason::BadCheckpoint(other.to_string()),
    }
}

/// Opens a checkpoint note with the trusted key (origin = the key's name).
pub(crate) fn open_note(key: &Verifier, note: &[u8]) -> Result<VerifiedCheckpoint, Reason> {
    note::open_checkpoint(key.name(), std::slice::from_ref(key), note).map_err(note_reason)
}

/// A checkpoint that the records must reach and match.
#[derive(Debug)]
struct Expected {
    size: u64,
    root: Hash,
    /// Line of the export it came from (the header), for messages.
    line: Option<u64>,
    /// From the auditor (`--since-checkpoint`) rather than from the log.
    pinned: bool,
}

/// What a successful walk over a full log leaves behind (used by the store on open).
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) report: Report,
    pub(crate) frontier: Frontier,
    /// The latest checkpoint record's note, if any.
    pub(crate) latest_note: Option<String>,
}

/// Chain checks plus Merkle and checkpoint checks:
///
/// 4. **Checkpoint records** (`audit.checkpoint`, written right after the records they
///    cover, so at seq = size): the note verifies under the trusted key (else *wrong key*
///    or *bad signature*), its size equals the record's seq, sizes strictly increase, and
///    the Merkle root of the records before it equals the signed root (else the records
///    were changed and re-hashed since signing).
/// 5. **Claimed checkpoints** (the export header's latest checkpoint, the state's
///    `checkpoint` file, the auditor's `--since-checkpoint`): the records must reach their
///    size (else *truncated*) and match their root.
#[derive(Debug)]
pub(crate) struct LogVerifier {
    chain: ChainVerifier,
    key: Verifier,
    frontier: Frontier,
    pushed: u64,
    first: u64,
    /// Size of the last matching checkpoint (or the prefix size).
    last_good: u64,
    last_checkpoint: Option<u64>,
    latest_note: Option<String>,
    expected: Vec<Expected>,
}

impl LogVerifier {
    /// A verifier for records starting after `prefix` (empty for a full log).
    pub(crate) fn new(key: Verifier, prefix: Frontier) -> LogVerifier {
        let first = prefix.size();
        LogVerifier {
            chain: ChainVerifier::new(first, None),
            key,
            frontier: prefix,
            pushed: 0,
            first,
            last_good: first,
            last_checkpoint: None,
            latest_note: None,
            expected: Vec::new(),
        }
    }

    /// Adds a signed checkpoint the records must reach and match.
    pub(crate) fn claim(&mut self, note: &[u8], line: Option<u64>) -> Result<(), Failure> {
        self.expect(note, line.or(Some(1)), false)
    }

    /// Adds the auditor's pinned older checkpoint.
    pub(crate) fn since(&mut self, note: &[u8]) -> Result<(), Failure> {
        self.expect(note, None, true)
    }

    fn expect(&mut self, note: &[u8], line: Option<u64>, pinned: bool) -> Result<(), Failure> {
        let vc = open_note(&self.key, note).map_err(|reason| Failure {
            seq: None,
            line,
            reason: if pinned {
                Reason::Inconsistent(format!("the older checkpoint does not verify: {reason}"))
            } else {
                reason
            },
        })?;
        if vc.size() < self.first {
            return Err(Failure {
                seq: None,
                line,
                reason: Reason::Inconsistent(format!(
                    "checkpoint of size {} is older than the export's first seq {}; \
                     export from seq {} or earlier",
                    vc.size(),
                    self.first,
                    vc.size()
                )),
            });
        }
        self.expected.push(Expected {
            size: vc.size(),
            root: *vc.root(),
            line,
            pinned,
        });
        self.check_expected()
    }

    /// Compares every expected checkpoint whose size the frontier has reached.
    fn check_expected(&mut self) -> Result<(), Failure> {
        let size = self.frontier.size();
        let root = self.frontier.root();
        let mut i = 0;
        while i < self.expected.len() {
            if self.expected[i].size != size {
                i += 1;
                continue;
            }
            let e = self.expected.swap_remove(i);
            if e.root != root {
                return Err(Failure {
                    seq: Some(self.last_good),
                    line: e.line,
                    reason: if e.pinned {
                        Reason::Inconsistent(format!(
                            "the records do not hash to its root at size {size}"
                        ))
                    } else {
                        Reason::RootMismatch {
                            size,
                            since: self.last_good,
                        }
                    },
                });
            }
            self.last_good = self.last_good.max(size);
        }
        Ok(())
    }

    /// Seq the next pushed record should have, counting the one held for look-ahead.
    pub(crate) fn position(&self) -> u64 {
        self.first + self.pushed
    }

    pub(crate) fn push(&mut self, record: Record, line: Option<u64>) -> Result<(), Failure> {
        self.pushed += 1;
        if let Some((passed, passed_line)) = self.chain.push(record, line)? {
            self.on_passed(&passed, passed_line)?;
        }
        Ok(())
    }

    fn on_passed(&mut self, record: &Record, line: Option<u64>) -> Result<(), Failure> {
        let fail = |reason| Failure {
            seq: Some(record.seq),
            line,
            reason,
        };
        if record.kind == Kind::AuditCheckpoint {
            let note = record
                .params
                .get("note")
                .ok_or_else(|| fail(Reason::BadCheckpoint("no note in the record".into())))?;
            let vc = open_note(&self.key, note.as_bytes()).map_err(fail)?;
            if vc.size() != record.seq {
                return Err(fail(Reason::BadCheckpoint(format!(
                    "checkpoint of size {} recorded at seq {}",
                    vc.size(),
                    record.seq
                ))));
            }
            if self.last_checkpoint.is_some_and(|last| last >= vc.size()) {
                return Err(fail(Reason::BadCheckpoint(
                    "checkpoint sizes do not increase".into(),
                )));
            }
            // The frontier holds exactly the records before this one.
            if self.frontier.root() != *vc.root() {
                return Err(fail(Reason::RootMismatch {
                    size: vc.size(),
                    since: self.last_good,
                }));
            }
            self.last_good = vc.size();
            self.last_checkpoint = Some(vc.size());
            self.latest_note = Some(note.clone());
        }
        self.frontier
            .push(merkle::leaf_hash(record.hash.as_bytes()))
            .map_err(|e| fail(Reason::Malformed(e.to_string())))?;
        self.check_expected()
    }

    pub(crate) fn finish(mut self) -> Result<Verified, Failure> {
        if let Some((passed, line)) = self.chain.finish()? {
            self.on_passed(&passed, line)?;
        }
        let present = self.frontier.size();
        if let Some(e) = self.expected.iter().min_by_key(|e| e.size) {
            return Err(Failure {
                seq: Some(present),
                line: e.line,
                reason: Reason::Truncated {
                    checkpoint_size: e.size,
                    present,
                },
            });
        }
        let report = self.chain.report(
            self.last_checkpoint
                .max((self.last_good > self.first).then_some(self.last_good)),
        );
        Ok(Verified {
            report,
            frontier: self.frontier,
            latest_note: self.latest_note,
        })
    }
}
