//! `manifest.json`: what a bundle contains and what its publishers vouch for
//! (ARCHITECTURE.md §7). Parsing validates every field, so a [`Manifest`] that exists has a
//! safe name, a semver version, at most [`Limits::max_files`] files with safe, unique
//! names and exactly one `.gguf` model file.
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::BundleError;
use crate::limits::Limits;

/// The `format` field of every manifest this crate writes and accepts.
pub const FORMAT: &str = "airlock-bundle-v1";
/// First archive entry.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Second archive entry.
pub const SIGNATURES_ENTRY: &str = "signatures.json";
/// Longest bundle name (it is a directory name in the state dir).
pub const MAX_NAME_LEN: usize = 64;
/// Longest payload file name (fits a ustar name field).
pub const MAX_PATH_LEN: usize = 100;

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Sha256> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return None;
        }
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            // INVARIANT: two hex digits fit a byte.
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Sha256(out))
    }

    /// Constant-time equality (digests of attacker-chosen data).
    pub fn ct_eq(&self, other: &Sha256) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits (SHA-256)"))
    }
}

/// One payload file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Plain file name (no directories), see [`check_path`].
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Sha256,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Model name: `[a-z0-9][a-z0-9._-]*`, at most [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Semantic version (a directory name under `models/NAME/`).
    pub version: semver::Version,
    /// Strictly increasing per name (anti-rollback).
    pub sequence: u64,
    /// When the bundle was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// After this time the bundle is refused.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// GGUF `general.architecture` of the model file.
    pub architecture: String,
    /// License of the model (SPDX id or free text).
    pub license: String,
    /// The payload, in archive order.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Parses and validates manifest bytes (already known to be within
    /// [`Limits::max_manifest_bytes`]).
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Manifest, BundleError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Manifest(e.to_string()))?;
        m.validate(limits)?;
        Ok(m)
    }

    /// The canonical bytes this crate writes (pretty JSON and a newline). Signatures
    /// cover the bytes as stored in the archive, whatever their form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // INVARIANT: serialising plain data with string keys cannot fail.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Checks what serde cannot express.
    pub fn validate(&self, limits: &Limits) -> Result<(), BundleError> {
        let bad = |m: String| Err(BundleError::Manifest(m));
        if self.format != FORMAT {
            return bad(format!("format `{}` is not `{FORMAT}`", self.format));
        }
        check_name(&self.name)?;
        if self.architecture.is_empty() {
            return bad("architecture is empty".into());
        }
        if self.files.len() > limits.max_files {
            return Err(BundleError::TooManyFiles {
                count: self.files.len(),
                limit: limits.max_files,
            });
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            check_path(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                return Err(BundleError::DuplicateFile(f.path.clone()));
            }
            if f.size > limits.max_file_bytes {
                return bad(format!(
                    "file `{}` declares {} bytes, more than the limit of {}",
                    f.path, f.size, limits.max_file_bytes
                ));
            }
        }
        let models = self
            .files
            .iter()
            .filter(|f| f.path.ends_with(".gguf"))
            .count();
        if models != 1 {
            return bad(format!(
                "exactly one `.gguf` file is required, found {models}"
            ));
        }
        Ok(())
    }

    /// The model (`.gguf`) file.
    pub fn model_file(&self) -> &FileEntry {
        // INVARIANT: `validate` requires exactly one `.gguf` file; a Manifest is only
        // handed out after validation, and an unvalidated one only reaches here in tests.
        self.files
            .iter()
            .find(|f| f.path.ends_with(".gguf"))
            .unwrap_or(&self.files[0])
    }

    /// The file listed under `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// A bundle name: lowercase ASCII letters, digits, `.`, `_`, `-`, starting with a letter
/// or digit (it becomes a directory name).
pub fn check_name(name: &str) -> Result<(), BundleError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BundleError::Manifest(format!(
            "name `{name}` must be 1-{MAX_NAME_LEN} of [a-z0-9._-], starting with a letter or digit"
        )))
    }
}

/// A payload path must be a plain file name: not absolute, no `..`, no directories, no
/// leading dot, no control characters. Checked on manifest paths and on archive paths.
pub fn check_path(path: &str) -> Result<(), BundleError> {
    let unsafe_path = |reason| {
        Err(BundleError::UnsafePath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return unsafe_path("empty path");
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return unsafe_path("absolute path");
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return unsafe_path("parent directory component `..`");
    }
    if path.contains(['/', '\\']) {
        return unsafe_path("directories are not allowed (plain file names only)");
    }
    if path.starts_with('.') {
        return unsafe_path("names starting with `.` are not allowed");
    }
    if path.len() > MAX_PATH_LEN {
        return unsafe_path("name too long");
    }
    if path.chars().any(char::is_control) {
        return unsafe_path("control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_plain_file_names() {
        for (p, reason) in [
            ("/etc/passwd", "absolute path"),
            ("../x", "parent directory component `..`"),
            ("a/../../x", "parent directory component `..`"),
            ("a/b", "directories are not allowed (plain file names only)"),
            (".hidden", "names starting with `.` are not allowed"),
            ("", "empty path"),
            ("a\nb", "control character"),
        ] {
            match check_path(p) {
                Err(BundleError::UnsafePath { reason: r, .. }) => assert_eq!(r, reason, "{p:?}"),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        check_path("model.gguf").expect("plain name");
        check_path("LICENSE").expect("plain name");
    }

    #[test]
    fn names_are_directory_safe() {
        check_name("smollm2-135m-instruct").expect("ok");
        for n in ["", "A", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(check_name(n), Err(BundleError::Manifest(_))),
                "{n:?}"
            );
        }
    }

    #[test]
    fn sha256_hex_round_trip() {
        let d = Sha256([0xab; 32]);
        assert_eq!(Sha256::from_hex(&d.to_string()), Some(d));
        assert_eq!(Sha256::from_hex("zz"), None);
    }
}
