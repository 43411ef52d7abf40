//! Publisher keys (ed25519) and `signatures.json`.
//!
//! Key files: `NAME.key` is the PKCS#8 v2 document ring generates, PEM-armoured
//! (`-----BEGIN PRIVATE KEY-----`, readable by OpenSSL), mode 0600; `NAME.pub` is the raw
//! 32-byte public key in standard base64 on one line. A key id is the hex SHA-256 of the
//! raw public key.
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::error::BundleError;
use crate::manifest::Sha256;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// `hex(sha256(raw public key))`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub Sha256);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// An ed25519 public key with its id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    /// From the 32 raw bytes.
    pub fn from_raw(raw: [u8; 32]) -> PublicKey {
        let d = ring::digest::digest(&ring::digest::SHA256, &raw);
        let mut id = [0u8; 32];
        id.copy_from_slice(d.as_ref());
        PublicKey {
            raw,
            id: KeyId(Sha256(id)),
        }
    }

    /// From base64 of the 32 raw bytes (the `.pub` file's content).
    pub fn from_base64(text: &str, what: &str) -> Result<PublicKey, BundleError> {
        let bytes = B64.decode(text.trim()).map_err(|e| BundleError::Key {
            what: what.to_owned(),
            reason: format!("not base64: {e}"),
        })?;
        let raw: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| BundleError::Key {
            what: what.to_owned(),
            reason: format!("an ed25519 public key is 32 bytes, found {}", b.len()),
        })?;
        Ok(PublicKey::from_raw(raw))
    }

    /// Reads a `.pub` file.
    pub fn from_file(path: &Path) -> Result<PublicKey, BundleError> {
        let text = std::fs::read_to_string(path).map_err(BundleError::io(path))?;
        PublicKey::from_base64(&text, &path.display().to_string())
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The raw key.
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// Base64 of the raw key (the `.pub` format).
    pub fn to_base64(&self) -> String {
        B64.encode(self.raw)
    }

    /// Whether `sig` is this key's ed25519 signature over `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(message, sig)
            .is_ok()
    }
}

/// A publisher's private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public.id)
    }
}

impl SigningKey {
    /// A fresh key from the system RNG, and its PEM form for the `.key` file.
    pub fn generate() -> Result<(SigningKey, String), BundleError> {
        let rng = ring::rand::SystemRandom::new();
        let key_err = |reason: String| BundleError::Key {
            what: "new key".into(),
            reason,
        };
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| key_err(e.to_string()))?;
        let key = SigningKey::from_pkcs8(doc.as_ref(), "new key")?;
        let b64 = B64.encode(doc.as_ref());
        let mut pem = String::from(PEM_BEGIN);
        pem.push('\n');
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        Ok((key, pem))
    }

    fn from_pkcs8(der: &[u8], what: &str) -> Result<SigningKey, BundleError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| BundleError::Key {
                what: what.to_owned(),
                reason: format!("not an ed25519 PKCS#8 key: {e}"),
            })?;
        let mut raw = [0u8; 32];
        raw.copy_from_slice(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            public: PublicKey::from_raw(raw),
        })
    }

    /// Reads a `.key` file (PEM `PRIVATE KEY`, PKCS#8).
    pub fn from_file(path: &Path) -> Result<SigningKey, BundleError> {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(BundleError::io(path))?;
        let body = text
            .trim()
            .strip_prefix(PEM_BEGIN)
            .and_then(|t| t.strip_suffix(PEM_END))
            .ok_or_else(|| BundleError::Key {
                what: what.clone(),
                reason: "expected a PEM `PRIVATE KEY` block".into(),
            })?;
        let b64: String = body.split_whitespace().collect();
        let der = B64.decode(b64).map_err(|e| BundleError::Key {
            what: what.clone(),
            reason: format!("bad base64 in PEM: {e}"),
        })?;
        SigningKey::from_pkcs8(&der, &what)
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs manifest bytes.
    pub fn sign(&self, manifest_bytes: &[u8]) -> Signature {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(self.pair.sign(manifest_bytes).as_ref());
        Signature {
            keyid: self.public.id,
            sig,
        }
    }
}

/// One entry of `signatures.json`: `{"keyid": hex, "sig": base64}`. Parsed, so a
/// `Signature` always has a well-formed key id and a 64-byte signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    /// Who claims to have signed.
    pub keyid: KeyId,
    /// ed25519 signature over the manifest bytes.
    pub sig: [u8; 64],
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(by {})", self.keyid)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureJson {
    keyid: String,
    sig: String,
}

/// Parses `signatures.json` (at most `max` entries).
pub fn parse_signatures(bytes: &[u8], max: usize) -> Result<Vec<Signature>, BundleError> {
    let bad = |m: String| BundleError::Signatures(m);
    let raw: Vec<SignatureJson> = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if raw.len() > max {
        return Err(bad(format!(
            "{} signatures, more than the limit of {max}",
            raw.len()
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let keyid = Sha256::from_hex(&s.keyid)
                .ok_or_else(|| bad(format!("[{i}].keyid: expected 64 hex digits")))?;
            let sig: [u8; 64] = B64
                .decode(&s.sig)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| bad(format!("[{i}].sig: expected base64 of 64 bytes")))?;
            Ok(Signature {
                keyid: KeyId(keyid),
                sig,
            })
        })
        .collect()
}

/// Writes `signatures.json`.
pub fn signatures_to_bytes(sigs: &[Signature]) -> Vec<u8> {
    let raw: Vec<SignatureJson> = sigs
        .iter()
        .map(|s| SignatureJson {
            keyid: s.keyid.to_string(),
            sig: B64.encode(s.sig),
        })
        .collect();
    // INVARIANT: plain strings always serialise.
    let mut v = serde_json::to_vec_pretty(&raw).unwrap_or_default();
    v.push(b'\n');
    v
}

/// A value with the exact bytes that were signed and the signatures over them
/// (the shape of TUF's `Signed<T>`).
#[derive(Debug, Clone)]
pub struct Signed<T> {
    /// The parsed value.
    pub signed: T,
    /// The bytes the signatures cover.
    pub bytes: Vec<u8>,
    /// The signatures as found (not yet checked).
    pub signatures: Vec<Signature>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_signature_json_round_trip() {
        let (key, _pem) = SigningKey::generate().expect("key");
        let s = key.sign(b"manifest");
        assert!(key.public().verifies(b"manifest", &s.sig));
        assert!(!key.public().verifies(b"manifesT", &s.sig));
        let bytes = signatures_to_bytes(std::slice::from_ref(&s));
        assert_eq!(parse_signatures(&bytes, 4).expect("parse"), vec![s]);
    }

    #[test]
    fn malformed_signatures_are_named() {
        let err = parse_signatures(br#"[{"keyid":"ab","sig":""}]"#, 4).expect_err("bad");
        assert!(err.to_string().contains("[0].keyid"), "{err}");
        let too_many = format!("[{}]", [r#"{"keyid":"x","sig":"y"}"#; 5].join(","));
        let err = parse_signatures(too_many.as_bytes(), 4).expect_err("too many");
        assert!(err.to_string().contains("5 signatures"), "{err}");
    }
}
