//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP `signed-note`
//! envelopes, signed with ed25519.
//!
//! # What this does
//! - [`Checkpoint`]: the note text of <https://c2sp.org/tlog-checkpoint>:
//!   origin line, decimal tree size, base64 RFC 6962 root, optional
//!   extension lines.
//! - [`sign_checkpoint`] writes a signed note (<https://c2sp.org/signed-note>):
//!   the text, a blank line, and `— <name> base64(key ID || signature)`.
//! - [`open_checkpoint`] is the one way to read a checkpoint: it parses the
//!   note under the spec's rules, verifies the signatures of the known
//!   [`Verifier`]s, and only then parses the body and checks its origin. It
//!   returns a [`VerifiedCheckpoint`], which nothing else can construct.
//! - Keys: a [`Signer`] from a PKCS#8 ed25519 key (created 0600 by
//!   [`create_signing_key_file`]), and its [`Verifier`], printed and parsed
//!   as the `<name>+<hex key ID>+<base64(0x01 || public key)>` "vkey" string
//!   used by golang.org/x/mod/sumdb/note, so auditors can pin it.
//!
//! # Parsing rules (signed-note §Format, §Signatures)
//! - At most [`MAX_NOTE_SIZE`] bytes and [`MAX_SIGNATURES`] signature lines
//!   (the spec requires accepting at least 16).
//! - Valid UTF-8; no control character below U+0020 other than newline.
//! - The note ends with a newline; the text is everything up to and including
//!   the newline before the *last* blank line; every line after it is a
//!   signature line.
//! - Key names are non-empty, without Unicode whitespace or `+`.
//! - Signatures from unknown keys (name and key ID not both matching a
//!   verifier) are ignored. A signature from a known key that fails to verify
//!   rejects the note, as does a second signature from the same known key
//!   (Off-spec: the spec does not mention duplicates; we fail closed). At
//!   least one known signature must verify.
//!
//! # What this does NOT do
//! No storage and no network; the only I/O is the key-file helpers. It does
//! not check that a checkpoint is consistent with another one: that is a
//! Merkle consistency proof ([`crate::merkle::verify_consistency`]).

use std::ops::Deref;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::keyfile::KeyFileError;
use crate::merkle::{HASH_LEN, Hash};

mod keys;

use keys::check_name;
pub use keys::{Signer, Verifier, create_signing_key_file, generate_signing_key};

/// Largest note accepted by [`open_checkpoint`], in bytes.
pub const MAX_NOTE_SIZE: usize = 64 * 1024;
/// Most signature lines accepted in one note (known and unknown together).
pub const MAX_SIGNATURES: usize = 100;
/// Signature type byte of ed25519 in key IDs and vkeys (signed-note §Signature types).
pub const SIG_TYPE_ED25519: u8 = 0x01;

const ED25519_PUBLIC_KEY_LEN: usize = 32;
const ED25519_SIGNATURE_LEN: usize = 64;
const KEY_ID_LEN: usize = 4;
const SIGNATURE_PREFIX: &str = "\u{2014} ";
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
/// Generous bound on a PKCS#8 key file (an ed25519 v2 key is 83 bytes DER).
const MAX_KEY_FILE_SIZE: usize = 4096;

/// Why a note, checkpoint or key was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is larger than [`MAX_NOTE_SIZE`] (a bad file, or an attack).
    #[error("note is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    /// The note is not valid UTF-8 (corrupted file).
    #[error("note is not valid UTF-8")]
    NotUtf8,
    /// A control character other than newline (e.g. CR from a Windows copy).
    #[error("note contains control character U+{code:04X} at byte {offset}")]
    ControlCharacter { offset: usize, code: u32 },
    /// The note does not end with a newline (truncated file?).
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    /// No blank line followed by signature lines.
    #[error("note has no signature lines")]
    NoSignatures,
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("note has more than {max} signatures")]
    TooManySignatures { max: usize },
    /// A line after the blank line is not `— <name> <base64>`.
    #[error("signature line {line} is malformed")]
    MalformedSignatureLine { line: usize },
    /// The signature is not standard padded base64, or is shorter than a key ID + 1 byte.
    #[error("signature line {line} has a malformed base64 signature")]
    BadSignatureEncoding { line: usize },
    /// No signature by a known key: an unknown or wrong signer (wrong `--key`?).
    #[error("note is not signed by any known key")]
    NoKnownSignature,
    /// Two configured verifiers share a name and key ID.
    #[error("ambiguous verifier key {name}+{key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    /// A known key signed twice.
    #[error("duplicate signature by key {name}+{key_id:08x}")]
    DuplicateSignature { name: String, key_id: u32 },
    /// A known key's signature does not verify: the text was changed after
    /// signing, or the signature was forged.
    #[error("invalid signature by key {name}+{key_id:08x}")]
    InvalidSignature { name: String, key_id: u32 },
    /// The checkpoint body has fewer than three lines.
    #[error("checkpoint body has fewer than 3 lines")]
    MissingCheckpointLines,
    /// The checkpoint is for another log.
    #[error("checkpoint origin is {got:?}, expected {expected:?}")]
    OriginMismatch { expected: String, got: String },
    /// The tree size is not a decimal u64 without leading zeros.
    #[error("checkpoint tree size is malformed")]
    BadTreeSize,
    /// The root hash is not base64 of 32 bytes.
    #[error("checkpoint root hash is malformed")]
    BadRootHash,
    /// An extension line is empty or contains a character below U+0020.
    #[error("checkpoint extension line {index} is malformed")]
    BadExtensionLine { index: usize },
    /// A key name or origin is empty or has whitespace, `+` or characters below U+0020.
    #[error("invalid key name or origin {0:?}")]
    BadName(String),
    /// A vkey string is not `<name>+<8 hex digits>+<base64>`.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
    /// A vkey for an algorithm other than ed25519.
    #[error("unsupported signature type 0x{0:02x}")]
    UnsupportedAlgorithm(u8),
    /// The key ID in a vkey does not match its name and key.
    #[error("verifier key ID {got:08x} does not match the key (expected {expected:08x})")]
    KeyIdMismatch { expected: u32, got: u32 },
    /// The private key is not a PKCS#8 ed25519 key (PEM or DER).
    #[error("signing key is not a valid PKCS#8 ed25519 key")]
    BadSigningKey,
    /// Creating or reading the key file failed.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

// ----------------------------------------------------------------------------
// Signed notes
// ----------------------------------------------------------------------------

struct SignatureLine<'a> {
    name: &'a str,
    key_id: u32,
    sig: Vec<u8>,
}

/// Splits a signed note into its text and signature lines, applying the
/// format rules of signed-note §Format. Verifies nothing.
fn parse_note(bytes: &[u8]) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    if bytes.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            size: bytes.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    // "Signed notes MUST be valid UTF-8 and MUST NOT contain any ASCII control
    // characters (those below U+0020) other than newline."
    let msg = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
    if let Some(offset) = bytes.iter().position(|&b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter {
            offset,
            code: u32::from(bytes[offset]),
        });
    }
    // "A signed note consists of a text ending in newline, followed by a
    // blank line, followed by one or more signature lines [...] newline."
    if !msg.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    // "the text is separated from the signatures by the last empty line"
    let split = msg.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
    let (text, sig_block) = (&msg[..split + 1], &msg[split + 2..]);
    let mut sigs = Vec::new();
    for (i, line) in sig_block.split_terminator('\n').enumerate() {
        let line_no = i + 1;
        if sigs.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        // "em dash (U+2014), space (U+0020), key name, space, base64-encoded
        // signature, newline."
        let (name, b64) = line
            .strip_prefix(SIGNATURE_PREFIX)
            .and_then(|rest| rest.split_once(' '))
            .ok_or(NoteError::MalformedSignatureLine { line: line_no })?;
        check_name(name).map_err(|_| NoteError::MalformedSignatureLine { line: line_no })?;
        let sig = B64
            .decode(b64)
            .map_err(|_| NoteError::BadSignatureEncoding { line: line_no })?;
        // "Signatures are the base64 encoding of 4+n bytes."
        if sig.len() <= KEY_ID_LEN {
            return Err(NoteError::BadSignatureEncoding { line: line_no });
        }
        let (id, sig) = sig.split_at(KEY_ID_LEN);
        let mut id_bytes = [0u8; KEY_ID_LEN];
        id_bytes.copy_from_slice(id);
        sigs.push(SignatureLine {
            name,
            key_id: u32::from_be_bytes(id_bytes),
            sig: sig.to_vec(),
        });
    }
    if sigs.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    Ok((text, sigs))
}

/// Parses a signed note and verifies it against `verifiers` (signed-note
/// §Signatures). Returns the text only if at least one known key verified.
fn open_note<'a>(bytes: &'a [u8], verifiers: &[Verifier]) -> Result<&'a str, NoteError> {
    let (text, sigs) = parse_note(bytes)?;
    // One entry per verifier: whether its signature was already seen. Counting
    // in this single place means a duplicate can never count twice.
    let mut seen = vec![false; verifiers.len()];
    let mut verified = 0usize;
    for s in &sigs {
        let mut matches = verifiers
            .iter()
            .enumerate()
            .filter(|(_, v)| v.name() == s.name && v.key_id() == s.key_id);
        // "Verifiers MUST ignore signatures from unknown keys, even if they
        // share a name or ID (but not both) with a known key."
        let Some((idx, v)) = matches.next() else {
            continue;
        };
        if matches.next().is_some() {
            return Err(NoteError::AmbiguousKey {
                name: s.name.to_owned(),
                key_id: s.key_id,
            });
        }
        if seen[idx] {
            return Err(NoteError::DuplicateSignature {
                name: s.name.to_owned(),
                key_id: s.key_id,
            });
        }
        seen[idx] = true;
        // "If the key name and ID match a known key, verifiers MUST verify the
        // signature. If a signature from a known key fails to verify, clients
        // SHOULD reject the whole note."
        if !v.verify(text.as_bytes(), &s.sig) {
            return Err(NoteError::InvalidSignature {
                name: s.name.to_owned(),
                key_id: s.key_id,
            });
        }
        verified += 1;
    }
    // "If no signature from a known key verifies successfully, clients MUST
    // reject the note."
    if verified == 0 {
        return Err(NoteError::NoKnownSignature);
    }
    Ok(text)
}

// ----------------------------------------------------------------------------
// Checkpoints
// ----------------------------------------------------------------------------

/// The body of a transparency log checkpoint (tlog-checkpoint §Note text).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Checkpoint {
    // INVARIANT: origin passes check_name; extension lines are non-empty and
    // free of characters below U+0020, so body() is always a valid note text.
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint of the tree of `size` leaves with root `root`. The origin
    /// follows the key-name rules (no whitespace, no `+`), as the spec
    /// recommends, so that the log's key name can equal it.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, NoteError> {
        check_name(origin)?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// Adds an extension line (NOT RECOMMENDED by the spec: monitors cannot
    /// audit them).
    pub fn with_extension(mut self, line: &str) -> Result<Self, NoteError> {
        // The note rule (no character below U+0020), with newline included
        // since it would end the line: exactly what the parser accepts.
        if line.is_empty() || line.chars().any(|c| u32::from(c) < 0x20) {
            return Err(NoteError::BadExtensionLine {
                index: self.extensions.len(),
            });
        }
        self.extensions.push(line.to_owned());
        Ok(self)
    }

    /// The log identity (first line).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// RFC 6962 root of the tree.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Extension lines, in order.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: origin, size, base64 root, extensions, each ending in
    /// a newline.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.as_bytes())
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a note text per tlog-checkpoint §Note text.
    fn parse_body(text: &str) -> Result<Self, NoteError> {
        // The note text ends with a newline (checked by parse_note).
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(text)
            .split('\n')
            .collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(NoteError::MissingCheckpointLines);
        };
        // 1. "The origin MUST be non-empty". Our own origins also follow the
        //    key-name rules; a foreign origin is compared to the expected one.
        if origin.is_empty() {
            return Err(NoteError::MissingCheckpointLines);
        }
        // 2. "ASCII decimal [...] with no leading zeroes (unless the tree is
        //    empty, in which case the tree size is `0`)."
        let well_formed = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (*size == "0" || !size.starts_with('0'));
        if !well_formed {
            return Err(NoteError::BadTreeSize);
        }
        let size: u64 = size.parse().map_err(|_| NoteError::BadTreeSize)?;
        // 3. "the base64 encoding of the root of the RFC 6962 Merkle hash tree"
        let root = B64.decode(root).map_err(|_| NoteError::BadRootHash)?;
        if root.len() != HASH_LEN {
            return Err(NoteError::BadRootHash);
        }
        let root = Hash::from_slice(&root).map_err(|_| NoteError::BadRootHash)?;
        // 4. "Extension lines, if any, MUST be non-empty."
        if let Some(index) = extensions.iter().position(|e| e.is_empty()) {
            return Err(NoteError::BadExtensionLine { index });
        }
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }
}

/// A checkpoint whose signature by a known key has been verified. Only
/// [`open_checkpoint`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
}

impl VerifiedCheckpoint {
    /// The verified checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed note exactly as verified, e.g. to copy into an export.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Drops the proof of verification.
    pub fn into_checkpoint(self) -> Checkpoint {
        self.checkpoint
    }
}

impl Deref for VerifiedCheckpoint {
    type Target = Checkpoint;

    fn deref(&self) -> &Checkpoint {
        &self.checkpoint
    }
}

/// Parses and fully verifies a signed checkpoint: note format, signatures of
/// the known `verifiers` (at least one must verify, none may fail), then the
/// checkpoint body, whose origin must be `expected_origin`.
///
/// The body is parsed only after the signature check, as signed-note
/// requires: "The text MUST be ignored unless the note is signed by a trusted
/// key and the signature has been verified."
pub fn open_checkpoint(
    expected_origin: &str,
    verifiers: &[Verifier],
    bytes: &[u8],
) -> Result<VerifiedCheckpoint, NoteError> {
    let text = open_note(bytes, verifiers)?;
    let checkpoint = Checkpoint::parse_body(text)?;
    if checkpoint.origin != expected_origin {
        return Err(NoteError::OriginMismatch {
            expected: expected_origin.to_owned(),
            got: checkpoint.origin,
        });
    }
    // open_note already checked UTF-8; this cannot fail but costs nothing.
    let note = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
    Ok(VerifiedCheckpoint {
        checkpoint,
        note: note.to_owned(),
    })
}

/// Signs `checkpoint` with `signer`, returning the signed note text.
pub fn sign_checkpoint(checkpoint: &Checkpoint, signer: &Signer) -> String {
    signer.sign_text(&checkpoint.body())
}

#[cfg(test)]
mod tests;
