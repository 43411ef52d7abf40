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
//! # State directory
//! `DIR/db/` (sled), `DIR/origin` (checkpoint origin = key name), `DIR/signing.key`
//! (Ed25519 PKCS#8 PEM, 0600), `DIR/checkpoint` (latest signed checkpoint),
//! `DIR/master.key` (sealed mode, 0600). sled allows one process per database: while the
//! service runs, offline commands go through its admin API.
//!
//! # Non-goals
//! No network, no HTTP; no deletion or rewriting of records, ever.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sled::Transactional;

use crate::codec;
use crate::error::{Error, Result};
use crate::keys;
use crate::merkle::{self, Frontier};
use crate::note::{self, Checkpoint, Signer, Verifier};
use crate::pending::{self, Pending, Reply};
use crate::record::{Actor, Digest, Event, GENESIS_PREV, Kind, MAX_FIELD_LEN, Record, chain_hash};
use crate::seal::MasterKey;
use crate::sealing::{self, DataKeys};
use crate::verify::{Failure, LogVerifier, Reason, check_tree};

/// sled tree holding the records: key = seq as 8 big-endian bytes, value = the record's
/// JSON line (exactly what an export contains).
pub(crate) const RECORDS_TREE: &str = "records";
/// sled tree of wrapped data keys (sealed mode), see [`crate::sealing`].
pub(crate) const KEYS_TREE: &str = "keys";
pub(crate) const DB_DIR: &str = "db";
/// File holding the latest signed checkpoint (C2SP signed note).
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";

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
    /// Checkpoint origin line (also the signing key's name); `None` uses the stored one, or
    /// creates `airlock/audit/<random>` on first open. A value different from the stored
    /// one is an error (checkpoints of one log must share their origin).
    pub origin: Option<String>,
    /// Sealed content older than this is shredded (whole key epochs). `None`: kept.
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
    poisoned: Mutex<Option<String>>,
    latest_checkpoint: Mutex<Option<String>>,
}

impl Shared {
    fn poison_cause(&self) -> Option<String> {
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

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Opens the sled database at `path`. sled's background flusher is off: every write we
/// care about is flushed explicitly, and the flusher thread would otherwise hold the file
/// lock for up to its period after the database is dropped. sled also releases its file
/// lock through deferred (epoch-based) destruction, so a database closed a moment ago in
/// this process may still be locked: the lock is retried for up to [`LOCK_WAIT`].
pub(crate) fn open_db(path: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(path).flush_every_ms(None).open() {
            Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// How long [`open_db`] waits for another holder of the database lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The latest checkpoint kept beside the database, if any.
pub(crate) fn read_latest_checkpoint(dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(CHECKPOINT_FILE)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `DIR/checkpoint` atomically (write, fsync, rename, fsync dir).
fn write_latest_checkpoint(dir: &Path, note: &str) -> std::io::Result<()> {
    let tmp = dir.join(".checkpoint.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(CHECKPOINT_FILE))?;
    fs::File::open(dir)?.sync_all()
}

/// The public key of the log in `dir` as a C2SP vkey (`<origin>+<keyid>+<base64>`), read
/// from its files without opening the database (works while the service runs).
pub fn public_key(dir: impl AsRef<Path>) -> Result<Verifier> {
    keys::verifier(dir.as_ref())
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

/// Whether `dir` holds an audit log (its origin, signing key and database), judged from
/// the files alone: creates nothing and takes no lock.
pub fn exists(dir: impl AsRef<Path>) -> bool {
    let dir = dir.as_ref();
    dir.join(keys::ORIGIN_FILE).is_file()
        && dir.join(keys::SIGNING_KEY_FILE).is_file()
        && dir.join(DB_DIR).is_dir()
}

/// sled reports a held lock only as an I/O error with this text.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

pub(crate) fn db_error(path: &Path, e: sled::Error) -> Error {
    if is_lock_error(&e) {
        Error::Locked {
            path: path.to_path_buf(),
        }
    } else {
        Error::Storage(format!("{}: {e}", path.display()))
    }
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
        check_tree(&records, &mut verifier).map_err(corrupt)?;
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

/// Changes to the keys tree that must land atomically with a batch of records.
#[derive(Default)]
struct KeyChanges {
    put: Vec<(Vec<u8>, Vec<u8>)>,
    del: Vec<Vec<u8>>,
}

impl KeyChanges {
    fn is_empty(&self) -> bool {
        self.put.is_empty() && self.del.is_empty()
    }
}

struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Job>,
    config: Config,
    next_seq: u64,
    head: Digest,
    frontier: Frontier,
    signer: Signer,
    last_cp_size: Option<u64>,
    /// Records appended since the last checkpoint record (not counting it).
    events_since_cp: u64,
    last_cp_time: Instant,
    data_keys: DataKeys,
    last_retention_epoch: Option<u64>,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Writer {
    fn run(mut self) {
        loop {
            let job = match self.config.checkpoint_interval {
                Some(t) => {
                    let wait = t.saturating_sub(self.last_cp_time.elapsed());
                    match self.rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return self.shutdown(None),
                    }
                }
                None => match self.rx.recv() {
                    Ok(job) => Some(job),
                    Err(_) => return self.shutdown(None),
                },
            };
            let mut appends = Vec::new();
            let mut next = job;
            while let Some(job) = next.take() {
                match job {
                    Job::Append(event, reply) => {
                        appends.push((event, reply));
                        if appends.len() < self.config.max_batch {
                            next = self.rx.try_recv().ok();
                        }
                    }
                    Job::Erase(subject, actor, reply) => {
                        self.commit(std::mem::take(&mut appends));
                        reply.send(self.erase(Some(&subject), actor, None));
                    }
                    Job::Checkpoint(reply) => {
                        self.commit(std::mem::take(&mut appends));
                        let r = self.checkpoint().map(|()| self.shared.latest_checkpoint());
                        reply.send(r);
                    }
                    Job::Close(reply) => {
                        self.commit(std::mem::take(&mut appends));
                        return self.shutdown(Some(reply));
                    }
                }
            }
            self.commit(appends);
            self.housekeeping();
        }
    }

    /// Time-based checkpoints and retention, checked after every batch and on timeouts.
    fn housekeeping(&mut self) {
        let count_due = self.config.checkpoint_every > 0
            && self.events_since_cp >= self.config.checkpoint_every;
        let time_due = self
            .config
            .checkpoint_interval
            .is_some_and(|t| self.last_cp_time.elapsed() >= t);
        if (count_due || time_due) && self.events_since_cp > 0 {
            // A failure poisons the log; callers see it on their next append.
            let _ = self.checkpoint();
        }
        if time_due {
            self.last_cp_time = Instant::now();
        }
        if let Some(retention) = self.config.retention {
            let epoch = sealing::epoch_of(unix_now(), self.config.epoch_length);
            if self.last_retention_epoch != Some(epoch) {
                let keep = sealing::epochs_covering(retention, self.config.epoch_length);
                let before = epoch.saturating_sub(keep);
                if self.erase(None, None, Some(before)).is_ok() {
                    self.last_retention_epoch = Some(epoch);
                }
            }
        }
    }

    fn shutdown(mut self, reply: Option<Reply<()>>) {
        let result = if self.shared.poison_cause().is_some() {
            Ok(())
        } else {
            self.checkpoint()
        };
        if let Some(reply) = reply {
            reply.send(result);
        }
    }

    fn poison(&self, cause: &str) {
        *self
            .shared
            .poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cause.to_string());
    }

    /// Writes `records` (already chained from the current head) and `keys` in one atomic
    /// sled batch or transaction, flushes once, and only then advances the head. On failure
    /// the log is poisoned and the head stays where the disk is known to be.
    fn write(&mut self, records: &[Record], keys: KeyChanges) -> Result<()> {
        if let Some(cause) = self.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        let lines: Vec<([u8; 8], Vec<u8>)> = records
            .iter()
            .map(|r| (seq_key(r.seq), r.to_json()))
            .collect();
        let applied = if keys.is_empty() {
            let mut batch = sled::Batch::default();
            for (k, v) in &lines {
                batch.insert(k, v.as_slice());
            }
            self.shared
                .records
                .apply_batch(batch)
                .map_err(|e| e.to_string())
        } else {
            (&self.shared.records, &self.shared.keys)
                .transaction(|(r, k)| {
                    for (key, v) in &lines {
                        r.insert(key, v.as_slice())?;
                    }
                    for (key, v) in &keys.put {
                        k.insert(key.as_slice(), v.as_slice())?;
                    }
                    for key in &keys.del {
                        k.remove(key.as_slice())?;
                    }
                    Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| format!("{e:?}"))
        };
        let flushed = applied.and_then(|()| {
            self.shared
                .db
                .flush()
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if let Err(cause) = flushed {
            self.poison(&cause);
            return Err(Error::Storage(cause));
        }
        for r in records {
            // INVARIANT: the frontier cannot overflow before seq does.
            let _ = self.frontier.push(merkle::leaf_hash(r.hash.as_bytes()));
            self.head = r.hash;
            self.next_seq = r.seq + 1;
        }
        self.shared
            .durable_len
            .store(self.next_seq, Ordering::Release);
        Ok(())
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
        let mut keys = KeyChanges::default();
        let mut records = Vec::with_capacity(appends.len());
        let mut replies = Vec::with_capacity(appends.len());
        let mut prev = self.head;
        for (event, reply) in appends {
            let seq = self.next_seq + records.len() as u64;
            match self.build(&event, seq, prev, &mut keys) {
                Ok(record) => {
                    prev = record.hash;
                    records.push(record);
                    replies.push(reply);
                }
                // Sealing failed (RNG, master key): refuse this event only.
                Err(e) => reply.send(Err(e)),
            }
        }
        match self.write(&records, keys) {
            Ok(()) => {
                self.events_since_cp += records.len() as u64;
                for (reply, r) in replies.into_iter().zip(&records) {
                    reply.send(Ok(Receipt {
                        seq: r.seq,
                        hash: r.hash,
                    }));
                }
            }
            Err(e) => {
                self.data_keys.clear();
                let cause = e.to_string();
                for reply in replies {
                    reply.send(Err(Error::Storage(cause.clone())));
                }
            }
        }
    }

    /// A record for `event` at `seq` after `prev`, sealing its content in sealed mode.
    fn build(
        &mut self,
        event: &Event,
        seq: u64,
        prev: Digest,
        keys: &mut KeyChanges,
    ) -> Result<Record> {
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
        let has_content = event.prompt.is_some() || event.output.is_some();
        if self.config.content == ContentMode::Sealed && has_content {
            let master = self
                .shared
                .master
                .as_ref()
                .ok_or_else(|| Error::Config("sealed mode without a master key".into()))?;
            let subject = sealing::key_subject(event);
            let epoch = sealing::epoch_of(unix_now(), self.config.epoch_length);
            let key = self.data_keys.get_or_create(
                &self.shared.keys,
                master,
                &subject,
                epoch,
                &mut keys.put,
            )?;
            record.sealed = Some(sealing::seal_content(
                key,
                &subject,
                epoch,
                seq,
                event.prompt.as_deref(),
                event.output.as_deref(),
            )?);
        }
        record.hash = chain_hash(&prev, &record.canonical_bytes());
        Ok(record)
    }

    /// Deletes data keys (one subject's, or every key of an epoch before `before_epoch`) and
    /// appends the `audit.erase` record in the same transaction.
    fn erase(
        &mut self,
        subject: Option<&str>,
        actor: Option<Actor>,
        before_epoch: Option<u64>,
    ) -> Result<Receipt> {
        let doomed = sealing::doomed_keys(&self.shared.keys, subject, before_epoch)?;
        if subject.is_none() && doomed.is_empty() {
            // Retention with nothing to shred: no record.
            return Ok(Receipt {
                seq: self.next_seq,
                hash: self.head,
            });
        }
        let mut event = Event::new(Kind::AuditErase).param("keys", doomed.len().to_string());
        event.actor = actor;
        match (subject, before_epoch) {
            (Some(s), _) => event.subject = Some(s.to_string()),
            (None, Some(e)) => {
                event = event
                    .param("reason", "retention")
                    .param("before_epoch", e.to_string());
            }
            (None, None) => {}
        }
        let mut keys = KeyChanges::default();
        let record = self.build(&event, self.next_seq, self.head, &mut keys)?;
        keys.del = doomed.iter().map(|(k, _, _)| k.clone()).collect();
        self.write(std::slice::from_ref(&record), keys)?;
        for (_, s, e) in &doomed {
            self.data_keys.forget(s, *e);
        }
        self.events_since_cp += 1;
        Ok(Receipt {
            seq: record.seq,
            hash: record.hash,
        })
    }

    /// Signs a checkpoint over every flushed record and appends it (see the module docs).
    fn checkpoint(&mut self) -> Result<()> {
        if self.events_since_cp == 0 {
            return Ok(());
        }
        let size = self.next_seq;
        if self.last_cp_size.is_some_and(|last| last >= size) {
            return Ok(());
        }
        let body = Checkpoint::new(&self.shared.origin, size, self.frontier.root())
            .map_err(|e| Error::Config(e.to_string()))?;
        let note = note::sign_checkpoint(&body, &self.signer);
        let event = Event::new(Kind::AuditCheckpoint).param("note", note.clone());
        let record = self.build(&event, size, self.head, &mut KeyChanges::default())?;
        self.write(std::slice::from_ref(&record), KeyChanges::default())?;
        self.last_cp_size = Some(size);
        self.events_since_cp = 0;
        self.last_cp_time = Instant::now();
        *self
            .shared
            .latest_checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(note.clone());
        // The record is durable; the file is a convenience copy (rewritten on open).
        write_latest_checkpoint(&self.shared.dir, &note).map_err(|e| Error::Storage(e.to_string()))
    }
}
