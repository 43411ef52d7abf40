//! Sealed audit content: AES-256-GCM under per-subject data keys, wrapped by
//! a master key, so that deleting a subject's wrapped key erases its content
//! (crypto-shredding) while the hash chain over the ciphertext still verifies.
//!
//! # What this does
//! - [`MasterKey`]: 32 random bytes from the system RNG, kept by the caller
//!   in an owner-only (0600) file: [`MasterKey::create_file`],
//!   [`MasterKey::load_file`] (refuses files that group or other can access),
//!   [`MasterKey::load_or_create`].
//! - [`DataKey`]: one per data subject and key epoch (retention shreds whole
//!   epochs). [`wrap`]/[`unwrap`] encrypt it under the master key with AES-GCM
//!   whose additional data binds the subject and epoch ([`KeyContext`]), so a
//!   wrapped key copied to another subject or epoch does not unwrap.
//! - [`seal`]/[`open`]: AES-256-GCM with a fresh random 96-bit nonce per
//!   message and caller-chosen additional data (e.g. record seq and field),
//!   giving a [`Sealed`] that serialises as base64 in JSON.
//!
//! # Invariants
//! - Key bytes held by this module are zeroized on drop ([`zeroize`]). The
//!   AES key schedule lives inside *ring* for the duration of one call and is
//!   not zeroized by it.
//! - Wrapping and sealing use distinct, versioned additional-data prefixes,
//!   so a wrapped key can never be opened as content or vice versa.
//! - Random nonces: keep each data key below 2^32 messages (NIST SP 800-38D
//!   §8.3); one key per subject and epoch is far below that.
//! - Every failure to authenticate is [`SealError::Decrypt`]: AES-GCM cannot
//!   tell a wrong key from wrong additional data or tampering, and neither
//!   should an error message.
//!
//! # What this does NOT do
//! No storage of wrapped keys, no erasure bookkeeping, no retention policy
//! (the store does those); no I/O except the master key file helpers.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::keyfile::{self, KeyFileError};

/// Length of master and data keys (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of the AES-GCM authentication tag appended to each ciphertext.
pub const TAG_LEN: usize = 16;
/// Additional-data prefix of wrapped data keys (versioned for rotation).
const WRAP_AAD_PREFIX: &[u8] = b"airlock-audit/wrap/v1\0";
/// Additional-data prefix of sealed content.
const SEAL_AAD_PREFIX: &[u8] = b"airlock-audit/seal/v1\0";

/// Why sealing, opening or key handling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Authentication failed: wrong key, wrong subject/epoch/additional data,
    /// or the ciphertext was modified.
    #[error("decryption failed: wrong key, wrong context, or tampered ciphertext")]
    Decrypt,
    /// A ciphertext too short to hold a tag, or a wrapped key of the wrong
    /// length (corrupted storage).
    #[error("malformed ciphertext ({len} bytes)")]
    Malformed { len: usize },
    /// A master key file that is not exactly 32 bytes.
    #[error("master key file {path} must hold exactly {KEY_LEN} bytes, found {len}")]
    BadKeyLength {
        path: std::path::PathBuf,
        len: usize,
    },
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// Creating or reading the master key file failed.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, SealError> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(k.as_mut())
        .map_err(|_| SealError::Rng)?;
    Ok(k)
}

/// The key that wraps every data key. Zeroized on drop.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl MasterKey {
    /// 32 fresh bytes from the system RNG.
    pub fn generate() -> Result<Self, SealError> {
        random_key().map(MasterKey)
    }

    /// Generates a master key and writes it to `path` (raw 32 bytes, mode
    /// 0600). Fails if `path` exists: a master key is never replaced, since
    /// that would shred every subject at once.
    pub fn create_file(path: &Path) -> Result<Self, SealError> {
        let key = Self::generate()?;
        keyfile::create_secret(path, key.0.as_ref())?;
        Ok(key)
    }

    /// Loads a master key file, refusing one that group or other can access.
    pub fn load_file(path: &Path) -> Result<Self, SealError> {
        let bytes = keyfile::read_secret(path, KEY_LEN)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(SealError::BadKeyLength {
                path: path.to_path_buf(),
                len: bytes.len(),
            });
        }
        key.copy_from_slice(&bytes);
        Ok(MasterKey(key))
    }

    /// Loads `path`, or creates it if it does not exist (first start).
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        match Self::load_file(path) {
            Err(SealError::KeyFile(KeyFileError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                match Self::create_file(path) {
                    // Another process created it between our two calls.
                    Err(SealError::KeyFile(KeyFileError::Io { source, .. }))
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Self::load_file(path)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A data key for one subject and epoch. Zeroized on drop.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// 32 fresh bytes from the system RNG.
    pub fn generate() -> Result<Self, SealError> {
        random_key().map(DataKey)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a wrapped data key belongs to; bound into the wrapping's additional
/// data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyContext<'a> {
    /// The data subject (the `Airlock-Subject` header or client identity).
    pub subject: &'a str,
    /// The key epoch (retention shreds whole epochs).
    pub epoch: u64,
}

impl KeyContext<'_> {
    /// `prefix || len(subject) as u64 BE || subject || epoch as u64 BE`: the
    /// length prefix keeps (subject, epoch) pairs unambiguous.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(WRAP_AAD_PREFIX.len() + 16 + self.subject.len());
        aad.extend_from_slice(WRAP_AAD_PREFIX);
        aad.extend_from_slice(&(self.subject.len() as u64).to_be_bytes());
        aad.extend_from_slice(self.subject.as_bytes());
        aad.extend_from_slice(&self.epoch.to_be_bytes());
        aad
    }
}

/// An AES-256-GCM ciphertext with its nonce. Serialises as
/// `{"nonce": "<base64>", "ciphertext": "<base64 of ciphertext || tag>"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Sealed {
    #[serde(with = "b64_nonce")]
    nonce: [u8; NONCE_LEN],
    // Ciphertext followed by the 16-byte tag.
    #[serde(with = "b64_bytes")]
    ciphertext: Vec<u8>,
}

impl Sealed {
    /// The random 96-bit nonce.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Ciphertext followed by the authentication tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// One opaque blob, `nonce || ciphertext || tag`, for storage in a
    /// single field.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses [`Sealed::to_bytes`]; fails if too short to hold a nonce and a
    /// tag (whether it decrypts is only known by [`open`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let malformed = SealError::Malformed { len: bytes.len() };
        let (nonce, ciphertext) = bytes.split_first_chunk::<NONCE_LEN>().ok_or(malformed)?;
        if ciphertext.len() < TAG_LEN {
            return Err(SealError::Malformed { len: bytes.len() });
        }
        Ok(Sealed {
            nonce: *nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// A data key encrypted under the master key for one [`KeyContext`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WrappedKey(Sealed);

impl WrappedKey {
    /// `nonce || encrypted key || tag` (60 bytes), for storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Parses [`WrappedKey::to_bytes`], checking the length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return Err(SealError::Malformed { len: bytes.len() });
        }
        Sealed::from_bytes(bytes).map(WrappedKey)
    }
}

fn aes_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // INVARIANT: AES-256-GCM accepts exactly KEY_LEN bytes, which the array
    // type guarantees, so UnboundKey::new cannot fail here.
    let k = UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES-256 key");
    LessSafeKey::new(k)
}

fn seal_raw(key: &[u8; KEY_LEN], plaintext: &[u8], aad: &[u8]) -> Result<Sealed, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Rng)?;
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    aes_key(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        // Only fails for inputs beyond AES-GCM's 64 GiB limit.
        .map_err(|_| SealError::Malformed {
            len: plaintext.len(),
        })?;
    Ok(Sealed {
        nonce,
        ciphertext: buf,
    })
}

fn open_raw(
    key: &[u8; KEY_LEN],
    sealed: &Sealed,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.ciphertext.len() < TAG_LEN {
        return Err(SealError::Malformed {
            len: sealed.ciphertext.len(),
        });
    }
    let mut buf = Zeroizing::new(sealed.ciphertext.clone());
    let len = aes_key(key)
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(aad),
            buf.as_mut_slice(),
        )
        .map_err(|_| SealError::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn prefixed(prefix: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + aad.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(aad);
    out
}

/// Encrypts `data_key` under `master` for `context`.
pub fn wrap(
    master: &MasterKey,
    data_key: &DataKey,
    context: KeyContext<'_>,
) -> Result<WrappedKey, SealError> {
    seal_raw(&master.0, data_key.0.as_ref(), &context.aad()).map(WrappedKey)
}

/// Decrypts a wrapped data key; fails with [`SealError::Decrypt`] under
/// another master key, subject or epoch, or if it was modified.
pub fn unwrap(
    master: &MasterKey,
    wrapped: &WrappedKey,
    context: KeyContext<'_>,
) -> Result<DataKey, SealError> {
    let bytes = open_raw(&master.0, &wrapped.0, &context.aad())?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return Err(SealError::Malformed {
            len: wrapped.0.ciphertext.len(),
        });
    }
    key.copy_from_slice(&bytes);
    Ok(DataKey(key))
}

/// Encrypts `plaintext` under `data_key` with a fresh random nonce, binding
/// `aad` (e.g. the record's seq and field name) into the tag.
pub fn seal(data_key: &DataKey, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, SealError> {
    seal_raw(&data_key.0, plaintext, &prefixed(SEAL_AAD_PREFIX, aad))
}

/// Decrypts `sealed`; the plaintext is zeroized when dropped.
pub fn open(
    data_key: &DataKey,
    sealed: &Sealed,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    open_raw(&data_key.0, sealed, &prefixed(SEAL_AAD_PREFIX, aad))
}

mod b64_bytes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

mod b64_nonce {
    use super::*;

    pub(super) fn serialize<S: Serializer>(n: &[u8; NONCE_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(n))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; NONCE_LEN], D::Error> {
        let v = super::b64_bytes::deserialize(d)?;
        v.as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(v.len(), &"a 12-byte nonce"))
    }
}

#[cfg(test)]
mod tests;
