//! The quantized matrix product as a burn backend extension.
//!
//! [`QuantizedMatmul::q_matmul`] is declared with `#[backend_extension(Flex)]`: burn generates
//! the routing from its runtime-dispatched `Tensor` to the backend that holds the activation,
//! and [`Flex`] (burn's pure-Rust CPU backend) implements it with this crate's kernels
//! ([`kernels::matmul_rows_multi`]): weights decoded in registers (with 8-bit activations for
//! Q4_0/Q4_1/Q8_0, as llama.cpp), register tiles of 4 rows × 4 tokens for prompts.
//!
//! Token-invariant: each token's output row is bitwise the same whether it was multiplied
//! alone (a decode step) or with any number of other tokens (a prompt chunk, a batch), which
//! "batched equals solo" and the prefix cache rely on. That is why prompts do not go through
//! a GEMM on decoded bands (faster for K-quant and dense weights, but its blocking makes a
//! row's summation order depend on the row count).
//!
//! With the `wgpu` or `cuda` feature, burn's cube backend implements it too (`cube.rs`: a
//! CubeCL kernel decoding Q4_0/Q4_1/Q8_0 in the product, weights uploaded once as raw
//! blocks); the model code does not change.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Backend, Bytes, DType, Dispatch, Flex, Shape, TensorMetadata, backend_extension,
};
use burn::tensor::Tensor;

use crate::kernels;
use crate::qweight::QWeight;

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
        let (n, cols) = (dims[0], dims[1]);
        let rows: usize = ws.iter().map(QWeight::rows).sum();
        for w in &ws {
            assert_eq!(cols, w.cols(), "q_matmul: activation width vs {}", w.name());
        }
        let x = if x.dtype() == DType::F32 {
            x
        } else {
            Flex::float_cast(x, burn::backend::FloatDType::F32)
        };
        let x = x.to_contiguous();
        // INVARIANT: contiguous f32 of n * cols values (shape checked above).
        let xs = x.as_slice::<f32>().unwrap_or_default();
        let refs: Vec<&QWeight> = ws.iter().collect();
        let mut out = vec![0f32; n * rows];
        if kernels::can_fuse(&refs) {
            kernels::matmul_rows_multi(&refs, xs, n, &mut out);
        } else {
            let mut col0 = 0;
            for w in &ws {
                let wr = w.rows();
                let mut part = vec![0f32; n * wr];
                kernels::matmul_rows(w, xs, n, &mut part);
                for (t, prow) in part.chunks_exact(wr).enumerate() {
                    out[t * rows + col0..t * rows + col0 + wr].copy_from_slice(prow);
                }
                col0 += wr;
            }
        }
        FlexTensor::new(
            Bytes::from_elems(out),
            Layout::contiguous(Shape::new([n, rows])),
            DType::F32,
        )
    }
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
