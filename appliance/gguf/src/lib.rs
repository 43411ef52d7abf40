//! GGUF model files: a validating, memory-mapped reader, block dequantization, and a writer
//! for synthetic test models.
//!
//! # Use
//! ```no_run
//! # fn main() -> Result<(), airlock_gguf::GgufError> {
//! use airlock_gguf::GgufFile;
//! let f = GgufFile::open(std::path::Path::new("model.gguf"))?;
//! let arch = f.metadata().get_str("general.architecture")?;
//! let layers = f.metadata().get_u32(&format!("{arch}.block_count"))?;
//! let emb = f.require_tensor("token_embd.weight")?;
//! let bytes: &[u8] = f.tensor_bytes(emb); // still quantized, borrowed from the mapping
//! let row0 = airlock_gguf::dequantize_row(emb.ggml_type(), bytes, 0, emb.row_len());
//! # let _ = (layers, row0); Ok(()) }
//! ```
//!
//! Metadata getters name the key and both types on error: `get_str`, `get_u32`/`get_u64`/
//! `get_usize`/`get_i64` (any stored integer type whose value fits), `get_f32` (F32 or F64),
//! `get_bool`, `get_array_str`/`get_array_i32`/`get_array_u32`/`get_array_f32`, the generic
//! [`Metadata::get_as`], and [`Metadata::get_opt`] for optional keys (absent → `Ok(None)`).
//!
//! # Writing synthetic models (tests of other crates)
//! ```
//! use airlock_gguf::{GgmlType, GgufFile, write::GgufWriter};
//! let w: Vec<f32> = (0..64 * 3).map(|i| (i as f32 * 0.1).sin()).collect();
//! let mut g = GgufWriter::new();
//! g.metadata("general.architecture", "llama")
//!     .metadata("llama.block_count", 1u32)
//!     .metadata("tokenizer.ggml.tokens", vec!["<s>", "a"]);
//! // dims in GGUF order: [row length, rows]; rows must be whole blocks (32 for Q8_0, 256 for
//! // the K-quants); values are quantized with a simple round-to-nearest.
//! g.tensor_from_f32("blk.0.attn_q.weight", &[64, 3], GgmlType::Q8_0, &w)?;
//! let f = GgufFile::from_bytes(g.to_bytes())?;
//! assert_eq!(f.tensors()[0].dims(), [64, 3]);
//! # Ok::<(), airlock_gguf::GgufError>(())
//! ```
//! [`write::GgufWriter::to_bytes_with_layout`] also reports where every field landed, for tests
//! that corrupt files on purpose; [`write::quantize`] encodes f32 values as any supported type.
//!
//! # Verification
//! Block decoders are checked against per-element reference decoders on random blocks, and
//! bit-for-bit against llama.cpp's own Python package (gguf-py) on a fixture it wrote
//! (`testdata/ggufpy-blocks.gguf`) and on the default model. The parser is covered by one
//! test per error, random mutation tests and a cargo-fuzz target (`fuzz/`).
//!
//! # Design
//! * **Parse, don't validate.** [`GgufFile::open`] / [`GgufFile::from_bytes`] check the whole
//!   header once; afterwards every [`TensorInfo`] is proof that its bytes are in bounds, whole
//!   blocks of a supported type, aligned and not overlapping another tensor. Its fields are
//!   private (read through accessors) so no caller can forge one.
//! * **Zero copy for weights.** The file is memory-mapped; tensor data is borrowed
//!   ([`GgufFile::tensor_bytes`]), never copied or dequantized at open. Metadata (including
//!   vocabularies) is decoded into owned values: it is small and used everywhere.
//! * **Own parser.** Written here (rather than the `ggus` crate) so every length and offset
//!   goes through one bounds-checked cursor, and so errors carry our context.
//!
//! # What `open` checks (each failure is a specific [`GgufError`] variant)
//! magic `GGUF`; version 2 or 3 (v1 and big-endian files rejected by name); counts, string
//! lengths and array lengths no larger than the bytes left (checked *before* allocating);
//! UTF-8 strings; known value types; booleans 0/1; array nesting ≤ [`MAX_ARRAY_DEPTH`];
//! unique metadata keys; `general.alignment` an integer power of two ≤ 2^31 (default 32);
//! ≤ [`MAX_DIMS`] dims per tensor, element count and byte size without overflow (dims ≤
//! `i64::MAX` as ggml stores them); `dims[0]` a multiple of the type's block size; supported
//! tensor types (others named: "Q2_K is not supported"; unknown ids reported as such); unique
//! tensor names; each offset a multiple of the alignment; data section start aligned; each
//! tensor's bytes inside the file; no two tensors overlapping.
//!
//! # Non-goals
//! No big-endian files, no GGUF v1, no quantization types beyond the list in [`GgmlType`], no
//! model-architecture knowledge (the engine reads `llama.*` keys itself), no in-place editing.
//! The writer ([`write`](mod@write)) exists for tests: it can also write deliberately malformed files.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub mod blocks;
mod dequant;
mod error;
mod file;
mod parse;
mod quantize;
mod summary;
mod types;
mod value;
pub mod write;

pub use dequant::dequantize;
pub use error::GgufError;
pub use file::{GgufFile, TensorInfo};
pub use parse::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};
pub use summary::Summary;
pub use types::{GgmlType, ggml_type_name};
pub use value::{Array, FromValue, Metadata, Value, ValueType};

/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays inside metadata arrays we accept (1 = a plain array; real models
/// use no nesting at all).
pub const MAX_ARRAY_DEPTH: u32 = 3;

/// Dequantizes row `row` of a matrix of rows of `row_len` values stored as `bytes`
/// (consecutive rows of whole blocks); `None` if `row_len` is not whole blocks or the row is
/// outside `bytes`.
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], row: u64, row_len: u64) -> Option<Vec<f32>> {
    let row_bytes = usize::try_from(ty.bytes_for(row_len)?).ok()?;
    let start = usize::try_from(row).ok()?.checked_mul(row_bytes)?;
    let src = bytes.get(start..start.checked_add(row_bytes)?)?;
    let mut out = vec![0f32; usize::try_from(row_len).ok()?];
    dequantize(ty, src, &mut out).ok()?;
    Some(out)
}
