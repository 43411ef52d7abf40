//! Explicit bounds on everything read from a bundle before it is trusted.

/// Bounds applied while reading a bundle. The defaults (the `DEFAULT_*` constants) are far
/// above any real bundle's; tests lower them to exercise the checks cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest `manifest.json` (read into memory before verification).
    pub max_manifest_bytes: u64,
    /// Largest `signatures.json`.
    pub max_signatures_bytes: u64,
    /// Most signature entries.
    pub max_signatures: usize,
    /// Most payload files.
    pub max_files: usize,
    /// Largest single payload file a manifest may declare.
    pub max_file_bytes: u64,
}

/// 1 MiB.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// 64 KiB: room for hundreds of signatures.
pub const DEFAULT_MAX_SIGNATURES_BYTES: u64 = 64 << 10;
/// More than any real publisher quorum.
pub const DEFAULT_MAX_SIGNATURES: usize = 64;
/// A model, its license and readme, with room to spare.
pub const DEFAULT_MAX_FILES: usize = 64;
/// 256 GiB: larger than any model this appliance can run.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_signatures_bytes: DEFAULT_MAX_SIGNATURES_BYTES,
            max_signatures: DEFAULT_MAX_SIGNATURES,
            max_files: DEFAULT_MAX_FILES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}
