//! Signed offline model-update bundles (ARCHITECTURE.md §7 and §11).
//!
//! # Format
//! A bundle is one tar file: `manifest.json`, `signatures.json`, then the payload files
//! (one `.gguf` model, plus e.g. LICENSE and README). See `docs/bundle-format.md`.
//!
//! # Design
//! * **Verify before unpack.** [`read_bundle`] reads the two header entries (bounded by
//!   [`Limits`]) and hands them to a verification callback ([`verify_manifest`]: threshold
//!   of distinct trusted keys, allowed name, expiry, anti-rollback) before a single payload
//!   byte is written. Each payload entry is then checked (plain file name, regular file,
//!   listed, not a duplicate, size as signed) before its data is streamed, hashed while it
//!   is written, into a staging directory inside the state directory.
//! * **Types carry proofs.** A [`VerifiedManifest`] is only made by [`verify_manifest`];
//!   a [`VerifiedBundle`] only by [`read_bundle`] after every file matched.
//! * **One threshold count**: [`TrustRoot::check_signatures`] (unknown keys ignored, a key
//!   counted once however often it signs).
//! * **Atomic install**: fsync, then one rename into `models/NAME/VERSION/`; activation
//!   is a pointer file written then renamed ([`ModelStore`]). Anti-rollback marks live
//!   outside `models/`, so deleting a model does not reopen rollback.
//! * **Bounded memory**: one 256 KiB buffer plus the 1 MiB manifest, whatever the size.
//!
//! # Non-goals
//! No HTTP, no CLI, no audit log here: operations report [`Event`]s to an [`EventSink`]
//! that the appliance connects to the audit log. No key rotation or revocation beyond
//! editing the trust policy. No compression (GGUF does not compress).
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod create;
mod error;
mod event;
mod limits;
mod manifest;
mod signature;
mod store;
mod trust;
mod unpack;
mod verify;

pub use create::{CreateOptions, create_bundle, inspect_model, read_header, sign_bundle};
pub use error::{BundleError, EventError};
pub use event::{Event, EventSink, SinkError, TracingSink};
pub use limits::{
    DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES, DEFAULT_MAX_MANIFEST_BYTES, DEFAULT_MAX_SIGNATURES,
    DEFAULT_MAX_SIGNATURES_BYTES, Limits,
};
pub use manifest::{
    FORMAT, FileEntry, MANIFEST_ENTRY, MAX_NAME_LEN, MAX_PATH_LEN, Manifest, SIGNATURES_ENTRY,
    Sha256, check_name, check_path,
};
/// Re-exported: versions in the public API are `semver::Version`.
pub use semver;
pub use signature::{
    KeyId, PublicKey, Signature, Signed, SigningKey, parse_signatures, signatures_to_bytes,
};
pub use store::{ActiveModel, InstalledModel, MAX_HISTORY, ModelStore, verify_stream};
pub use trust::{ExpiryEnforcement, NameRule, Signer, TrustRoot, TrustedKey};
pub use unpack::{CHUNK, Destination, MAX_TRAILING_BYTES, VerifiedBundle, read_bundle};
pub use verify::{Context, VerifiedManifest, verify_manifest};
