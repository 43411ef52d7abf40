//! Offline verification of a chain of records, from an export file or a state directory.
//!
//! One streaming `ChainVerifier` (`chain.rs`) is fed records in file (or key) order and
//! checks, for each record, in this order:
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
//! `LogVerifier` (`log.rs`) wraps it with the Merkle and checkpoint checks 4 and 5;
//! [`Failure`], [`Reason`] and [`Report`] (`failure.rs`) are what it returns.
//!
//! What a hash chain alone cannot show (an attacker who rewrites the tail and recomputes
//! every hash, or cuts records off the end) is caught by signed checkpoints; see
//! `THREAT_MODEL.md`.

mod chain;
mod failure;
mod log;

pub use self::failure::{Failure, Reason, Report};
pub(crate) use self::log::{LogVerifier, open_note};

use crate::layout;
use crate::merkle::Frontier;
use crate::note::Verifier;
use crate::record::Record;

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
    verify_export_each(input, key, options, &mut |_| {})
}

/// [`verify_export`], showing `observe` each record in seq order once it has passed its
/// checks, in the same single read of `input` (so what is observed is what was verified,
/// even if the file changes meanwhile). What was observed counts only if this returns
/// `Ok`: a failure further on (a checkpoint, a truncated tail) rejects the whole export.
pub fn verify_export_each(
    input: impl std::io::BufRead,
    key: &Verifier,
    options: &Options<'_>,
    observe: &mut dyn FnMut(&Record),
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
    let mut log = LogVerifier::new(key.clone(), prefix).observe(observe);
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
    verify_state_each(dir, key, options, &mut |_| {})
}

/// [`verify_state`], showing `observe` each record once it has passed its checks (see
/// [`verify_export_each`]).
pub fn verify_state_each(
    dir: impl AsRef<std::path::Path>,
    key: &Verifier,
    options: &Options<'_>,
    observe: &mut dyn FnMut(&Record),
) -> Result<Report, Failure> {
    let dir = dir.as_ref();
    let db_path = dir.join(layout::DB_DIR);
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
    let latest = layout::read_latest_checkpoint(dir).map_err(|e| unreadable(e.to_string()))?;
    let db = layout::open_db(&db_path).map_err(|e| match layout::db_error(&db_path, e) {
        crate::Error::Locked { path } => Failure {
            seq: None,
            line: None,
            reason: Reason::Locked(path),
        },
        e => unreadable(e.to_string()),
    })?;
    let records = db
        .open_tree(layout::RECORDS_TREE)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut log = LogVerifier::new(key.clone(), Frontier::new()).observe(observe);
    if let Some(note) = latest {
        log.claim(&note, None)?;
    }
    if let Some(old) = options.since_checkpoint {
        log.since(old)?;
    }
    check_records(records.iter(), &mut log)?;
    log.finish().map(|v| v.report)
}

/// Feeds records read from a records tree (key, value pairs in key order) to `log`.
pub(crate) fn check_records(
    records: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    log: &mut LogVerifier<'_>,
) -> Result<(), Failure> {
    for item in records {
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
