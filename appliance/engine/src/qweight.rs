//! [`QWeight`]: a weight matrix kept in its GGUF encoding, borrowed from the mapped file.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use airlock_gguf::{GgmlType, GgufFile, TensorInfo};

use crate::error::{EngineError, Result};
use crate::kernels::Isa;
use crate::kernels::interleaved::Interleaved;

/// A `[rows, cols]` matrix in one of the GGUF encodings, still quantized.
///
/// Row `r` is `row_bytes` bytes at `r * row_bytes` of [`QWeight::bytes`]: whole blocks of the
/// type, `cols` values. Holding the `Arc<GgufFile>` keeps the mapping alive; nothing is copied,
/// so the weights cost page cache, not heap (resident size ≈ the file, as with llama.cpp).
///
/// INVARIANT: `range` lies inside `file.bytes()` and is exactly `rows * row_bytes` long; `cols`
/// is a whole number of the type's blocks (both checked by the GGUF reader, re-checked in
/// [`QWeight::new`]).
#[derive(Clone)]
pub struct QWeight {
    file: Arc<GgufFile>,
    range: Range<usize>,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    name: Arc<str>,
    q8_activations: bool,
    /// The rows interleaved by sixteen for the CPU's AVX-512 kernels (Q4_K, Q6_K; see
    /// [`QWeight::with_interleaved_rows`]).
    interleaved: Option<Arc<Interleaved>>,
}

impl fmt::Debug for QWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QWeight")
            .field("name", &self.name)
            .field("type", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

impl QWeight {
    /// The 2-D tensor `info` of `file` as a `[rows, cols]` matrix (GGUF dims are `[cols, rows]`).
    pub fn new(file: &Arc<GgufFile>, info: &TensorInfo) -> Result<QWeight> {
        let dims = info.dims();
        let shape_err = || EngineError::TensorShape {
            name: info.name().to_owned(),
            expected: vec![info.row_len(), info.n_rows()],
            got: dims.to_vec(),
        };
        if dims.len() != 2 {
            return Err(shape_err());
        }
        let cols = usize::try_from(dims[0]).map_err(|_| shape_err())?;
        let rows = usize::try_from(dims[1]).map_err(|_| shape_err())?;
        let row_bytes = info.row_bytes();
        let range = info.range();
        if cols == 0
            || rows == 0
            || !cols.is_multiple_of(info.ggml_type().block_size())
            || rows.checked_mul(row_bytes) != Some(range.len())
            || file.bytes().get(range.clone()).is_none()
        {
            return Err(shape_err());
        }
        Ok(QWeight {
            file: Arc::clone(file),
            range,
            ty: info.ggml_type(),
            rows,
            cols,
            row_bytes,
            name: Arc::from(info.name()),
            q8_activations: true,
            interleaved: None,
        })
    }

    /// Adds a copy of the rows interleaved by sixteen where this CPU multiplies such rows
    /// faster (AVX-512 VNNI, a Q4_K, Q5_K, Q6_K, Q4_0 or Q8_0 matrix of a multiple of sixteen rows; otherwise
    /// unchanged), as llama.cpp repacks Q4_K at load: a decode step's products then run ~3×
    /// fewer instructions per weight and prompt tiles reuse each loaded weight vector across
    /// four tokens. The copy is the matrix's size (148 bytes per 144 for Q4_K, equal for
    /// Q6_K, Q4_0 and Q8_0); the original's mapped pages are released.
    pub fn with_interleaved_rows(mut self) -> QWeight {
        if self.interleaved.is_none() && Isa::detect() == Isa::Avx512Vnni {
            self.interleaved =
                Interleaved::repack(self.ty, self.bytes(), self.rows, self.cols).map(Arc::new);
            if self.interleaved.is_some() {
                // The products read the copy only: the original's pages need not stay resident
                // (a tied embedding's lookups fault their few rows back in).
                self.file.release_pages(self.range.clone());
            }
        }
        self
    }

    /// The rows interleaved by sixteen, where [`QWeight::with_interleaved_rows`] made them and
    /// activations are 8-bit (the interleaved kernels multiply those only).
    pub fn interleaved(&self) -> Option<&Interleaved> {
        self.interleaved
            .as_deref()
            .filter(|_| self.q8_activations())
    }

    /// Multiplies with f32 activations even where 8-bit activations apply (see
    /// [`QWeight::q8_activations`]).
    pub fn with_exact_activations(mut self, exact: bool) -> QWeight {
        self.q8_activations = !exact;
        self
    }

    /// True if activations are quantized to 8 bits before multiplying, as llama.cpp does (the
    /// default): per 32 values for Q4_0, Q4_1, Q8_0 weights, per 256 for Q4_K, Q5_K, Q6_K.
    /// Other types always use f32.
    pub fn q8_activations(&self) -> bool {
        self.q8_activations
            && (crate::kernels::q8::supports(self.ty) || crate::kernels::q8k::supports(self.ty))
    }

    /// The tensor's name in the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Encoding of the values.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (input features, values per row).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one encoded row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// All rows, encoded.
    pub fn bytes(&self) -> &[u8] {
        // INVARIANT: checked in `new`; the mapping lives as long as `self.file`.
        self.file
            .bytes()
            .get(self.range.clone())
            .unwrap_or_default()
    }

    /// Encoded bytes of row `r` (`None` past the last row).
    pub fn row(&self, r: usize) -> Option<&[u8]> {
        let start = r.checked_mul(self.row_bytes)?;
        self.bytes().get(start..start + self.row_bytes)
    }

    /// Row `r` decoded to f32 (embedding lookups), `None` past the last row.
    pub fn dequantize_row(&self, r: usize) -> Option<Vec<f32>> {
        let mut out = vec![0f32; self.cols];
        airlock_gguf::dequantize(self.ty, self.row(r)?, &mut out).ok()?;
        Some(out)
    }
}
