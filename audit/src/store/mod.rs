//! The append-only store on sled, with group commit.
//!
//! # Design
//! - One **writer thread** owns the chain head (next seq, last hash). Callers send it
//!   events over a channel; it takes every event already queued (up to
//!   [`Config::max_batch`]), turns them into records in arrival order, writes them in one
//!   sled batch, calls `flush()` once and only then answers every caller with its
//!   [`Receipt`]. Ordering is therefore total and one fsync covers many appends.
//! - **Durability**: a `Receipt` exists only for a record that was flushed. sled guarantees
//!   nothing before `flush()` returns Ok (its background flusher only logs errors), so the
//!   receipt is sent after the flush, never before.
//! - **Failed flush → poisoned log.** When a write or flush fails, every waiting append gets
//!   [`Error::Storage`], the head is *not* advanced, and the log refuses all further appends
//!   ([`Error::Poisoned`]) until it is reopened. Reason: after a failed flush sled's
//!   in-memory tree may hold records the disk does not, and continuing from either head
//!   could fork the chain. Reopening re-reads the tail from disk and verifies it. A record
//!   whose append failed may still be found after reopening (sled may have persisted it
//!   later); it is whole and correctly chained, never torn, because a sled batch is atomic.
//! - **Open = verify.** [`AuditLog::open`] walks the whole stored chain with the same
//!   checks as the offline verifier and refuses to open a store that fails them, naming the
//!   first bad seq. Cost: one pass over the records (measured by the benchmark).
//! - **API for async callers**: [`AuditLog::submit`] returns a [`Pending`] that is both a
//!   `Future` and blockable; [`AuditLog::append`] is `submit(..).wait()`. Neither needs a
//!   runtime; from tokio, `.await` the `Pending` (no `spawn_blocking` needed).
//!
//! - **Checkpoints**: every [`Config::checkpoint_every`] records, every
//!   [`Config::checkpoint_interval`] and on [`AuditLog::close`], the writer signs a C2SP
//!   checkpoint over the *flushed* records (size = number of records, root = RFC 6962 root
//!   of their hashes) and appends it as an `audit.checkpoint` record at seq = size. Because
//!   only flushed records are signed and flushed records are never rewritten, the log can
//!   never sign two checkpoints of one size with different roots, even across crashes. The
//!   latest one is also written to `DIR/checkpoint` so truncating the database is detected.
//!
//! # Files
//! This file is the API ([`AuditLog`], [`Receipt`]) and opening; `config.rs` the plain-data
//! [`Config`]; `writer.rs` the writer thread. The state directory's file names and the sled
//! helpers live in the crate's `layout.rs`, shared with the offline verifier.
//!
//! # State directory
//! `DIR/db/` (sled), `DIR/origin` (checkpoint origin = key name), `DIR/signing.key`
//! (Ed25519 PKCS#8 PEM, 0600), `DIR/checkpoint` (latest signed checkpoint),
//! `DIR/master.key` (sealed mode, 0600). sled allows one process per database: while the
//! service runs, offline commands go through its admin API.
//!
//! # Non-goals
//! No network, no HTTP; no deletion or rewriting of records, ever.

mod config;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

pub use self::config::{Config, ContentMode};
pub use crate::layout::{LOCK_WAIT, exists, public_key};

use self::writer::Writer;
use crate::error::{Error, Result};
use crate::keys;
use crate::layout::{
    DB_DIR, KEYS_TREE, RECORDS_TREE, db_error, open_db, read_latest_checkpoint, seq_key,
    write_latest_checkpoint,
};
use crate::merkle::Frontier;
use crate::note::{Signer, Verifier};
use crate::pending::{self, Pending, Reply};
use crate::record::{Actor, Digest, Event, GENESIS_PREV, MAX_FIELD_LEN, Record};
use crate::seal::MasterKey;
use crate::sealing::DataKeys;
use crate::verify::{Failure, LogVerifier, Reason, check_records};

/// Proof that a record was appended and flushed to disk. Only the store makes these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub(super) seq: u64,
    pub(super) hash: Digest,
}

impl Receipt {
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn hash(&self) -> Digest {
        self.hash
    }
}

pub(super) enum Job {
    Append(Box<Event>, Reply<Receipt>),
    Erase(String, Option<Actor>, Reply<Receipt>),
    Checkpoint(Reply<Option<String>>),
    Close(Reply<()>),
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) records: sled::Tree,
    pub(crate) keys: sled::Tree,
    pub(crate) origin: String,
    pub(crate) verifier: Verifier,
    pub(crate) master: Option<MasterKey>,
    /// Number of records known flushed: readers never see beyond it.
    pub(crate) durable_len: AtomicU64,
    pub(super) poisoned: Mutex<Option<String>>,
    pub(super) latest_checkpoint: Mutex<Option<String>>,
}

impl Shared {
    pub(super) fn poison_cause(&self) -> Option<String> {
        self.poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn latest_checkpoint(&self) -> Option<String> {
        self.latest_checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The audit log. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct AuditLog {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// How [`AuditLog::open_with`] treats the state directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create the directory, origin and signing key on first open.
    Create,
    /// The log must exist; append to it.
    Existing,
    /// The log must exist; no writer, nothing written.
    ReadOnly,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, verifying the stored chain and checkpoints first.
    ///
    /// Errors: [`Error::Corrupt`] naming the first bad seq when the store does not verify;
    /// [`Error::Locked`] when another process holds the database; [`Error::Storage`] when
    /// sled cannot open it otherwise; [`Error::Key`] for key-file problems;
    /// [`Error::Config`] for a changed origin.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<AuditLog> {
        Self::open_with(dir.as_ref(), config, Mode::Create)
    }

    /// Opens an **existing** log for appending (e.g. `airlock audit erase`): like
    /// [`AuditLog::open`], but creates nothing when `dir` holds no log
    /// ([`Error::NoLog`]).
    pub fn open_existing(dir: impl AsRef<Path>, config: Config) -> Result<AuditLog> {
        Self::open_with(dir.as_ref(), config, Mode::Existing)
    }

    /// Opens an existing log **read-only** for the offline commands (export, prove, show):
    /// creates no file, starts no writer, signs nothing; appends fail with
    /// [`Error::Closed`]. The chain is verified as by [`AuditLog::open`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<AuditLog> {
        Self::open_with(dir.as_ref(), Config::default(), Mode::ReadOnly)
    }

    fn open_with(dir: &Path, config: Config, mode: Mode) -> Result<AuditLog> {
        let dir = dir.to_path_buf();
        let (origin, signer) = if mode == Mode::Create {
            keys::ensure_state_dir(&dir)?;
            let origin = keys::load_or_create_origin(&dir, config.origin.as_deref())?;
            let signer = keys::load_or_create_signer(&dir, &origin)?;
            (origin, signer)
        } else {
            if !exists(&dir) {
                return Err(Error::NoLog { path: dir });
            }
            let origin = keys::load_or_create_origin(&dir, config.origin.as_deref())?;
            let path = dir.join(keys::SIGNING_KEY_FILE);
            let signer = Signer::load(&origin, &path).map_err(|e| Error::Key {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            (origin, signer)
        };
        let has_master = dir.join(keys::MASTER_KEY_FILE).exists();
        let master = match config.content {
            ContentMode::Sealed if mode != Mode::ReadOnly => {
                Some(keys::load_or_create_master_key(&dir)?)
            }
            _ if has_master => Some(keys::load_or_create_master_key(&dir)?),
            _ => None,
        };
        let db_path = dir.join(DB_DIR);
        let db = open_db(&db_path).map_err(|e| db_error(&db_path, e))?;
        let records = db.open_tree(RECORDS_TREE)?;
        let keys_tree = db.open_tree(KEYS_TREE)?;

        let corrupt = |failure: Failure| match failure.reason {
            Reason::Unreadable(why) => Error::Storage(why),
            _ => Error::Corrupt {
                path: dir.clone(),
                failure,
            },
        };
        let mut verifier = LogVerifier::new(signer.verifier().clone(), Frontier::new());
        if let Some(note) = read_latest_checkpoint(&dir)? {
            verifier.claim(&note, None).map_err(corrupt)?;
        }
        check_records(records.iter(), &mut verifier).map_err(corrupt)?;
        let verified = verifier.finish().map_err(corrupt)?;
        let len = verified.report.records;
        let head = verified.report.head.unwrap_or(GENESIS_PREV);
        if let Some(note) = &verified.latest_note
            && mode != Mode::ReadOnly
        {
            // The file may lag the records after a crash between flush and file write.
            write_latest_checkpoint(&dir, note)?;
        }
        let last_cp_size = verified.report.last_checkpoint;
        let events_since_cp = match last_cp_size {
            Some(size) => len - size - 1,
            None => len,
        };

        let shared = Arc::new(Shared {
            dir,
            db,
            records,
            keys: keys_tree,
            origin,
            verifier: signer.verifier().clone(),
            master,
            durable_len: AtomicU64::new(len),
            poisoned: Mutex::new(None),
            latest_checkpoint: Mutex::new(verified.latest_note),
        });
        if mode == Mode::ReadOnly {
            return Ok(AuditLog {
                shared,
                tx: Mutex::new(None),
                writer: Mutex::new(None),
            });
        }
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            rx,
            config,
            next_seq: len,
            head,
            frontier: verified.frontier,
            signer,
            last_cp_size,
            events_since_cp,
            last_cp_time: Instant::now(),
            data_keys: DataKeys::default(),
            last_retention_epoch: None,
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Storage(format!("cannot start writer thread: {e}")))?;
        Ok(AuditLog {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    fn send(&self, job: Job) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = tx.as_ref() {
            // A send error returns the job; dropping its Reply answers Closed.
            let _ = tx.send(job);
        }
        // With no sender the job is dropped here, and its Reply answers Closed.
    }

    /// Queues `event`; the returned [`Pending`] resolves once the record is on disk. It is
    /// a `Future` (`.await` it from async code) and has a blocking [`Pending::wait`].
    pub fn submit(&self, event: Event) -> Pending<Receipt> {
        if let Err(e) = validate(&event) {
            return pending::ready(Err(e));
        }
        let (reply, pending) = pending::channel();
        self.send(Job::Append(Box::new(event), reply));
        pending
    }

    /// Appends `event` and returns once it is durable. Blocks the calling thread for about
    /// one flush; async callers use [`AuditLog::submit`] and `.await`.
    pub fn append(&self, event: Event) -> Result<Receipt> {
        self.submit(event).wait()
    }

    /// Crypto-shreds `subject`: deletes every data key of the subject and appends an
    /// `audit.erase` record (by `actor`), atomically. Sealed content of the subject becomes
    /// unreadable; every record and the chain stay as they were.
    pub fn erase(&self, subject: &str, actor: Option<Actor>) -> Result<Receipt> {
        if subject.is_empty() || subject.len() > MAX_FIELD_LEN {
            return Err(Error::InvalidEvent(
                "subject must be 1..16 MiB bytes".into(),
            ));
        }
        let (reply, pending) = pending::channel();
        self.send(Job::Erase(subject.to_string(), actor, reply));
        pending.wait()
    }

    /// Signs a checkpoint now if records were added since the last one; returns the latest
    /// signed checkpoint (note text).
    pub fn checkpoint(&self) -> Result<Option<String>> {
        let (reply, pending) = pending::channel();
        self.send(Job::Checkpoint(reply));
        pending.wait()
    }

    /// The latest signed checkpoint (C2SP signed note text), for `/v1/audit/checkpoint`.
    pub fn latest_checkpoint(&self) -> Option<String> {
        self.shared.latest_checkpoint()
    }

    /// This log's public key (vkey) for auditors to pin.
    pub fn verifier(&self) -> &Verifier {
        &self.shared.verifier
    }

    /// Number of durable records (the next seq).
    pub fn len(&self) -> u64 {
        self.shared.durable_len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// False once a write failed or the log was closed: `/readyz` reports not ready.
    pub fn is_writable(&self) -> bool {
        self.shared.poison_cause().is_none()
            && self
                .tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
    }

    /// Up to `limit` durable records starting at `from` (for `/v1/audit/records`).
    pub fn records(&self, from: u64, limit: usize) -> Result<Vec<Record>> {
        let end = self.len();
        let mut out = Vec::new();
        if from >= end {
            return Ok(out);
        }
        for item in self.shared.records.range(seq_key(from)..seq_key(end)) {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item?;
            out.push(Record::from_json(&v).map_err(Error::Storage)?);
        }
        Ok(out)
    }

    /// One durable record.
    pub fn record(&self, seq: u64) -> Result<Record> {
        let len = self.len();
        if seq >= len {
            return Err(Error::NotFound(format!(
                "seq {seq} (the log has {len} records)"
            )));
        }
        let v = self
            .shared
            .records
            .get(seq_key(seq))?
            .ok_or_else(|| Error::NotFound(format!("seq {seq}")))?;
        Record::from_json(&v).map_err(Error::Storage)
    }

    /// Verifies the durable records of this open log as [`crate::verify_state`] verifies a
    /// stopped one (against this log's own key and its latest signed checkpoint), showing
    /// `observe` each record once it has passed its checks. For reports computed while the
    /// service runs (`GET /v1/audit/report`): records appended meanwhile are not included.
    pub fn verify_each(
        &self,
        options: &crate::Options<'_>,
        observe: &mut dyn FnMut(&Record),
    ) -> std::result::Result<crate::Report, Failure> {
        // The checkpoint first: it never covers more than the durable records read after it.
        let latest = self.latest_checkpoint();
        let end = self.len();
        let mut log =
            LogVerifier::new(self.shared.verifier.clone(), Frontier::new()).observe(observe);
        if let Some(note) = latest {
            log.claim(note.as_bytes(), None)?;
        }
        if let Some(old) = options.since_checkpoint {
            log.since(old)?;
        }
        check_records(
            self.shared.records.range(seq_key(0)..seq_key(end)),
            &mut log,
        )?;
        log.finish().map(|v| v.report)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The origin line of this log's checkpoints.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Drains queued appends, signs a final checkpoint, flushes and stops the writer.
    /// Idempotent; appends after `close` fail with [`Error::Closed`]. The database lock is
    /// released when the `AuditLog` is dropped (drop also closes).
    pub fn close(&self) -> Result<()> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let result = match tx {
            Some(tx) => {
                let (reply, pending) = pending::channel();
                let _ = tx.send(Job::Close(reply));
                drop(tx);
                pending.wait()
            }
            None => Ok(()),
        };
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        result
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn validate(event: &Event) -> Result<()> {
    if event.kind.is_reserved() {
        return Err(Error::InvalidEvent(format!(
            "kind {} is written only by the log itself",
            event.kind
        )));
    }
    if event.longest_field() > MAX_FIELD_LEN {
        return Err(Error::InvalidEvent(format!(
            "a field exceeds {MAX_FIELD_LEN} bytes"
        )));
    }
    Ok(())
}
