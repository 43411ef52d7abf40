//! Key files in the state directory: created once, mode 0600, never rewritten.
//!
//! - `signing.key`: the audit signing key, Ed25519 PKCS#8 v2 (as `ring` generates it).
//! - `master.key`: the 32-byte master key that wraps per-subject data keys (sealed mode).
//!
//! A key file is written to a temporary name with `O_EXCL` and mode 0600, synced, renamed
//! into place and the directory synced, so a crash leaves either no key or a whole key. An
//! existing key file readable by group or others is refused (fail closed: someone loosened
//! its permissions).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::error::{Error, Result};

pub(crate) const SIGNING_KEY_FILE: &str = "signing.key";
#[allow(dead_code, reason = "used by sealed mode, which lands with seal.rs")]
pub(crate) const MASTER_KEY_FILE: &str = "master.key";
/// Largest key file accepted (a PKCS#8 Ed25519 document is 83-85 bytes).
const MAX_KEY_FILE: u64 = 4096;

fn key_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a key file, refusing loose permissions and oversized files.
pub(crate) fn read_key_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_err(path, e.to_string())),
    };
    let meta = file.metadata().map_err(|e| key_err(path, e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(key_err(
            path,
            format!(
                "permissions {:o} allow group/other access; expected 0600",
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| key_err(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(key_err(path, "file too large for a key"));
    }
    Ok(Some(bytes))
}

/// Writes `bytes` to `path` atomically with mode 0600; fails if `path` exists.
pub(crate) fn write_key_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| key_err(&tmp, e.to_string()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| key_err(&tmp, e.to_string()))?;
    drop(f);
    if path.exists() {
        let _ = fs::remove_file(&tmp);
        return Err(key_err(path, "already exists"));
    }
    fs::rename(&tmp, path).map_err(|e| key_err(path, e.to_string()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| key_err(dir, e.to_string()))?;
    Ok(())
}

/// Loads the audit signing key, creating it on first use.
pub(crate) fn load_or_create_signing_key(dir: &Path) -> Result<Ed25519KeyPair> {
    let path = dir.join(SIGNING_KEY_FILE);
    let pkcs8 = match read_key_file(&path)? {
        Some(bytes) => bytes,
        None => {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| key_err(&path, "key generation failed"))?;
            write_key_file(&path, doc.as_ref())?;
            doc.as_ref().to_vec()
        }
    };
    Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|e| key_err(&path, format!("not an Ed25519 PKCS#8 v2 key: {e}")))
}

/// The raw 32-byte public key of the signing key in `dir`, without opening the database
/// (so `airlock audit pubkey` works while the service holds the sled lock).
pub(crate) fn signing_public_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(SIGNING_KEY_FILE);
    let pkcs8 = read_key_file(&path)?
        .ok_or_else(|| key_err(&path, "no signing key (has the log been opened once?)"))?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|e| key_err(&path, format!("not an Ed25519 PKCS#8 v2 key: {e}")))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(pair.public_key().as_ref());
    Ok(out)
}

/// Loads the 32-byte master key, creating it on first use.
#[allow(dead_code, reason = "used by sealed mode, which lands with seal.rs")]
pub(crate) fn load_or_create_master_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(MASTER_KEY_FILE);
    let bytes = match read_key_file(&path)? {
        Some(b) => b,
        None => {
            let mut key = [0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| key_err(&path, "random generator failed"))?;
            write_key_file(&path, &key)?;
            key.to_vec()
        }
    };
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| key_err(&path, format!("expected 32 bytes, found {}", bytes.len())))
}

/// Creates `dir` (mode 0700) if needed.
pub(crate) fn ensure_state_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| key_err(dir, e.to_string()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| key_err(dir, e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_is_created_once_with_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_signing_key(dir.path()).expect("create");
        let b = load_or_create_signing_key(dir.path()).expect("load");
        assert_eq!(a.public_key().as_ref(), b.public_key().as_ref());
        let mode = fs::metadata(dir.path().join(SIGNING_KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            signing_public_key(dir.path()).expect("pub").as_slice(),
            a.public_key().as_ref()
        );
    }

    #[test]
    fn loose_permissions_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        load_or_create_signing_key(dir.path()).expect("create");
        let path = dir.path().join(SIGNING_KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create_signing_key(dir.path()).expect_err("must refuse");
        assert!(err.to_string().contains("group/other"), "{err}");
    }

    #[test]
    fn garbage_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_key_file(&dir.path().join(SIGNING_KEY_FILE), b"not a key").expect("write");
        let err = load_or_create_signing_key(dir.path()).expect_err("must refuse");
        assert!(err.to_string().contains("PKCS#8"), "{err}");
    }
}
