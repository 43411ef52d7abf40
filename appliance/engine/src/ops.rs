//! The quantized matrix product as a burn backend extension.
//!
//! [`QuantizedMatmul::q_matmul`] is declared with `#[backend_extension(Flex)]`: burn generates
//! the routing from its runtime-dispatched `Tensor` to the backend that holds the activation,
//! and [`Flex`] (burn's pure-Rust CPU backend) implements it with this crate's kernels:
//! * Q4_0/Q4_1/Q8_0 and K-quant (Q4_K/Q5_K/Q6_K) weights, or few activation rows (decode):
//!   [`kernels::matmul_rows`], weights decoded in registers, with 8-bit activations for those
//!   types as llama.cpp (per 32 values for Q4_0/Q4_1/Q8_0, per 256 for K-quants);
//! * many rows (prompt processing) of other types (F16/BF16/F32, or exact activations): bands
//!   of ≈ 4 M weights decoded to f32 in turn and multiplied with flex's GEMM, so the transient
//!   f32 copy stays small (≤ 16 MiB) and weights stay quantized at rest.
//!
//! Token invariance (a token's output row bitwise the same whether it was multiplied alone or
//! with other tokens, which "batched equals solo" and the exactness of the prefix cache rely
//! on) holds on the 8-bit-activation path (Q4_0/Q4_1/Q8_0 and K-quant weights: the default
//! model and the Q4_K_M/Q5_K_M/Q6_K files most models are published in): it never takes the
//! GEMM, and its multi-token kernels repeat the one-token kernel's operations per pair. The
//! GEMM path (F16/BF16/F32, exact activations) is not token-invariant (its blocking makes a
//! row's summation order depend on the row count): results then agree with one-token products
//! up to f32 rounding only.
//!
//! With the `wgpu` or `cuda` feature, burn's cube backend implements it too (`cube/`: CubeCL
//! kernels decoding every GGUF type on the device, weights uploaded once as raw blocks); the
//! model code does not change.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Backend, Bytes, DType, Dispatch, Flex, Shape, TensorMetadata, backend_extension,
};
use burn::tensor::Tensor;

use crate::kernels;
use crate::qweight::QWeight;

/// From this many activation rows on, bands are decoded and multiplied with GEMM.
pub const GEMM_MIN_ROWS: usize = 8;

/// Weights decoded per band in the GEMM path (f32 values).
const BAND_VALUES: usize = 4 << 20;

/// Backends that multiply activations by a [`QWeight`] without decoding it at load.
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait QuantizedMatmul: Backend {
    /// `x · [W_1; W_2; …]ᵀ`: `x` is `[n, cols]` f32; the result `[n, Σ rows]` holds each
    /// matrix's outputs side by side (one call for q|k|v or gate|up).
    fn q_matmul(x: FloatTensor<Self>, ws: Vec<QWeight>) -> FloatTensor<Self>;
}

impl QuantizedMatmul for Flex {
    fn q_matmul(x: FlexTensor, ws: Vec<QWeight>) -> FlexTensor {
        let dims = x.shape().dims::<2>();
        let n = dims[0];
        let x = crate::fused::f32_contiguous(x);
        // INVARIANT: contiguous f32 of n * cols values.
        let xs = x.as_slice::<f32>().unwrap_or_default();
        let refs: Vec<&QWeight> = ws.iter().collect();
        let out = q_matmul_f32(xs, n, &refs);
        let rows = out.len() / n.max(1);
        crate::fused::tensor(out, Shape::new([n, rows]))
    }
}

/// [`QuantizedMatmul::q_matmul`] on flex, on plain slices: `xs` is `[n, cols]` row-major;
/// returns `[n, Σ rows]`.
///
/// # Panics
/// If a matrix's width is not `cols` or `xs` is not `n` rows (caller bugs: shapes are fixed
/// by the model's configuration).
pub(crate) fn q_matmul_f32(xs: &[f32], n: usize, ws: &[&QWeight]) -> Vec<f32> {
    let cols = ws.first().map_or(0, |w| w.cols());
    let rows: usize = ws.iter().map(|w| w.rows()).sum();
    for w in ws {
        assert_eq!(cols, w.cols(), "q_matmul: activation width vs {}", w.name());
    }
    assert_eq!(xs.len(), n * cols, "q_matmul: activation length");
    let mut out = vec![0f32; n * rows];
    if kernels::can_fuse(ws) && (n < GEMM_MIN_ROWS || ws[0].q8_activations()) {
        kernels::matmul_rows_multi(ws, xs, n, &mut out);
    } else {
        let mut col0 = 0;
        for w in ws {
            let part = gemm_bands(xs, w, n);
            let wr = w.rows();
            for (t, prow) in part.chunks_exact(wr).enumerate() {
                out[t * rows + col0..t * rows + col0 + wr].copy_from_slice(prow);
            }
            col0 += wr;
        }
    }
    out
}

/// One matrix: the decode kernel for few rows or 8-bit activations, else bands of decoded
/// weights through flex's GEMM. Returns `[n, w.rows()]`.
fn gemm_bands(xs: &[f32], w: &QWeight, n: usize) -> Vec<f32> {
    let (rows, cols) = (w.rows(), w.cols());
    let mut out = vec![0f32; n * rows];
    if n < GEMM_MIN_ROWS || w.q8_activations() {
        kernels::matmul_rows(w, xs, n, &mut out);
        return out;
    }
    let x = FlexTensor::new(
        Bytes::from_elems(xs.to_vec()),
        Layout::contiguous(Shape::new([n, cols])),
        DType::F32,
    );
    let band = (BAND_VALUES / cols).clamp(1, rows);
    let mut start = 0;
    while start < rows {
        let len = band.min(rows - start);
        let mut buf = vec![0f32; len * cols];
        kernels::dequantize_rows(w, start, &mut buf);
        let wt = FlexTensor::new(
            Bytes::from_elems(buf),
            Layout::contiguous(Shape::new([len, cols])),
            DType::F32,
        )
        .transpose(0, 1);
        // [n, cols] x [cols, len] -> [n, len]
        let y = Flex::float_matmul(x.clone(), wt).to_contiguous();
        let ys = y.as_slice::<f32>().unwrap_or_default();
        for (t, yrow) in ys.chunks_exact(len).enumerate() {
            out[t * rows + start..t * rows + start + len].copy_from_slice(yrow);
        }
        start += len;
    }
    out
}

/// Backends that round values to f16 precision on their own device (the KV cache's precision,
/// as llama.cpp's f16 cache), without a round trip through the host.
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait F16Rounding: Backend {
    /// `x` rounded to the nearest f16 (ties to even), kept f32.
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl F16Rounding for Flex {
    fn round_f16(x: FlexTensor) -> FlexTensor {
        <Flex as crate::fused::FusedOps>::round_f16(x)
    }
}

/// [`F16Rounding::round_f16`] on any device.
pub fn round_f16<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as F16Rounding>::round_f16(x.into_dispatch()))
}

/// `x · Wᵀ` for a `[n, cols]` activation on any device whose backend implements
/// [`QuantizedMatmul`]; returns `[n, rows]`.
pub fn q_linear(x: Tensor<2>, w: &QWeight) -> Tensor<2> {
    q_linear_multi(x, &[w])
}

/// Several matrices over the same activation: `[n, Σ rows]`, outputs side by side.
pub fn q_linear_multi(x: Tensor<2>, ws: &[&QWeight]) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as QuantizedMatmul>::q_matmul(
        x.into_dispatch(),
        ws.iter().map(|&w| w.clone()).collect(),
    ))
}
