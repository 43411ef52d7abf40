//! The feed-forward half of a block as one backend-extension op: residual add, RMSNorm,
//! gate|up product, SwiGLU, down product, residual add.
//!
//! As burn tensor operations this half is six ops per layer (add, norm, product, SwiGLU,
//! product, add), each allocating its output and dispatched through burn; for one token a few
//! microseconds apiece. On flex it is one pass
//! over plain slices here. The arithmetic is exactly that of the ops it replaces
//! ([`crate::fused::FusedOps::rms_norm`], [`crate::ops::q_matmul_f32`],
//! [`crate::fused::FusedOps::swiglu`]), so results are bitwise those of the unfused path, and each token's row depends only on that token (the products give a token
//! the same result whatever the number of tokens, see [`crate::kernels`]).
//!
//! On the cube GPU backends it is four launches (`cube/fused_ops.rs`).

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::fused::{f32_contiguous, rms_norm_rows, tensor};
use crate::ops::q_matmul_f32;
use crate::qweight::QWeight;

/// Backends with the fused feed-forward half.
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait FfnOps: Backend {
    /// `x + a` plus the SwiGLU feed-forward block of it: with `h = x + a` (`[n, d]`) and
    /// `z = rms_norm(h, norm_w, eps)`, returns `h + down(silu(gate(z)) · up(z))`;
    /// `ws` is `[gate, up, down]`.
    fn ffn_residual(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        norm_w: FloatTensor<Self>,
        eps: f64,
        ws: Vec<QWeight>,
    ) -> FloatTensor<Self>;
}

impl FfnOps for Flex {
    fn ffn_residual(
        x: FlexTensor,
        a: FlexTensor,
        norm_w: FlexTensor,
        eps: f64,
        ws: Vec<QWeight>,
    ) -> FlexTensor {
        let shape = x.shape();
        let [n, d] = shape.dims::<2>();
        let (x, a, w) = (f32_contiguous(x), f32_contiguous(a), f32_contiguous(norm_w));
        // INVARIANT: contiguous f32 tensors of the shapes the model gives (`[n, d]` twice,
        // `[d]`); `ws` is gate, up and down of one layer (the caller, `Mlp`, builds it).
        let (xs, as_, wn) = (
            x.as_slice::<f32>().unwrap_or_default(),
            a.as_slice::<f32>().unwrap_or_default(),
            w.as_slice::<f32>().unwrap_or_default(),
        );
        let [gate, up, down] = [&ws[0], &ws[1], &ws[2]];
        let d_ff = gate.rows();
        // [n, d]
        let h: Vec<f32> = xs.iter().zip(as_).map(|(&x, &a)| x + a).collect();
        let mut z = vec![0f32; n * d];
        rms_norm_rows(&h, wn, eps, &mut z);
        // [n, 2 d_ff]: gate and up side by side.
        let gu = q_matmul_f32(&z, n, &[gate, up]);
        // [n, d_ff]
        // Token rows in parallel (a prompt chunk has ~10⁵ exponentials per layer; burn's
        // element-wise ops were parallel too); one token stays on this thread.
        let mut m = vec![0f32; n * d_ff];
        m.par_chunks_exact_mut(d_ff)
            .zip(gu.par_chunks_exact(2 * d_ff))
            .for_each(|(mr, gur)| {
                let (g, u) = gur.split_at(d_ff);
                crate::kernels::ggml::swiglu(g, u, mr);
            });
        // [n, d]
        let mut y = q_matmul_f32(&m, n, &[down]);
        for (y, &h) in y.iter_mut().zip(&h) {
            *y += h;
        }
        tensor(y, shape)
    }
}

/// [`FfnOps::ffn_residual`] on tensors.
pub fn ffn_residual(
    x: Tensor<2>,
    a: Tensor<2>,
    norm_w: Tensor<1>,
    eps: f64,
    ws: [&QWeight; 3],
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FfnOps>::ffn_residual(
        x.into_dispatch(),
        a.into_dispatch(),
        norm_w.into_dispatch(),
        eps,
        ws.iter().map(|&w| w.clone()).collect(),
    ))
}
