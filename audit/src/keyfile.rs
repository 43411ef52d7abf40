//! Secret key files: created owner-only (0600) and atomically, read only if
//! no group or other permission bit is set.
//!
//! Shared by the checkpoint signing key ([`crate::note`]) and the sealing
//! master key ([`crate::seal`]). This is the only file I/O in those modules.
//!
//! # Invariants
//! - A key file is never visible half-written: it is written and fsynced
//!   under a temporary name, then hard-linked to its final name (which fails
//!   if the name exists, so an existing key is never replaced), and the
//!   directory is fsynced.
//! - A key file whose mode grants anything to group or other is refused
//!   rather than used: someone may already have copied it.
//! - Bytes read are held in [`Zeroizing`] buffers.
//!
//! # Non-goals
//! Ownership is not checked (that needs the process uid, i.e. `libc`); the
//! state directory's own permissions are the operator's (install.sh) job.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Why a key file could not be created or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file system refused (missing directory, read-only, disk full, exists).
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Group or other may read or write the key: fix with `chmod 600`.
    #[error(
        "key file {path} has mode {mode:04o}; it must not be accessible to group or other (chmod 600)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    /// The path is a directory, device or other non-regular file.
    #[error("key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    /// The file is larger than any key of this kind (wrong file?).
    #[error("key file {path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: usize },
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `path` with `contents`, mode 0600, failing if it already exists.
pub(crate) fn create_secret(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| KeyFileError::Rng)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{:016x}",
        u64::from_be_bytes(suffix)
    ));

    let result = write_synced(&tmp, contents).and_then(|()| {
        // hard_link fails with AlreadyExists instead of replacing a key.
        fs::hard_link(&tmp, path).map_err(io_err(path))
    });
    // The temporary name is removed whether or not the link succeeded.
    let _ = fs::remove_file(&tmp);
    result?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir))
}

fn write_synced(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Reads a secret file of at most `max` bytes, refusing files that group or
/// other can access.
pub(crate) fn read_secret(path: &Path, max: usize) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let f = File::open(path).map_err(io_err(path))?;
    // Check the opened file itself (fstat), not the path, so a swap between
    // check and read cannot slip another file in.
    let meta = f.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(max + 1));
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() > max {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_file_is_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        create_secret(&p, b"one").expect("create");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&p, 16).expect("read").as_slice(), b"one");
        match create_secret(&p, b"two") {
            Err(KeyFileError::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(read_secret(&p, 16).expect("read").as_slice(), b"one");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn group_or_world_access_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        create_secret(&p, b"secret").expect("create");
        for mode in [0o640, 0o604, 0o660, 0o644, 0o610] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
            match read_secret(&p, 16) {
                Err(KeyFileError::InsecurePermissions { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: expected InsecurePermissions, got {other:?}"),
            }
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(read_secret(&p, 16).is_ok());
    }

    #[test]
    fn oversize_directory_and_missing_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        create_secret(&p, &[7u8; 33]).expect("create");
        assert!(matches!(
            read_secret(&p, 32),
            Err(KeyFileError::TooLarge { max: 32, .. })
        ));
        let sub = dir.path().join("d");
        fs::create_dir(&sub).expect("mkdir");
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).expect("chmod");
        assert!(matches!(
            read_secret(&sub, 32),
            Err(KeyFileError::NotAFile { .. })
        ));
        assert!(matches!(
            read_secret(&dir.path().join("missing"), 32),
            Err(KeyFileError::Io { .. })
        ));
        assert!(matches!(
            create_secret(&dir.path().join("no/such/dir/k"), b"x"),
            Err(KeyFileError::Io { .. })
        ));
    }
}
