//! The files of a state directory besides the database.
//!
//! - `origin`: the checkpoint origin line, also the signing key's name (C2SP convention);
//!   written once on first open, never changed (checkpoints of one log share it).
//! - `signing.key`: the audit signing key, Ed25519 PKCS#8 PEM, mode 0600
//!   ([`note::create_signing_key_file`]).
//! - `master.key`: the 32-byte master key wrapping per-subject data keys, mode 0600
//!   ([`seal::MasterKey`]); created the first time sealed mode is used.
//!
//! Key files are created and read by [`crate::keyfile`]: atomically, never replaced,
//! refused when group or other can access them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

use crate::codec;
use crate::error::{Error, Result};
use crate::note::{self, Signer, Verifier};
use crate::seal::MasterKey;

pub(crate) const ORIGIN_FILE: &str = "origin";
pub(crate) const SIGNING_KEY_FILE: &str = "signing.key";
pub(crate) const MASTER_KEY_FILE: &str = "master.key";
const MAX_ORIGIN_LEN: u64 = 1024;

fn key_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Creates `dir` (mode 0700) if needed.
pub(crate) fn ensure_state_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| key_err(dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| key_err(dir, e))?;
    }
    Ok(())
}

/// Reads the stored origin, if any.
pub(crate) fn read_origin(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(ORIGIN_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_err(&path, e)),
    };
    if bytes.len() as u64 > MAX_ORIGIN_LEN {
        return Err(key_err(&path, "origin file too large"));
    }
    let text = String::from_utf8(bytes).map_err(|_| key_err(&path, "origin is not UTF-8"))?;
    let origin = text.strip_suffix('\n').unwrap_or(&text).to_string();
    // The origin is the key name: it must be a valid signed-note key name.
    Verifier::new(&origin, [0; 32]).map_err(|e| key_err(&path, e))?;
    Ok(Some(origin))
}

/// The origin of the log in `dir`: the stored one (which `wanted` must match), or `wanted`
/// / a fresh `airlock/audit/<random>` written on first open.
pub(crate) fn load_or_create_origin(dir: &Path, wanted: Option<&str>) -> Result<String> {
    if let Some(stored) = read_origin(dir)? {
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
            SystemRandom::new()
                .fill(&mut id)
                .map_err(|_| Error::Storage("random generator failed".into()))?;
            format!("airlock/audit/{}", codec::hex(&id))
        }
    };
    Verifier::new(&origin, [0; 32])
        .map_err(|e| Error::Config(format!("invalid origin {origin:?}: {e}")))?;
    let path = dir.join(ORIGIN_FILE);
    let tmp = dir.join(".origin.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| key_err(&tmp, e))?;
    f.write_all(format!("{origin}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_err(&tmp, e))?;
    // hard_link fails if the name exists: a concurrent first open cannot replace it.
    fs::hard_link(&tmp, &path).map_err(|e| key_err(&path, e))?;
    let _ = fs::remove_file(&tmp);
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| key_err(dir, e))?;
    Ok(origin)
}

/// Loads the signing key named `origin`, creating it on first open.
pub(crate) fn load_or_create_signer(dir: &Path, origin: &str) -> Result<Signer> {
    let path = dir.join(SIGNING_KEY_FILE);
    if path.exists() {
        Signer::load(origin, &path).map_err(|e| key_err(&path, e))
    } else {
        note::create_signing_key_file(origin, &path).map_err(|e| key_err(&path, e))
    }
}

/// The verifier (public key, as a C2SP vkey) of the log in `dir`, from its files alone:
/// works while the service holds the database lock.
pub(crate) fn verifier(dir: &Path) -> Result<Verifier> {
    let origin = read_origin(dir)?.ok_or_else(|| {
        key_err(
            &dir.join(ORIGIN_FILE),
            "no audit log here (has the service started once?)",
        )
    })?;
    let path = dir.join(SIGNING_KEY_FILE);
    let signer = Signer::load(&origin, &path).map_err(|e| key_err(&path, e))?;
    Ok(signer.verifier().clone())
}

pub(crate) fn load_or_create_master_key(dir: &Path) -> Result<MasterKey> {
    let path = dir.join(MASTER_KEY_FILE);
    MasterKey::load_or_create(&path).map_err(|e| key_err(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_created_once_and_pinned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_origin(dir.path(), None).expect("create");
        assert!(a.starts_with("airlock/audit/"));
        assert_eq!(load_or_create_origin(dir.path(), None).expect("load"), a);
        assert_eq!(
            load_or_create_origin(dir.path(), Some(&a)).expect("same"),
            a
        );
        let err =
            load_or_create_origin(dir.path(), Some("other.example/log")).expect_err("differs");
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn signing_key_is_created_once_with_0600_and_its_vkey_is_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = load_or_create_origin(dir.path(), None).expect("origin");
        let a = load_or_create_signer(dir.path(), &origin).expect("create");
        let b = load_or_create_signer(dir.path(), &origin).expect("load");
        assert_eq!(a.verifier(), b.verifier());
        let mode = fs::metadata(dir.path().join(SIGNING_KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            verifier(dir.path()).expect("vkey").vkey(),
            a.verifier().vkey()
        );
    }

    #[test]
    fn loose_permissions_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = load_or_create_origin(dir.path(), None).expect("origin");
        load_or_create_signer(dir.path(), &origin).expect("create");
        let path = dir.path().join(SIGNING_KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create_signer(dir.path(), &origin).expect_err("must refuse");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
