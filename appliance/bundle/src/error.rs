//! Every way a bundle can be refused. Each variant's doc says who probably caused it.
use std::path::PathBuf;

/// Why a bundle, a key or an installed model was refused. Variants carry the context an
/// operator needs (file, key id, expected and found values); none carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Reading or writing a file failed: an operator or disk problem.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The tar stream itself is malformed (bad header checksum, bad octal field): a
    /// damaged file, or an attack.
    #[error("malformed bundle archive: {0}")]
    Archive(String),
    /// The archive ends before the data its headers announce, or without the
    /// end-of-archive marker: a truncated copy, or an attack.
    #[error("bundle is truncated: {0}")]
    Truncated(String),
    /// Non-zero bytes after the end-of-archive marker: an attack, or a damaged file.
    #[error("bundle has {0} bytes of trailing data after the end of the archive")]
    TrailingData(u64),
    /// The first two entries are not `manifest.json` then `signatures.json`.
    #[error("bundle layout: expected `{expected}` as entry {index}, found `{found}`")]
    Layout {
        /// 0-based entry index.
        index: usize,
        /// The entry name required there.
        expected: &'static str,
        /// The entry name found (lossy UTF-8).
        found: String,
    },
    /// `manifest.json` is larger than [`crate::Limits::max_manifest_bytes`]: an attack
    /// (memory exhaustion), or a mistake of the publisher's tool.
    #[error("manifest.json is {size} bytes, more than the limit of {limit}")]
    ManifestTooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// `signatures.json` is larger than [`crate::Limits::max_signatures_bytes`].
    #[error("signatures.json is {size} bytes, more than the limit of {limit}")]
    SignaturesTooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The manifest lists more files than [`crate::Limits::max_files`].
    #[error("manifest lists {count} files, more than the limit of {limit}")]
    TooManyFiles {
        /// Files listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The manifest is not valid JSON of the expected shape, or a field is invalid
    /// (bad semver, bad digest, no `.gguf` file, ...): a publisher tool bug, or an attack.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// `signatures.json` is not valid JSON of the expected shape.
    #[error("invalid signatures.json: {0}")]
    Signatures(String),
    /// A path (in the manifest or the archive) is absolute, contains `..`, or is
    /// otherwise not a plain relative file name: an attack (path traversal).
    #[error("unsafe path `{path}`: {reason}")]
    UnsafePath {
        /// The path as found (lossy UTF-8).
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An archive entry is a symlink or hard link: an attack (a link out of the
    /// staging directory).
    #[error("archive entry `{path}` is a {kind}: links are not allowed")]
    LinkEntry {
        /// Entry path.
        path: String,
        /// `symlink` or `hardlink`.
        kind: &'static str,
    },
    /// An archive entry is a device, FIFO, directory or other non-regular file.
    #[error("archive entry `{path}` is a {kind}: only regular files are allowed")]
    SpecialEntry {
        /// Entry path.
        path: String,
        /// What it is.
        kind: String,
    },
    /// Two entries (or two manifest files) with the same name: an attack (the second
    /// would replace a verified first).
    #[error("duplicate file `{0}`")]
    DuplicateFile(String),
    /// A payload entry that the manifest does not list: an attack (smuggled file).
    #[error("archive entry `{0}` is not listed in the manifest")]
    UnlistedFile(String),
    /// A file the manifest lists is absent from the archive.
    #[error("file `{0}` listed in the manifest is missing from the archive")]
    MissingFile(String),
    /// An entry's size differs from the manifest's: tampering, or a declared size meant
    /// to exhaust the disk.
    #[error("file `{path}`: size {found} does not match the manifest's {expected}")]
    SizeMismatch {
        /// Entry path.
        path: String,
        /// Size in the manifest.
        expected: u64,
        /// Size in the archive.
        found: u64,
    },
    /// A payload file's SHA-256 differs from the manifest's: tampering or corruption.
    #[error("file `{path}`: SHA-256 {found} does not match the manifest's {expected}")]
    DigestMismatch {
        /// Entry path.
        path: String,
        /// Digest in the manifest (hex).
        expected: String,
        /// Digest of the received bytes (hex).
        found: String,
    },
    /// A signature by a trusted key does not verify over the manifest bytes: the
    /// manifest was edited after signing, or a forged signature.
    #[error("bad signature by trusted key `{name}` ({keyid})")]
    BadSignature {
        /// Publisher name in the trust policy.
        name: String,
        /// Key id (hex).
        keyid: String,
    },
    /// Fewer distinct trusted keys signed than the threshold requires: an unsigned
    /// bundle, one signed by unknown keys, or one missing a co-signer.
    #[error("signed by {valid} distinct trusted key(s), threshold is {threshold}")]
    BelowThreshold {
        /// Distinct trusted keys with a valid signature.
        valid: usize,
        /// Required.
        threshold: usize,
    },
    /// The bundle's `expires` time has passed: an old bundle replayed.
    #[error("bundle expired at {expires}")]
    Expired {
        /// The manifest's `expires` (RFC 3339).
        expires: String,
    },
    /// The bundle has no `expires` and the trust policy requires one.
    #[error(
        "bundle has no `expires` and the trust policy requires one (trust.accept_without_expiry = false)"
    )]
    NoExpiry,
    /// The bundle's name is not in the trust policy's allowed names.
    #[error("bundle name `{0}` is not allowed by the trust policy")]
    NameNotAllowed(String),
    /// Anti-rollback: the sequence is not above every sequence ever installed for the
    /// name (the high-water mark survives deletion of the model).
    #[error(
        "rollback refused: `{name}` sequence {sequence} is not above the installed high-water mark {high_water}"
    )]
    Rollback {
        /// Bundle name.
        name: String,
        /// The bundle's sequence.
        sequence: u64,
        /// Highest sequence ever installed for this name.
        high_water: u64,
    },
    /// Activation would go back below the name's high-water mark: that is a rollback, which
    /// only the explicit rollback command does.
    #[error(
        "activation refused: `{name}` {version} has sequence {sequence}, below the high-water mark {high_water} (an older bundle); go back with `models rollback`, which is explicit and audited"
    )]
    ActivationRollback {
        /// Bundle name.
        name: String,
        /// Version asked for.
        version: String,
        /// Its sequence.
        sequence: u64,
        /// Highest sequence ever installed for this name.
        high_water: u64,
    },
    /// The version did not pass the caller's load test (the engine refused the model): the
    /// active version stays.
    #[error("activation refused: `{name}` {version} does not load: {reason}")]
    LoadTest {
        /// Bundle name.
        name: String,
        /// Version.
        version: String,
        /// Why it does not load.
        reason: String,
    },
    /// That name and version is already installed.
    #[error("`{name}` version {version} is already installed")]
    AlreadyInstalled {
        /// Bundle name.
        name: String,
        /// Version.
        version: String,
    },
    /// The model file is not a valid GGUF, or its architecture differs from the manifest's.
    #[error("model file `{path}`: {reason}")]
    Model {
        /// Path inside the bundle.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key file or key string is malformed.
    #[error("{what}: {reason}")]
    Key {
        /// The key file or source.
        what: String,
        /// Why.
        reason: String,
    },
    /// The bundle already carries a signature by this key (`bundle sign` twice).
    #[error("bundle is already signed by key {0}")]
    DuplicateSignature(String),
    /// No such installed model or version.
    #[error("not installed: {0}")]
    NotInstalled(String),
    /// `models rollback` has nothing to go back to.
    #[error("no previous version of `{0}` to roll back to")]
    NoPrevious(String),
    /// The event sink (audit log) refused an event: the operation was not carried out.
    #[error(transparent)]
    Event(#[from] EventError),
    /// State on disk (active pointer, high-water mark, installed manifest) is corrupt:
    /// tampering with the state directory, or a disk fault.
    #[error("corrupt state {}: {reason}", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Recording an event (audit) failed, so the operation was not carried out.
#[derive(Debug, thiserror::Error)]
#[error("cannot record {kind} event: {source}")]
pub struct EventError {
    /// The event kind.
    pub kind: &'static str,
    /// The sink's error.
    #[source]
    pub source: crate::event::SinkError,
}

impl BundleError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BundleError {
        let path = path.into();
        move |source| BundleError::Io { path, source }
    }
}
