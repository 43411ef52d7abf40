//! The files of an audit state directory and the sled database inside it: names, key
//! encoding, opening with the lock retried, the `checkpoint` file beside the database.
//!
//! Shared by the store (which writes them) and the offline verifier (which only reads
//! them), so neither has to import the other for it.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::keys;
use crate::note::Verifier;

/// sled tree holding the records: key = seq as 8 big-endian bytes, value = the record's
/// JSON line (exactly what an export contains).
pub(crate) const RECORDS_TREE: &str = "records";
/// sled tree of wrapped data keys (sealed mode), see [`crate::sealing`].
pub(crate) const KEYS_TREE: &str = "keys";
pub(crate) const DB_DIR: &str = "db";
/// File holding the latest signed checkpoint (C2SP signed note).
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";

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

/// How long `open_db` waits for another holder of the database lock.
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
pub(crate) fn write_latest_checkpoint(dir: &Path, note: &str) -> std::io::Result<()> {
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
