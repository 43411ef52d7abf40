//! Fused operations as burn backend extensions: RoPE, RMSNorm, f16 rounding and causal
//! attention.
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
use rayon::prelude::*;

/// Backends with fused RoPE and RMSNorm.
#[backend_extension(Flex)]
pub trait FusedOps: Backend {
    /// Rotates `x` (`[heads, n, head_dim]`, positions `start..start + n`) by the angles
    /// `pos · inv_freq[i]` on pairs `(2i, 2i + 1)`.
    fn rope(x: FloatTensor<Self>, start: usize, inv_freq: Arc<[f64]>) -> FloatTensor<Self>;
    /// `x / sqrt(mean(x²) + eps) * w` over the last axis of `x` (`[rows, d]`, `w`: `[d]`).
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// `x` rounded to f16 precision, kept f32 (llama.cpp's f16 KV cache).
    fn round_f16(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Causal grouped-query attention of `n` new tokens: `q` `[heads, n, hd]` at positions
    /// `start..start + n`, `k`/`v` `[kv_heads, start + n, hd]` (any strides) →
    /// `[n, heads * hd]`. Query head `h` uses key/value head `h / (heads / kv_heads)`.
    /// Chunk-invariant: a token's output is bitwise the same whatever `n` and `start` its
    /// chunk had (each query row is computed alone, in a fixed order).
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        start: usize,
    ) -> FloatTensor<Self>;
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

    fn round_f16(x: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let x = f32_contiguous(x);
        let mut out = x.as_slice::<f32>().unwrap_or_default().to_vec();
        crate::kernels::round_f16(&mut out);
        tensor(out, shape)
    }

    fn attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, start: usize) -> FlexTensor {
        let [heads, n, hd] = q.shape().dims::<3>();
        let [kvh, total, _] = k.shape().dims::<3>();
        let q = f32_contiguous(q);
        let qs = q.as_slice::<f32>().unwrap_or_default();
        let view = |t: &FlexTensor| {
            let l = t.layout();
            let st = l.strides();
            KvView {
                offset: l.start_offset(),
                head: st[0] as usize,
                pos: st[1] as usize,
                col: st[2] as usize,
            }
        };
        // Keys and values are read in place (the cache's narrowed views), with their strides.
        let (k, v) = (f32_contiguous_if_negative(k), f32_contiguous_if_negative(v));
        let shape = AttnShape {
            hd,
            group: (heads / kvh.max(1)).max(1),
            start,
            total,
        };
        let (kv, vv) = (view(&k), view(&v));
        let (ks, vs) = (k.storage::<f32>(), v.storage::<f32>());
        // One output row of `hd` values per (token, head): row `i * heads + h`.
        let mut out = vec![0f32; n * heads * hd];
        let row = |r: usize, o: &mut [f32], scores: &mut Vec<f32>| {
            let (i, h) = (r / heads, r % heads);
            attention_row(
                &shape,
                &qs[(h * n + i) * hd..][..hd],
                h,
                i,
                (ks, kv),
                (vs, vv),
                o,
                scores,
            );
        };
        // Pairs (query, key) of the causal triangle: decode steps (a few short rows) stay on
        // this thread; prompt chunks split their rows over rayon's pool. Every row is computed
        // by the same function either way, so the split never changes a value.
        let pairs = heads * (n * start + n * (n + 1) / 2);
        if pairs * hd < PARALLEL_MIN_WORK || hd == 0 {
            let mut scores = Vec::new();
            for (r, o) in out.chunks_exact_mut(hd.max(1)).enumerate() {
                row(r, o, &mut scores);
            }
        } else {
            out.par_chunks_exact_mut(hd)
                .enumerate()
                .for_each_init(Vec::new, |scores, (r, o)| row(r, o, scores));
        }
        tensor(out, Shape::new([n, heads * hd]))
    }
}

/// Multiply-adds below which attention runs on the calling thread (a decode step of a small
/// model: rayon's hand-off would cost more than the work).
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// Shape of one [`FusedOps::attention`] call.
struct AttnShape {
    hd: usize,
    group: usize,
    start: usize,
    total: usize,
}

/// Where a `[kv_heads, positions, head_dim]` view starts in its storage, and its strides.
#[derive(Clone, Copy)]
struct KvView {
    offset: usize,
    head: usize,
    pos: usize,
    col: usize,
}

/// Attention output of query token `i` (position `start + i`) of head `h`, `qv` its `hd`
/// query values, into `o` (`hd` values, zeroed). This is the definition of the op's value:
/// every query row, whether part of a one-token decode step or of a long prompt chunk, is
/// computed here by the same operations in the same order, so a token's output does not
/// depend on how its sequence was split into chunks (the prefix cache relies on it).
#[allow(clippy::too_many_arguments)]
fn attention_row(
    s: &AttnShape,
    qv: &[f32],
    h: usize,
    i: usize,
    (ks, kv): (&[f32], KvView),
    (vs, vv): (&[f32], KvView),
    o: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let hd = s.hd;
    let g = h / s.group;
    let scale = 1.0 / (hd as f32).sqrt();
    let len = (s.start + i + 1).min(s.total);
    scores.clear();
    scores.resize(len, 0.0);
    let mut max = f32::NEG_INFINITY;
    for (j, sc) in scores.iter_mut().enumerate() {
        let base = kv.offset + g * kv.head + j * kv.pos;
        let dot: f32 = if kv.col == 1 {
            crate::kernels::dot_f32(qv, &ks[base..base + hd])
        } else {
            (0..hd).map(|c| qv[c] * ks[base + c * kv.col]).sum()
        };
        *sc = dot * scale;
        max = max.max(*sc);
    }
    let mut z = 0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        z += *sc;
    }
    for (j, &p) in scores.iter().enumerate() {
        let p = p / z;
        let base = vv.offset + g * vv.head + j * vv.pos;
        if vv.col == 1 {
            // Same operations as the strided loop below (a multiply, then an add, per value).
            for (oc, &x) in o.iter_mut().zip(&vs[base..base + hd]) {
                *oc += p * x;
            }
        } else {
            for (c, oc) in o.iter_mut().enumerate() {
                *oc += p * vs[base + c * vv.col];
            }
        }
    }
}

/// `x` as f32 with non-negative strides (copied only if it had to be).
fn f32_contiguous_if_negative(x: FlexTensor) -> FlexTensor {
    if x.dtype() == DType::F32 && x.layout().strides().iter().all(|&s| s >= 0) {
        x
    } else {
        f32_contiguous(x)
    }
}

/// [`FusedOps::round_f16`] on a tensor.
pub fn round_f16(x: Tensor<3>) -> Tensor<3> {
    if !crate::device::has_fused_ops(&x.device()) {
        return crate::fallback::round_f16(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::round_f16(x.into_dispatch()))
}

/// [`FusedOps::attention`] on tensors. Only on backends with fused ops
/// ([`crate::device::has_fused_ops`]): attention's caller takes its tensor-op path elsewhere.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, start: usize) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        start,
    ))
}

/// [`FusedOps::rope`] on a tensor.
pub fn rope(x: Tensor<3>, start: usize, inv_freq: &Arc<[f64]>) -> Tensor<3> {
    if !crate::device::has_fused_ops(&x.device()) {
        return crate::fallback::rope(x, start, inv_freq);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::rope(
        x.into_dispatch(),
        start,
        Arc::clone(inv_freq),
    ))
}

/// [`FusedOps::rms_norm`] on a tensor.
pub fn rms_norm(x: Tensor<2>, w: Tensor<1>, eps: f64) -> Tensor<2> {
    if !crate::device::has_fused_ops(&x.device()) {
        return crate::fallback::rms_norm(x, w, eps);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::rms_norm(
        x.into_dispatch(),
        w.into_dispatch(),
        eps,
    ))
}
