//! The offline install kit's `MANIFEST` (ARCHITECTURE.md §15): every file of the kit with its
//! size and SHA-256, signed with a publisher key of the bundles' format (`airlock keys
//! generate`).
//!
//! # Format (`airlock-kit-manifest-v1`, also in docs/offline-kit.md)
//! ```text
//! airlock-kit-manifest-v1
//! version 0.1.0
//! commit 3623ca6…            (the source commit, `-dirty` when built from a modified tree)
//! signer <base64 of the raw ed25519 public key>
//! <sha256 hex> <size> <path>   one line per file, sorted by path bytes
//! ```
//! `MANIFEST.sig` holds the base64 ed25519 signature of `MANIFEST`'s bytes and a newline.
//! Paths are relative, `/`-separated, of `[A-Za-z0-9._+@()-]` components (no `..`, no
//! whitespace or backslash: what vendored crates need and `sha256sum --check` reads
//! literally), so the installer's shell can read the file without quoting tricks; the kit
//! holds regular files and directories only.
//!
//! Verification on the air-gapped host is deliberately **not** done by this binary: a kit
//! must be checked before anything from it runs, so `install.sh --from-kit` checks the
//! signature with the host's `openssl` and the digests with `sha256sum`.
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use airlock_bundle::SigningKey;
use base64::Engine as _;

/// First line of a manifest.
pub const MANIFEST_FORMAT: &str = "airlock-kit-manifest-v1";
pub const MANIFEST: &str = "MANIFEST";
pub const SIGNATURE: &str = "MANIFEST.sig";
/// Where the signer's public key is written in the kit (so an operator can compare it with
/// the one they were given).
pub const PUBLISHER_KEY: &str = "keys/publisher.pub";

/// What can go wrong signing a kit.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: a kit holds regular files and directories only (symlink or special file)")]
    NotRegular(PathBuf),
    #[error("{0}: kit paths are [A-Za-z0-9._+@()-] components separated by `/`")]
    BadPath(PathBuf),
    #[error("{0} exists: this directory is already signed")]
    AlreadySigned(PathBuf),
    #[error("signing key: {0}")]
    Key(#[from] airlock_bundle::BundleError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KitError + '_ {
    move |source| KitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file of the kit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated, checked by [`check_path`].
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A path the installer's shell can handle: relative components of `[A-Za-z0-9._+@()-]`,
/// none of them `.` or `..`.
pub fn check_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+@()-".contains(&b))
        })
}

/// Every regular file under `dir` except the manifest and its signature, sorted by path.
pub fn scan(dir: &Path) -> Result<Vec<Entry>, KitError> {
    let mut entries = Vec::new();
    walk(dir, dir, &mut entries)?;
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(entries)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<(), KitError> {
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let item = item.map_err(io(dir))?;
        let path = item.path();
        let kind = item.file_type().map_err(io(&path))?;
        let rel = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .filter(|p| check_path(p))
            .ok_or_else(|| KitError::BadPath(path.clone()))?
            .to_owned();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if !kind.is_file() {
            return Err(KitError::NotRegular(path));
        } else if rel != MANIFEST && rel != SIGNATURE {
            let (size, sha256) = digest_file(&path)?;
            out.push(Entry {
                path: rel,
                size,
                sha256,
            });
        }
    }
    Ok(())
}

/// Size and SHA-256 (hex) of the file at `path`, read once.
pub fn digest_file(path: &Path) -> Result<(u64, String), KitError> {
    sha256_file(path).map_err(io(path))
}

/// Size and lowercase-hex SHA-256 of a file, streamed (binaries and models are large).
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    let hex = ctx
        .finish()
        .as_ref()
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    Ok((size, hex))
}

/// The manifest text for `entries`.
pub fn manifest_text(commit: &str, signer: &str, entries: &[Entry]) -> String {
    let mut text = format!(
        "{MANIFEST_FORMAT}\nversion {}\ncommit {commit}\nsigner {signer}\n",
        env!("CARGO_PKG_VERSION")
    );
    for e in entries {
        let _ = writeln!(text, "{} {} {}", e.sha256, e.size, e.path);
    }
    text
}

/// What [`sign`] wrote.
#[derive(Debug)]
pub struct Signed {
    pub files: usize,
    pub bytes: u64,
    pub signer: String,
    /// SHA-256 of the MANIFEST: names the kit (audit records, change tickets).
    pub manifest_sha256: String,
}

/// Writes `keys/publisher.pub`, then `MANIFEST` listing every file of `dir` and
/// `MANIFEST.sig`, its signature by `key`. Refuses a directory that already has a manifest.
pub fn sign(dir: &Path, key: &Path, commit: &str) -> Result<Signed, KitError> {
    for name in [MANIFEST, SIGNATURE] {
        if dir.join(name).exists() {
            return Err(KitError::AlreadySigned(dir.join(name)));
        }
    }
    let key = SigningKey::from_file(key)?;
    let signer = key.public().to_base64();
    let pub_path = dir.join(PUBLISHER_KEY);
    if let Some(parent) = pub_path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(&pub_path, format!("{signer}\n")).map_err(io(&pub_path))?;
    let entries = scan(dir)?;
    let text = manifest_text(commit, &signer, &entries);
    let signature = key.sign(text.as_bytes());
    let sig_b64 = base64::engine::general_purpose::STANDARD.encode(signature.sig);
    let manifest = dir.join(MANIFEST);
    std::fs::write(&manifest, &text).map_err(io(&manifest))?;
    let sig_path = dir.join(SIGNATURE);
    std::fs::write(&sig_path, format!("{sig_b64}\n")).map_err(io(&sig_path))?;
    let (_, manifest_sha256) = digest_file(&manifest)?;
    Ok(Signed {
        files: entries.len(),
        bytes: entries.iter().map(|e| e.size).sum(),
        signer,
        manifest_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_the_shell_can_read_and_nothing_else() {
        for good in [
            "bin/airlock",
            "a/b-c_d.e+f/g",
            "README.md",
            "vendor/x-1.0/.cargo-checksum.json",
        ] {
            assert!(check_path(good), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "./a",
            "a//b",
            "a b",
            "a\nb",
            "a/",
            "é",
            "a;b",
            "$x",
        ] {
            assert!(!check_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn signs_every_file_and_refuses_links_and_a_second_signature() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (key, pem) = SigningKey::generate().unwrap();
        std::fs::write(keys.path().join("site.key"), pem).unwrap();
        std::fs::write(keys.path().join("site.pub"), key.public().to_base64()).unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/airlock"), b"binary").unwrap();
        std::fs::write(dir.path().join("install.sh"), b"#!/bin/sh\n").unwrap();
        let signed = sign(dir.path(), &keys.path().join("site.key"), "abc").unwrap();
        assert_eq!(
            signed.files, 3,
            "the binary, install.sh and keys/publisher.pub"
        );
        let text = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], MANIFEST_FORMAT);
        assert_eq!(lines[2], "commit abc");
        let (size, sha) = digest_file(&dir.path().join("bin/airlock")).unwrap();
        assert_eq!(lines[4], format!("{sha} {size} bin/airlock"));
        assert_eq!(size, 6);
        assert!(lines[5].ends_with(" install.sh"));
        assert!(lines[6].ends_with(" keys/publisher.pub"));
        // The signature verifies over the manifest bytes with the published key.
        let public = airlock_bundle::PublicKey::from_file(&keys.path().join("site.pub")).unwrap();
        let sig_b64 = std::fs::read_to_string(dir.path().join(SIGNATURE)).unwrap();
        let sig: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(sig_b64.trim())
            .unwrap()
            .try_into()
            .unwrap();
        assert!(public.verifies(text.as_bytes(), &sig));
        assert!(!public.verifies(format!("{text}x").as_bytes(), &sig));
        assert!(matches!(
            sign(dir.path(), &keys.path().join("site.key"), "abc"),
            Err(KitError::AlreadySigned(_))
        ));
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", other.path().join("link")).unwrap();
        assert!(matches!(
            sign(other.path(), &keys.path().join("site.key"), "abc"),
            Err(KitError::NotRegular(_))
        ));
        std::fs::remove_file(other.path().join("link")).unwrap();
        std::fs::write(other.path().join("has space"), b"").unwrap();
        assert!(matches!(
            sign(other.path(), &keys.path().join("site.key"), "abc"),
            Err(KitError::BadPath(_))
        ));
    }
}
