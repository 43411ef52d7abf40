//! Fused element-wise operations as burn backend extensions: RoPE and RMSNorm.
//!
//! Written with burn's tensor operations each takes 6–12 small kernels and as many
//! allocations per layer and token, which dominates a decode step of a small model (≈ 1500
//! tiny ops per token for SmolLM2-135M). Flex implements each in one pass here; the
//! arithmetic follows llama.cpp (`ggml_compute_forward_rms_norm_f32`: f64 sum of squares;
//! `rope_yarn` with no YaRN: `θ = pos · inv_freq`, f32 rotation of adjacent pairs).

use std::sync::Arc;

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Backend, Bytes, DType, Dispatch, Flex, Shape, TensorMetadata, backend_extension,
};
use burn::tensor::Tensor;

/// Backends with fused RoPE and RMSNorm.
#[backend_extension(Flex)]
pub trait FusedOps: Backend {
    /// Rotates `x` (`[heads, n, head_dim]`, positions `start..start + n`) by the angles
    /// `pos · inv_freq[i]` on pairs `(2i, 2i + 1)`.
    fn rope(x: FloatTensor<Self>, start: usize, inv_freq: Arc<[f64]>) -> FloatTensor<Self>;
    /// `x / sqrt(mean(x²) + eps) * w` over the last axis of `x` (`[rows, d]`, `w`: `[d]`).
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
}

fn f32_contiguous(x: FlexTensor) -> FlexTensor {
    let x = if x.dtype() == DType::F32 {
        x
    } else {
        Flex::float_cast(x, burn::backend::FloatDType::F32)
    };
    x.to_contiguous()
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

impl FusedOps for Flex {
    fn rope(x: FlexTensor, start: usize, inv_freq: Arc<[f64]>) -> FlexTensor {
        let shape = x.shape();
        let [_, n, hd] = shape.dims::<3>();
        let half = hd / 2;
        let x = f32_contiguous(x);
        let xs = x.as_slice::<f32>().unwrap_or_default();
        // [n, half] angles, shared by all heads.
        let mut cs = Vec::with_capacity(n * half);
        for p in start..start + n {
            for &f in inv_freq.iter().take(half) {
                let (s, c) = (p as f64 * f).sin_cos();
                cs.push((c as f32, s as f32));
            }
        }
        let mut out = vec![0f32; xs.len()];
        for (xo, xi) in out.chunks_exact_mut(n * hd).zip(xs.chunks_exact(n * hd)) {
            for (t, (yo, yi)) in xo.chunks_exact_mut(hd).zip(xi.chunks_exact(hd)).enumerate() {
                for (&(c, s), (o, v)) in cs[t * half..(t + 1) * half]
                    .iter()
                    .zip(yo.chunks_exact_mut(2).zip(yi.chunks_exact(2)))
                {
                    o[0] = v[0] * c - v[1] * s;
                    o[1] = v[0] * s + v[1] * c;
                }
            }
        }
        tensor(out, shape)
    }

    fn rms_norm(x: FlexTensor, w: FlexTensor, eps: f64) -> FlexTensor {
        let shape = x.shape();
        let d = shape.dims::<2>()[1];
        let x = f32_contiguous(x);
        let w = f32_contiguous(w);
        let (xs, ws) = (
            x.as_slice::<f32>().unwrap_or_default(),
            w.as_slice::<f32>().unwrap_or_default(),
        );
        let mut out = vec![0f32; xs.len()];
        for (o, r) in out.chunks_exact_mut(d).zip(xs.chunks_exact(d)) {
            let sum: f64 = r.iter().map(|&v| f64::from(v * v)).sum();
            let scale = (1.0 / (sum / d as f64 + eps).sqrt()) as f32;
            for ((o, &v), &g) in o.iter_mut().zip(r).zip(ws) {
                *o = v * scale * g;
            }
        }
        tensor(out, shape)
    }
}

/// [`FusedOps::rope`] on a tensor.
pub fn rope(x: Tensor<3>, start: usize, inv_freq: &Arc<[f64]>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::rope(
        x.into_dispatch(),
        start,
        Arc::clone(inv_freq),
    ))
}

/// [`FusedOps::rms_norm`] on a tensor.
pub fn rms_norm(x: Tensor<2>, w: Tensor<1>, eps: f64) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::rms_norm(
        x.into_dispatch(),
        w.into_dispatch(),
        eps,
    ))
}
