//! The one error type of this crate.
//!
//! Every variant that can come from file bytes carries enough context (byte offset, metadata
//! key, tensor name, expected/got) for an operator to see *where* a file is wrong. Unless a
//! variant's doc says otherwise, its probable cause is a corrupt, truncated or hostile file.

use std::path::PathBuf;

/// Everything that can go wrong reading a GGUF file, querying its metadata or dequantizing.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, inspected or mapped. Probably an operator error (wrong
    /// path, permissions).
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file does not start with the four bytes `GGUF`: not a GGUF file at all.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    /// A GGUF v3 file written for big-endian hosts. We only read little-endian files.
    #[error(
        "big-endian GGUF file (version {version} byte-swapped): only little-endian files are supported"
    )]
    BigEndian { version: u32 },

    /// A version other than 2 or 3 (v1 used 32-bit counts and is obsolete).
    #[error("unsupported GGUF version {version}: only versions 2 and 3 are supported")]
    UnsupportedVersion { version: u32 },

    /// The file ends before a fixed-size field could be read: a truncated file.
    #[error("file truncated: {what} at offset {offset} needs {needed} bytes, file has {file_len}")]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        file_len: u64,
    },

    /// A declared length or element count (string length, array count, tensor or key count)
    /// cannot fit in what is left of the file. Checked before anything is allocated, so a
    /// hostile length cannot make us reserve memory.
    #[error(
        "{what} at offset {offset} declares {declared} (at least {min_bytes} bytes) but only {remaining} bytes remain: truncated or corrupt file"
    )]
    LengthBeyondFile {
        what: &'static str,
        offset: u64,
        declared: u64,
        min_bytes: u128,
        remaining: u64,
    },

    /// A string (key, value or tensor name) is not valid UTF-8, as the GGUF spec requires.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: u64 },

    /// A metadata value type id outside the GGUF spec's table (0..=12).
    #[error("metadata key {key:?}: unknown value type {type_id} at offset {offset}")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: u64,
    },

    /// A boolean stored as a byte other than 0 or 1.
    #[error("metadata key {key:?}: boolean byte {value} at offset {offset} is neither 0 nor 1")]
    InvalidBool { key: String, value: u8, offset: u64 },

    /// Arrays nested deeper than [`crate::MAX_ARRAY_DEPTH`].
    #[error("metadata key {key:?}: arrays nested deeper than {max} at offset {offset}")]
    ArrayTooDeep { key: String, max: u32, offset: u64 },

    /// The same metadata key appears twice: which one a reader would use is ambiguous.
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey { key: String },

    /// The same tensor name appears twice.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor { name: String },

    /// `general.alignment` is zero or not a power of two (or does not fit in 32 bits).
    #[error("general.alignment {value} is not a power of two in 1..=2^31")]
    BadAlignment { value: u64 },

    /// A tensor with more dimensions than ggml supports (4).
    #[error("tensor {tensor:?} has {n_dims} dimensions, at most {max} are supported")]
    TooManyDims {
        tensor: String,
        n_dims: u32,
        max: u32,
    },

    /// The product of a tensor's dimensions (or its byte size, or its end offset) overflows.
    #[error("tensor {tensor:?}: dimensions {dims:?} overflow")]
    DimsOverflow { tensor: String, dims: Vec<u64> },

    /// A tensor type id that ggml does not define (or has removed).
    #[error("tensor {tensor:?}: unknown ggml type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },

    /// A ggml type we recognise but cannot dequantize (e.g. Q2_K, IQ4_XS).
    #[error("tensor {tensor:?}: ggml type {ty} (id {type_id}) is not supported")]
    UnsupportedTensorType {
        tensor: String,
        ty: &'static str,
        type_id: u32,
    },

    /// A tensor's rows (dims\[0\]) are not a whole number of quantization blocks.
    #[error(
        "tensor {tensor:?}: first dimension {dim0} is not a multiple of the {ty} block size {block_size}"
    )]
    PartialBlock {
        tensor: String,
        ty: &'static str,
        dim0: u64,
        block_size: u64,
    },

    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error(
        "tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    /// A tensor's data range `[start, start + n_bytes)` lies (partly) outside the file.
    #[error(
        "tensor {tensor:?}: data [{start}, {start}+{n_bytes}) lies beyond the end of the file ({file_len} bytes): truncated or corrupt file"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        n_bytes: u64,
        file_len: u64,
    },

    /// Two tensors' data ranges overlap: one write would alter the other's weights.
    #[error("tensors {first:?} and {second:?} have overlapping data")]
    TensorOverlap { first: String, second: String },

    /// A metadata key the caller requires is absent. Probably a file for another architecture
    /// or an incomplete conversion.
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },

    /// A metadata value has another type than the caller expects.
    #[error("metadata key {key:?}: expected {expected}, got {got}")]
    WrongType {
        key: String,
        expected: &'static str,
        got: &'static str,
    },

    /// An integer metadata value does not fit the type the caller asks for.
    #[error("metadata key {key:?}: value {value} does not fit in {expected}")]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },

    /// `dequantize` was given buffers whose sizes do not match: a caller bug.
    #[error(
        "dequantize {ty}: {n_bytes} input bytes are not whole blocks matching {n_out} outputs ({block_bytes} bytes per {block_size} values)"
    )]
    DequantizeSize {
        ty: &'static str,
        n_bytes: usize,
        n_out: usize,
        block_bytes: usize,
        block_size: usize,
    },

    /// A tensor name was looked up that the file does not contain.
    #[error("tensor {name:?} not found")]
    TensorNotFound { name: String },

    /// The writer was asked to build an inconsistent file: a caller bug (tests usually).
    #[error("GGUF writer: {reason}")]
    Write { reason: String },
}
