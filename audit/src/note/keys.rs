//! Ed25519 note keys: [`Verifier`] (public, vkey strings), [`Signer`]
//! (PKCS#8 private key), key IDs and the signing key file.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest::{Context, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::{
    ED25519_PUBLIC_KEY_LEN, ED25519_SIGNATURE_LEN, KEY_ID_LEN, MAX_KEY_FILE_SIZE, NoteError,
    PEM_BEGIN, PEM_END, SIG_TYPE_ED25519, SIGNATURE_PREFIX,
};
use crate::keyfile::{self, KeyFileError};

/// Key names and origins: non-empty, no Unicode whitespace, no `+`
/// (signed-note §Format), and no character below U+0020 (which a note may not
/// contain at all, so a signer with such a name could never be verified).
pub(super) fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || u32::from(c) < 0x20)
    {
        return Err(NoteError::BadName(name.to_owned()));
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]` read big-endian
/// (signed-note §Ed25519 signatures).
fn ed25519_key_id(name: &str, public_key: &[u8; ED25519_PUBLIC_KEY_LEN]) -> u32 {
    let mut ctx = Context::new(&SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[SIG_TYPE_ED25519]);
    ctx.update(public_key);
    let d = ctx.finish();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&d.as_ref()[..KEY_ID_LEN]);
    u32::from_be_bytes(id)
}

/// A trusted ed25519 public key with its name, as pinned by an auditor.
///
/// `Display`/`FromStr` use the vkey form
/// `<name>+<8 lowercase hex key ID>+<base64(0x01 || public key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    // INVARIANT: key_id == ed25519_key_id(name, public_key).
    key_id: u32,
    public_key: [u8; ED25519_PUBLIC_KEY_LEN],
}

impl Verifier {
    /// A verifier for `public_key` under `name`.
    pub fn new(name: &str, public_key: [u8; ED25519_PUBLIC_KEY_LEN]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Verifier {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses a vkey string, checking that its key ID matches its name and key.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        // The base64 key may itself contain '+': split off two fields only.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadVerifierKey("expected <name>+<key id>+<key>"));
        };
        check_name(name)?;
        if id_hex.len() != 2 * KEY_ID_LEN
            || !id_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(NoteError::BadVerifierKey(
                "key id must be 8 lowercase hex digits",
            ));
        }
        let got = u32::from_str_radix(id_hex, 16)
            .map_err(|_| NoteError::BadVerifierKey("key id must be 8 lowercase hex digits"))?;
        let key = B64
            .decode(key_b64)
            .map_err(|_| NoteError::BadVerifierKey("key is not standard base64"))?;
        let Some((&alg, public_key)) = key.split_first() else {
            return Err(NoteError::BadVerifierKey("key is empty"));
        };
        if alg != SIG_TYPE_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm(alg));
        }
        let public_key: [u8; ED25519_PUBLIC_KEY_LEN] = public_key
            .try_into()
            .map_err(|_| NoteError::BadVerifierKey("ed25519 key must be 32 bytes"))?;
        let v = Verifier::new(name, public_key)?;
        if v.key_id != got {
            return Err(NoteError::KeyIdMismatch {
                expected: v.key_id,
                got,
            });
        }
        Ok(v)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The raw ed25519 public key.
    pub fn public_key(&self) -> &[u8; ED25519_PUBLIC_KEY_LEN] {
        &self.public_key
    }

    /// The vkey string (same as `to_string()`).
    pub fn vkey(&self) -> String {
        self.to_string()
    }

    pub(super) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        sig.len() == ED25519_SIGNATURE_LEN
            && UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(msg, sig)
                .is_ok()
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(1 + ED25519_PUBLIC_KEY_LEN);
        key.push(SIG_TYPE_ED25519);
        key.extend_from_slice(&self.public_key);
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(key))
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

impl FromStr for Verifier {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, NoteError> {
        Verifier::from_vkey(s)
    }
}

/// The log's ed25519 signing key with its name.
///
/// The key pair lives inside *ring*, which does not zeroize it on drop; the
/// PKCS#8 bytes it was loaded from are zeroized.
pub struct Signer {
    name: String,
    pub(super) key_pair: Ed25519KeyPair,
    verifier: Verifier,
}

impl Signer {
    /// A signer from a PKCS#8 (v1 or v2) ed25519 private key in DER.
    pub fn from_pkcs8(name: &str, pkcs8_der: &[u8]) -> Result<Self, NoteError> {
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der)
            .map_err(|_| NoteError::BadSigningKey)?;
        Self::from_key_pair(name, key_pair)
    }

    pub(super) fn from_key_pair(name: &str, key_pair: Ed25519KeyPair) -> Result<Self, NoteError> {
        let public_key: [u8; ED25519_PUBLIC_KEY_LEN] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::BadSigningKey)?;
        let verifier = Verifier::new(name, public_key)?;
        Ok(Signer {
            name: name.to_owned(),
            key_pair,
            verifier,
        })
    }

    /// Loads a key file written by [`create_signing_key_file`] (PEM
    /// `PRIVATE KEY`, or raw DER), refusing group/world-accessible files.
    pub fn load(name: &str, path: &Path) -> Result<Self, NoteError> {
        let bytes = keyfile::read_secret(path, MAX_KEY_FILE_SIZE)?;
        let der = pem_or_der(&bytes)?;
        Self::from_pkcs8(name, &der)
    }

    /// The key name used in signature lines.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key, to print for auditors.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Signs `text` as a signed note. The caller guarantees `text` is a
    /// valid note text (ends in newline, no forbidden characters).
    pub(super) fn sign_text(&self, text: &str) -> String {
        let sig = self.key_pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(KEY_ID_LEN + ED25519_SIGNATURE_LEN);
        blob.extend_from_slice(&self.verifier.key_id.to_be_bytes());
        blob.extend_from_slice(sig.as_ref());
        format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        )
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// A fresh PKCS#8 v2 ed25519 private key (DER) from the system RNG.
pub fn generate_signing_key() -> Result<Zeroizing<Vec<u8>>, NoteError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| NoteError::KeyFile(KeyFileError::Rng))?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// Generates a signing key and writes it to `path` as PEM, mode 0600.
/// Fails if `path` exists: a log key is never silently replaced.
pub fn create_signing_key_file(name: &str, path: &Path) -> Result<Signer, NoteError> {
    let der = generate_signing_key()?;
    let signer = Signer::from_pkcs8(name, &der)?;
    let b64 = Zeroizing::new(B64.encode(der.as_slice()));
    let mut pem = Zeroizing::new(String::with_capacity(b64.len() + 64));
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        // INVARIANT: base64 output is ASCII, so any byte split is a char split.
        pem.push_str(std::str::from_utf8(chunk).map_err(|_| NoteError::BadSigningKey)?);
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    keyfile::create_secret(path, pem.as_bytes())?;
    Ok(signer)
}

fn pem_or_der(bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, NoteError> {
    if !bytes.starts_with(PEM_BEGIN.as_bytes()) {
        return Ok(Zeroizing::new(bytes.to_vec()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| NoteError::BadSigningKey)?;
    let body = text
        .trim_end()
        .strip_prefix(PEM_BEGIN)
        .and_then(|t| t.strip_suffix(PEM_END))
        .ok_or(NoteError::BadSigningKey)?;
    let b64: Zeroizing<String> = Zeroizing::new(body.split_whitespace().collect());
    B64.decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| NoteError::BadSigningKey)
}
