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
//! # State directory
//! `DIR/db/` (sled), `DIR/signing.key` (Ed25519 PKCS#8, 0600), `DIR/master.key` (sealed
//! mode, 0600). sled allows one process per database: while the service runs, offline
//! commands go through its admin API.
//!
//! # Non-goals
//! No network, no HTTP; no deletion or rewriting of records, ever.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use ring::signature::Ed25519KeyPair;

use crate::codec;
use crate::error::{Error, Result};
use crate::keys;
use crate::pending::{self, Pending, Reply};
use crate::record::{Digest, Event, GENESIS_PREV, MAX_FIELD_LEN, Record, chain_hash};
use crate::verify::{Failure, LogVerifier, Reason, check_tree};

/// sled tree holding the records: key = seq as 8 big-endian bytes, value = the record's
/// JSON line (exactly what an export contains).
pub(crate) const RECORDS_TREE: &str = "records";
/// sled tree for small metadata (the origin).
pub(crate) const META_TREE: &str = "meta";
pub(crate) const DB_DIR: &str = "db";

/// What is kept of prompts and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContentMode {
    /// Only SHA-256 digests (data minimisation; the default).
    #[default]
    Digest,
    /// Digests plus the content sealed under a per-subject key (erasable).
    Sealed,
}

/// Log configuration: plain data, defaults as named constants.
#[derive(Clone, Debug)]
pub struct Config {
    pub content: ContentMode,
    /// Sign a checkpoint after this many new records (0: not by count).
    pub checkpoint_every: u64,
    /// Sign a checkpoint when this much time passed since the last one and records were
    /// added (`None`: not by time).
    pub checkpoint_interval: Option<Duration>,
    /// Checkpoint origin line; `None` uses the stored one, or creates
    /// `airlock/audit/<random>` on first open. A value different from the stored one is an
    /// error (checkpoints of one log must share their origin).
    pub origin: Option<String>,
    /// Sealed content older than this is shredded (by key epoch). `None`: kept.
    pub retention: Option<Duration>,
    /// Length of one sealing-key epoch.
    pub epoch_length: Duration,
    /// Most appends written under one flush.
    pub max_batch: usize,
}

impl Config {
    pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
    pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_EPOCH_LENGTH: Duration = Duration::from_secs(86_400);
    pub const DEFAULT_MAX_BATCH: usize = 1024;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            content: ContentMode::Digest,
            checkpoint_every: Self::DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: Some(Self::DEFAULT_CHECKPOINT_INTERVAL),
            origin: None,
            retention: None,
            epoch_length: Self::DEFAULT_EPOCH_LENGTH,
            max_batch: Self::DEFAULT_MAX_BATCH,
        }
    }
}

/// Proof that a record was appended and flushed to disk. Only the store makes these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    seq: u64,
    hash: Digest,
}

impl Receipt {
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn hash(&self) -> Digest {
        self.hash
    }
}

enum Job {
    Append(Box<Event>, Reply<Receipt>),
    Close(Reply<()>),
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) records: sled::Tree,
    pub(crate) origin: String,
    /// Number of records known flushed: readers never see beyond it.
    pub(crate) durable_len: AtomicU64,
    poisoned: Mutex<Option<String>>,
}

impl Shared {
    fn poison_cause(&self) -> Option<String> {
        self.poisoned
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

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Append(e, _) => write!(f, "Append({})", e.kind),
            Job::Close(_) => f.write_str("Close"),
        }
    }
}

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Opens the sled database at `path`. sled's background flusher is off: every write we
/// care about is flushed explicitly, and the flusher thread would otherwise hold the file
/// lock for up to its period after the database is dropped.
pub(crate) fn open_db(path: &Path) -> sled::Result<sled::Db> {
    sled::Config::new().path(path).flush_every_ms(None).open()
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, verifying the stored chain first.
    ///
    /// Errors: [`Error::Corrupt`] naming the first bad seq when the store does not verify;
    /// [`Error::Storage`] when sled cannot open it (e.g. another process holds it);
    /// [`Error::Key`] for key-file problems.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<AuditLog> {
        let dir = dir.as_ref().to_path_buf();
        keys::ensure_state_dir(&dir)?;
        let signing = keys::load_or_create_signing_key(&dir)?;
        let db = open_db(&dir.join(DB_DIR))?;
        let records = db.open_tree(RECORDS_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let origin = load_origin(&db, &meta, config.origin.as_deref())?;

        let corrupt = |failure: Failure| match failure.reason {
            Reason::Unreadable(why) => Error::Storage(why),
            _ => Error::Corrupt {
                path: dir.clone(),
                failure,
            },
        };
        let mut verifier = LogVerifier::new(0);
        check_tree(&records, &mut verifier).map_err(corrupt)?;
        let report = verifier.finish().map_err(corrupt)?;
        let len = report.records;
        let head = report.head.unwrap_or(GENESIS_PREV);

        let shared = Arc::new(Shared {
            dir,
            db,
            records,
            origin,
            durable_len: AtomicU64::new(len),
            poisoned: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            rx,
            config,
            next_seq: len,
            head,
            _signing: signing,
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

    /// Queues `event`; the returned [`Pending`] resolves once the record is on disk.
    pub fn submit(&self, event: Event) -> Pending<Receipt> {
        if let Err(e) = validate(&event) {
            return pending::ready(Err(e));
        }
        let (reply, pending) = pending::channel();
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        match tx.as_ref() {
            Some(tx) => {
                // A send error returns the job; dropping its Reply answers Closed.
                let _ = tx.send(Job::Append(Box::new(event), reply));
            }
            None => reply.send(Err(Error::Closed)),
        }
        pending
    }

    /// Appends `event` and returns once it is durable. Blocks the calling thread for about
    /// one flush; async callers use [`AuditLog::submit`] and `.await`.
    pub fn append(&self, event: Event) -> Result<Receipt> {
        self.submit(event).wait()
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
            let r = Record::from_json(&v).map_err(Error::Storage)?;
            out.push(r);
        }
        Ok(out)
    }

    /// One durable record.
    pub fn record(&self, seq: u64) -> Result<Record> {
        if seq >= self.len() {
            return Err(Error::NotFound(format!(
                "seq {seq} (log has {} records)",
                self.len()
            )));
        }
        let v = self
            .shared
            .records
            .get(seq_key(seq))?
            .ok_or_else(|| Error::NotFound(format!("seq {seq}")))?;
        Record::from_json(&v).map_err(Error::Storage)
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

/// The raw Ed25519 public key of the log in `dir`, read from its key file without opening
/// the database (works while the service holds the lock).
pub fn public_key_raw(dir: impl AsRef<Path>) -> Result<[u8; 32]> {
    keys::signing_public_key(dir.as_ref())
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

/// The origin line of this log's checkpoints: stored on first open, fixed afterwards.
fn load_origin(db: &sled::Db, meta: &sled::Tree, wanted: Option<&str>) -> Result<String> {
    if let Some(stored) = meta.get("origin")? {
        let stored = String::from_utf8(stored.to_vec())
            .map_err(|_| Error::Storage("stored origin is not UTF-8".into()))?;
        if let Some(w) = wanted
            && w != stored
        {
            return Err(Error::Config(format!(
                "origin {w:?} differs from this log's origin {stored:?}"
            )));
        }
        return Ok(stored);
    }
    let origin = match wanted {
        Some(w) => w.to_string(),
        None => {
            let mut id = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
                .map_err(|_| Error::Storage("random generator failed".into()))?;
            format!("airlock/audit/{}", codec::hex(&id))
        }
    };
    if origin.is_empty() || origin.chars().any(|c| c.is_control()) {
        return Err(Error::Config(format!("invalid origin {origin:?}")));
    }
    meta.insert("origin", origin.as_bytes())?;
    db.flush()?;
    Ok(origin)
}

struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Job>,
    config: Config,
    next_seq: u64,
    head: Digest,
    _signing: Ed25519KeyPair,
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = match self.config.checkpoint_interval {
                Some(t) => match self.rx.recv_timeout(t) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match self.rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            let mut appends = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Append(event, reply) => {
                        appends.push((event, reply));
                        if appends.len() < self.config.max_batch {
                            next = self.rx.try_recv().ok();
                        }
                    }
                    Job::Close(reply) => {
                        self.commit(std::mem::take(&mut appends));
                        let flushed = self.shared.db.flush().map(|_| ()).map_err(Error::from);
                        reply.send(flushed);
                        return;
                    }
                }
            }
            self.commit(appends);
        }
    }

    /// Writes `appends` as one batch under one flush and answers each caller.
    fn commit(&mut self, appends: Vec<(Box<Event>, Reply<Receipt>)>) {
        if appends.is_empty() {
            return;
        }
        if let Some(cause) = self.shared.poison_cause() {
            for (_, reply) in appends {
                reply.send(Err(Error::Poisoned {
                    cause: cause.clone(),
                }));
            }
            return;
        }
        let mut batch = sled::Batch::default();
        let mut seq = self.next_seq;
        let mut head = self.head;
        let mut receipts = Vec::with_capacity(appends.len());
        for (event, _) in &appends {
            let record = self.seal_record(event, seq, head);
            batch.insert(&seq_key(seq), record.to_json());
            receipts.push(Receipt {
                seq,
                hash: record.hash,
            });
            head = record.hash;
            seq += 1;
        }
        let written = self
            .shared
            .records
            .apply_batch(batch)
            .and_then(|()| self.shared.db.flush().map(|_| ()));
        match written {
            Ok(()) => {
                self.next_seq = seq;
                self.head = head;
                self.shared.durable_len.store(seq, Ordering::Release);
                for ((_, reply), receipt) in appends.into_iter().zip(receipts) {
                    reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                let cause = e.to_string();
                *self
                    .shared
                    .poisoned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(cause.clone());
                for (_, reply) in appends {
                    reply.send(Err(Error::Storage(cause.clone())));
                }
            }
        }
    }

    /// Builds the record for `event` at `seq` after `prev`.
    fn seal_record(&self, event: &Event, seq: u64, prev: Digest) -> Record {
        let mut record = Record {
            seq,
            time: codec::now_rfc3339(),
            kind: event.kind,
            actor: event.actor.clone(),
            peer: event.peer.clone(),
            request_id: event.request_id.clone(),
            model: event.model.clone(),
            prompt_sha256: event.prompt.as_deref().map(Digest::of),
            output_sha256: event.output.as_deref().map(Digest::of),
            tokens: event.tokens,
            status: event.status.clone(),
            duration_ms: event.duration_ms,
            subject: event.subject.clone(),
            sealed: None,
            params: event.params.clone(),
            prev,
            hash: GENESIS_PREV,
        };
        record.hash = chain_hash(&prev, &record.canonical_bytes());
        record
    }
}
