//! Fused operations as burn backend extensions: RoPE, RMSNorm, SwiGLU, attention.
//!
//! Written with burn's tensor operations each takes 6–12 small kernels and as many
//! allocations per layer and token, which dominates a decode step of a small model (≈ 1500
//! tiny ops per token for SmolLM2-135M). Flex implements each in one pass here, with
//! llama.cpp's arithmetic to the last bit (`ggml_compute_forward_rms_norm_f32`: f64 sum of
//! squares, f32 mean and root; RoPE, SwiGLU and attention: see `kernels::ggml`), which the
//! fidelity test checks against its logits.

use std::sync::Arc;

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Backend, Bytes, DType, Dispatch, Flex, Shape, TensorMetadata, backend_extension,
};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::kernels::ggml::{Scratch, attend};
use crate::model::rope::RopeFreqs;

/// Backends with fused RoPE and RMSNorm.
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait FusedOps: Backend {
    /// Rotates `x` (`[heads, n, head_dim]`, positions `start..start + n`) by the angles of
    /// `freqs` on pairs `(2i, 2i + 1)`.
    fn rope(x: FloatTensor<Self>, start: usize, freqs: Arc<RopeFreqs>) -> FloatTensor<Self>;
    /// `x / sqrt(mean(x²) + eps) * w` over the last axis of `x` (`[rows, d]`, `w`: `[d]`).
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// `x` rounded to f16 precision, kept f32 (llama.cpp's f16 KV cache).
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `silu(x[:, ..d]) · x[:, d..]` for `x` `[rows, 2d]` (gate and up side by side) → `[rows, d]`.
    fn swiglu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Causal grouped-query attention of a few new tokens (decode): `q` `[heads, n, hd]` at
    /// positions `start..start + n`, `k`/`v` `[kv_heads, start + n, hd]` (any strides) →
    /// `[n, heads * hd]`. Query head `h` uses key/value head `h / (heads / kv_heads)`.
    /// With `f16_weights` the softmax weights are rounded to f16 before multiplying the
    /// values, as llama.cpp's product with its f16 value cache does.
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        start: usize,
        f16_weights: bool,
    ) -> FloatTensor<Self>;
}

/// Up to this many tokens attention and SwiGLU run on the calling thread (decode steps).
const PARALLEL_MIN_TOKENS: usize = 4;

/// `x` as a contiguous f32 tensor (a no-op for what the model passes: contiguous f32).
pub(crate) fn f32_contiguous(x: FlexTensor) -> FlexTensor {
    let x = if x.dtype() == DType::F32 {
        x
    } else {
        Flex::float_cast(x, burn::backend::FloatDType::F32)
    };
    x.to_contiguous()
}

/// A contiguous f32 flex tensor of `shape` holding `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

impl FusedOps for Flex {
    fn rope(x: FlexTensor, start: usize, freqs: Arc<RopeFreqs>) -> FlexTensor {
        let shape = x.shape();
        let [_, n, hd] = shape.dims::<3>();
        let half = hd / 2;
        let x = f32_contiguous(x);
        let xs = x.as_slice::<f32>().unwrap_or_default();
        // [n, half] angles, shared by all heads.
        let mut cs = Vec::with_capacity(n * half);
        freqs.angles(start, n, &mut cs);
        let mut out = vec![0f32; xs.len()];
        let neox = freqs.style == crate::model::rope::RopeStyle::Neox;
        // NEOX: pair i is (i, i + half); interleave each row into adjacent pairs, rotate with
        // the same kernel (the same arithmetic per pair), and split back. Copies are exact.
        let (mut pin, mut pout) = if neox {
            (vec![0f32; hd], vec![0f32; hd])
        } else {
            (Vec::new(), Vec::new())
        };
        for (xo, xi) in out.chunks_exact_mut(n * hd).zip(xs.chunks_exact(n * hd)) {
            for (t, (yo, yi)) in xo.chunks_exact_mut(hd).zip(xi.chunks_exact(hd)).enumerate() {
                let cs = &cs[t * half..(t + 1) * half];
                if !neox {
                    crate::kernels::ggml::rotate_pairs(yi, cs, yo);
                    continue;
                }
                for i in 0..half {
                    pin[2 * i] = yi[i];
                    pin[2 * i + 1] = yi[i + half];
                }
                crate::kernels::ggml::rotate_pairs(&pin, cs, &mut pout);
                for i in 0..half {
                    yo[i] = pout[2 * i];
                    yo[i + half] = pout[2 * i + 1];
                }
            }
        }
        tensor(out, shape)
    }

    fn rms_norm(x: FlexTensor, w: FlexTensor, eps: f64) -> FlexTensor {
        let shape = x.shape();
        let x = f32_contiguous(x);
        let w = f32_contiguous(w);
        let (xs, ws) = (
            x.as_slice::<f32>().unwrap_or_default(),
            w.as_slice::<f32>().unwrap_or_default(),
        );
        let mut out = vec![0f32; xs.len()];
        rms_norm_rows(xs, ws, eps, &mut out);
        tensor(out, shape)
    }

    fn round_f16(x: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let x = f32_contiguous(x);
        let mut out = x.as_slice::<f32>().unwrap_or_default().to_vec();
        crate::kernels::round_f16(&mut out);
        tensor(out, shape)
    }

    fn swiglu(x: FlexTensor) -> FlexTensor {
        let [rows, two_d] = x.shape().dims::<2>();
        let d = two_d / 2;
        let x = f32_contiguous(x);
        let xs = x.as_slice::<f32>().unwrap_or_default();
        let mut out = vec![0f32; rows * d];
        let row = |(o, r): (&mut [f32], &[f32])| {
            let (gate, up) = r.split_at(d);
            crate::kernels::ggml::swiglu(gate, up, o);
        };
        if rows <= PARALLEL_MIN_TOKENS {
            out.chunks_exact_mut(d)
                .zip(xs.chunks_exact(two_d))
                .for_each(row);
        } else {
            out.par_chunks_exact_mut(d)
                .zip(xs.par_chunks_exact(two_d))
                .for_each(row);
        }
        tensor(out, Shape::new([rows, d]))
    }

    fn attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        start: usize,
        f16_weights: bool,
    ) -> FlexTensor {
        let [heads, n, hd] = q.shape().dims::<3>();
        let [kvh, total, _] = k.shape().dims::<3>();
        let group = heads / kvh.max(1);
        let scale = 1.0 / (hd as f32).sqrt();
        let q = f32_contiguous(q);
        let qs = q.as_slice::<f32>().unwrap_or_default();
        let view = |t: &FlexTensor| {
            let l = t.layout();
            let st = l.strides();
            (
                l.start_offset(),
                st[0] as usize,
                st[1] as usize,
                st[2] as usize,
            )
        };
        // Keys and values are read in place (the cache's narrowed views), with their strides;
        // the kernel wants each position's channels adjacent.
        let (k, v) = (f32_channels_adjacent(k), f32_channels_adjacent(v));
        let (ko, k0, k1, _) = view(&k);
        let (vo, v0, v1, _) = view(&v);
        let (ks, vs) = (k.storage::<f32>(), v.storage::<f32>());
        let mut out = vec![0f32; n * heads * hd];
        // Row `i * heads + h` of `out` is token `i`, query head `h`; each row is computed on
        // its own (the same arithmetic whatever `n`), so rows can go to any thread.
        let row = |scratch: &mut Scratch, (r, o): (usize, &mut [f32])| {
            let (i, h) = (r / heads, r % heads);
            let g = h / group.max(1);
            attend(
                &qs[(h * n + i) * hd..(h * n + i + 1) * hd],
                (&ks[ko + g * k0..], k1),
                (&vs[vo + g * v0..], v1),
                (start + i + 1).min(total),
                scale,
                f16_weights,
                scratch,
                o,
            );
        };
        if n <= PARALLEL_MIN_TOKENS {
            let mut scratch = Scratch::default();
            out.chunks_mut(hd)
                .enumerate()
                .for_each(|r| row(&mut scratch, r));
        } else {
            out.par_chunks_mut(hd)
                .enumerate()
                .for_each_init(Scratch::default, row);
        }
        tensor(out, Shape::new([n, heads * hd]))
    }
}

/// [`FusedOps::rms_norm`] on rows of `w.len()` values: `out` row `i` is row `i` of `xs`
/// normalised and scaled by `w`.
pub(crate) fn rms_norm_rows(xs: &[f32], w: &[f32], eps: f64, out: &mut [f32]) {
    let d = w.len().max(1);
    for (o, r) in out.chunks_exact_mut(d).zip(xs.chunks_exact(d)) {
        // As ggml: f64 sum of f32 squares, then f32 mean, `eps` and square root.
        let sum: f64 = r.iter().map(|&v| f64::from(v * v)).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps as f32).sqrt();
        for ((o, &v), &g) in o.iter_mut().zip(r).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// `x` as f32 with non-negative strides and unit channel stride (copied only if it had to be).
fn f32_channels_adjacent(x: FlexTensor) -> FlexTensor {
    let st = x.layout().strides();
    if x.dtype() == DType::F32 && st.iter().all(|&s| s >= 0) && st.last() == Some(&1) {
        x
    } else {
        f32_contiguous(x)
    }
}

/// [`FusedOps::round_f16`] on a tensor, on any device ([`crate::ops::F16Rounding`]).
pub fn round_f16(x: Tensor<3>) -> Tensor<3> {
    crate::ops::round_f16(x)
}

/// [`FusedOps::swiglu`] on a tensor.
pub fn swiglu(x: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::swiglu(x.into_dispatch()))
}

/// [`FusedOps::attention`] on tensors.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    start: usize,
    f16_weights: bool,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        start,
        f16_weights,
    ))
}

/// [`FusedOps::rope`] on a tensor.
pub fn rope(x: Tensor<3>, start: usize, freqs: &Arc<RopeFreqs>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::rope(
        x.into_dispatch(),
        start,
        Arc::clone(freqs),
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
