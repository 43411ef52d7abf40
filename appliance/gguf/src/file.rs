//! [`GgufFile`]: the bytes of a GGUF file (memory-mapped or owned) with its validated header.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::parse::{Header, parse};
use crate::{GgmlType, GgufError, Metadata, dequantize};

/// One tensor of a [`GgufFile`]: name, shape, type and where its bytes are.
///
/// Only the parser makes these, after checking every invariant below, so holding one proves
/// the tensor is readable: fields are private, read through the accessors.
///
/// INVARIANT: `dims.len() <= 4`; `n_elements` is the product of `dims` (1 for no dims) and
/// `<= i64::MAX`; `dims[0]` is a multiple of the type's block size; `n_bytes` is the exact
/// size of `n_elements` values of `ggml_type`; `offset` is absolute, a multiple of the file's
/// alignment, and `offset + n_bytes <= file length`; `range` is `offset..offset + n_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) ggml_type: GgmlType,
    pub(crate) offset: u64,
    pub(crate) n_elements: u64,
    pub(crate) n_bytes: u64,
    pub(crate) range: Range<usize>,
    /// Which [`GgufFile`] this info belongs to (see [`GgufFile::tensor_bytes`]).
    pub(crate) file_id: u64,
}

impl TensorInfo {
    /// The tensor's name (`"blk.0.attn_q.weight"`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Dimensions in GGUF/ggml order: `dims[0]` is the innermost, contiguous one (a row), so
    /// a `[rows, cols]` matrix in row-major terms is stored as `dims = [cols, rows]`.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }
    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }
    /// Absolute byte offset of the data in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Number of values (product of the dims).
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }
    /// Number of bytes of data.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
    /// Byte range of the data within [`GgufFile::bytes`].
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }
    /// Number of values in one row (`dims[0]`, 1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Bytes of one row (`row_len` values, whole blocks): `tensor_bytes` is `n_rows` of these.
    pub fn row_bytes(&self) -> usize {
        // INVARIANT: row_len is whole blocks and its size is at most n_bytes (or the tensor is
        // empty), which fits in the file; the fallback is unreachable.
        self.ggml_type
            .bytes_for(self.row_len())
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(0)
    }
    /// Number of rows (`n_elements / row_len`; 0 for an empty tensor).
    pub fn n_rows(&self) -> u64 {
        self.n_elements.checked_div(self.row_len()).unwrap_or(0)
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Arc<[u8]>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(b) => b,
        }
    }
}

static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

/// A GGUF file whose header, metadata and tensor placement have all been validated.
///
/// Cheap to share behind an `Arc`; `Send + Sync`. Tensor data stays where it is (in the
/// mapping): [`GgufFile::tensor_bytes`] borrows it, nothing is copied or dequantized at open.
pub struct GgufFile {
    storage: Storage,
    header: Header,
    id: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("len", &self.len())
            .field("version", &self.header.version)
            .field("metadata_pairs", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .field("mmapped", &matches!(self.storage, Storage::Mmap(_)))
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps `path` and validates it completely (see the crate docs for every check).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        // An empty mapping is not portable; an empty file fails validation anyway.
        let storage = if len == 0 {
            Storage::Owned(Arc::from(Vec::new()))
        } else {
            Storage::Mmap(map_read_only(&file).map_err(io)?)
        };
        GgufFile::from_storage(storage)
    }

    /// Validates a GGUF image held in memory (tests, fuzzing, files read by other means).
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Result<GgufFile, GgufError> {
        GgufFile::from_storage(Storage::Owned(bytes.into()))
    }

    fn from_storage(storage: Storage) -> Result<GgufFile, GgufError> {
        let mut header = parse(storage.bytes())?;
        let id = NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed);
        for t in &mut header.tensors {
            t.file_id = id;
        }
        Ok(GgufFile {
            storage,
            header,
            id,
        })
    }

    /// The file's GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The tensor named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let map: &HashMap<String, usize> = &self.header.by_name;
        map.get(name).and_then(|&i| self.header.tensors.get(i))
    }

    /// Like [`GgufFile::tensor`], but a missing tensor is a `TensorNotFound` error.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::TensorNotFound {
            name: name.to_owned(),
        })
    }

    /// The exact bytes of a tensor's data (bounds were validated at open).
    ///
    /// # Panics
    /// If `t` was obtained from another `GgufFile` (a programming error: its range was only
    /// validated against that file).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        assert_eq!(
            t.file_id, self.id,
            "TensorInfo {:?} belongs to another GgufFile",
            t.name
        );
        // INVARIANT: t.range was checked against this file's length in `parse`.
        self.bytes().get(t.range()).unwrap_or_default()
    }

    /// Dequantizes a whole tensor to f32 (tests, small tensors such as norms; the engine keeps
    /// large weights quantized).
    pub fn dequantize_tensor(&self, t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        let n = usize::try_from(t.n_elements).map_err(|_| GgufError::DimsOverflow {
            tensor: t.name.clone(),
            dims: t.dims.clone(),
        })?;
        let mut out = vec![0f32; n];
        dequantize(t.ggml_type, self.tensor_bytes(t), &mut out)?;
        Ok(out)
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// True for an empty file (never the case for a valid GGUF).
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// The data alignment in force (`general.alignment` or 32).
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Absolute offset of the tensor data section.
    pub fn data_start(&self) -> u64 {
        self.header.data_start
    }

    /// True if the bytes are memory-mapped from a file (rather than held in memory).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mmap(_))
    }

    /// Tells the kernel this process will not read `range` of the file soon: its mapped pages
    /// (those wholly inside the range) leave the resident set, and a later read faults them in
    /// again from the page cache. For bytes the engine has copied into another layout, so
    /// they are not counted twice. Advisory: nothing happens for bytes held in memory, and a
    /// refusal by the kernel is ignored.
    pub fn release_pages(&self, range: std::ops::Range<usize>) {
        const PAGE: usize = 4096;
        let Storage::Mmap(map) = &self.storage else {
            return;
        };
        let start = range.start.div_ceil(PAGE) * PAGE;
        let end = range.end.min(map.len()) / PAGE * PAGE;
        if start < end {
            release_mapped(map, start, end - start);
        }
    }
}

/// `madvise(MADV_DONTNEED)` on `len` bytes at `offset` of the mapping (page-aligned, inside).
#[allow(unsafe_code)]
fn release_mapped(map: &memmap2::Mmap, offset: usize, len: usize) {
    // SAFETY: the mapping is private and read-only (`map_read_only`): no page of it was ever
    // written, so none holds a copy-on-write private copy that DONTNEED would discard. Dropping
    // the page-table entries changes no byte a `&[u8]` into the mapping observes: the next read
    // faults the same file bytes in again (the file is not modified while mapped; see
    // `map_read_only`).
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}

/// Maps `file` read-only. With [`release_mapped`], the crate's only `unsafe`.
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because another process could truncate or modify the file
    // while it is mapped, which Rust's `&[u8]` cannot express (a truncation raises SIGBUS on
    // access; a modification changes bytes we already validated). We accept this because model
    // files are installed read-only (bundle install writes `models/NAME/VERSION/` once, then
    // renames it into place and never modifies it in place; updates are new versions), and the
    // service runs with that directory read-only (Landlock). Nothing in this crate writes
    // through or remaps the mapping; the mapping is private and read-only.
    unsafe { memmap2::Mmap::map(file) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;

    #[test]
    fn gguf_file_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<GgufFile>();
        shareable::<TensorInfo>();
    }

    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let mut w = crate::write::GgufWriter::new();
        let x: Vec<f32> = (0..4096 * 8).map(|i| (i % 977) as f32 / 100.0).collect();
        w.tensor_from_f32("t", &[4096, 8], GgmlType::F32, &x)
            .unwrap();
        let path = std::env::temp_dir().join(format!("gguf-release-{}.gguf", std::process::id()));
        std::fs::write(&path, w.to_bytes()).unwrap();
        let f = GgufFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(f.is_mapped());
        let before = f.bytes().to_vec();
        let t = f.tensors()[0].clone();
        f.release_pages(t.range());
        f.release_pages(0..f.bytes().len() + 10_000); // past the end: clamped, no fault
        assert_eq!(
            f.bytes(),
            &before[..],
            "a released page reads back the file's bytes"
        );
        assert_eq!(f.dequantize_tensor(&t).unwrap(), x);
    }

    #[test]
    fn rows_partition_the_tensor() {
        let mut w = crate::write::GgufWriter::new();
        let x: Vec<f32> = (0..512 * 3).map(|i| i as f32 / 1000.0).collect();
        w.tensor_from_f32("t", &[512, 3], GgmlType::Q6_K, &x)
            .unwrap();
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        let t = &f.tensors()[0];
        assert_eq!((t.row_len(), t.n_rows(), t.row_bytes()), (512, 3, 420));
        assert_eq!(t.row_bytes() as u64 * t.n_rows(), t.n_bytes());
        assert_eq!(f.tensor_bytes(t).chunks_exact(t.row_bytes()).count(), 3);
    }
}
