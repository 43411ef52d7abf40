//! Checks 4 and 5: the chain checks plus Merkle roots and signed checkpoints.

use super::chain::ChainVerifier;
use super::{Failure, Reason, Report};
use crate::merkle::{self, Frontier, Hash};
use crate::note::{self, NoteError, VerifiedCheckpoint, Verifier};
use crate::record::{Kind, Record};

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
pub(crate) struct LogVerifier<'a> {
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
    /// Shown every record once it has passed its own checks (see [`LogVerifier::observe`]).
    observer: Option<&'a mut dyn FnMut(&Record)>,
}

impl std::fmt::Debug for LogVerifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogVerifier")
            .field("position", &self.position())
            .field("last_good", &self.last_good)
            .field("last_checkpoint", &self.last_checkpoint)
            .finish_non_exhaustive()
    }
}

impl<'a> LogVerifier<'a> {
    /// A verifier for records starting after `prefix` (empty for a full log).
    pub(crate) fn new(key: Verifier, prefix: Frontier) -> LogVerifier<'a> {
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
            observer: None,
        }
    }

    /// Shows `observer` each record once it has passed the chain, Merkle and checkpoint
    /// checks that can be made up to it. A later failure (a checkpoint further on, a
    /// truncated tail) still fails the whole verification: what was observed counts only
    /// when [`LogVerifier::finish`] returns `Ok`.
    pub(crate) fn observe(mut self, observer: &'a mut dyn FnMut(&Record)) -> LogVerifier<'a> {
        self.observer = Some(observer);
        self
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
        self.check_expected()?;
        if let Some(observer) = self.observer.as_mut() {
            observer(record);
        }
        Ok(())
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
