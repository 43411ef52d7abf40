//! [`FusedOps`] and [`FfnOps`] on burn's cube backend: each op one launch of a `cube/fused.rs`
//! kernel (the feed-forward half: add + norm, the gate|up product, SwiGLU, the down product
//! with the residual added in its kernel), so the model's fused path runs on the GPU as it
//! does on flex.

use std::sync::{Arc, Mutex, PoisonError};

use burn::backend::ops::FloatTensorOps;
use burn::backend::{Cube, DType, Shape, TensorMetadata};
use burn_cubecl::CubeDevice;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::fused::{
    ROW_THREADS, add_rms_norm_kernel, attention_kernel, rms_norm_kernel, rope_kernel, swiglu_kernel,
};
use super::{
    Acts, MATVEC_TOKENS, elementwise, empty_like, f32_contiguous, layout, matvec_into, q8_block,
    quantized,
};
use crate::fused::FusedOps;
use crate::fused_ffn::FfnOps;
use crate::model::rope::{RopeFreqs, RopeStyle};
use crate::ops::{F16Rounding, QuantizedMatmul};
use crate::qweight::QWeight;

/// The RoPE angles of the last forward pass's positions on the device: every layer rotates
/// queries and keys at the same positions, so one upload serves them all.
struct Angles {
    key: (CubeDevice, usize, usize, usize),
    table: CubeTensor,
}

static ANGLES: Mutex<Option<Angles>> = Mutex::new(None);

/// `(cos, sin)` of `freqs` at positions `start..start + n` as a device tensor `[n, half, 2]`.
fn angles(x: &CubeTensor, start: usize, n: usize, freqs: &Arc<RopeFreqs>) -> CubeTensor {
    let key = (x.device.clone(), Arc::as_ptr(freqs) as usize, start, n);
    let mut guard = ANGLES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(a) = guard.as_ref().filter(|a| a.key == key) {
        return a.table.clone();
    }
    let mut cs = Vec::with_capacity(n * freqs.half);
    freqs.angles(start, n, &mut cs);
    let bytes: Vec<u8> = cs
        .iter()
        .flat_map(|&(c, s)| c.to_le_bytes().into_iter().chain(s.to_le_bytes()))
        .collect();
    let table = CubeTensor::new_contiguous(
        x.client.clone(),
        x.device.clone(),
        Shape::new([n, freqs.half, 2]),
        x.client.create_from_slice(&bytes),
        DType::F32,
    );
    *guard = Some(Angles {
        key,
        table: table.clone(),
    });
    table
}

/// One cube of [`ROW_THREADS`] units per row of `rows`.
fn per_row(rows: usize) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static(u32::try_from(rows).expect("rows fit a grid"), 1, 1),
        CubeDim::new_1d(ROW_THREADS),
    )
}

/// `k`/`v` (`[kv_heads, len, hd]`) as the attention kernel reads them: rows of `hd` values,
/// heads `stride` apart (the cache's narrowed view as it is, anything else made contiguous).
fn kv_rows(t: CubeTensor) -> (CubeTensor, usize) {
    let [_, len, hd] = t.shape().dims::<3>();
    let strides = t.meta.strides().to_vec();
    if t.dtype == DType::F32 && strides.len() == 3 && strides[2] == 1 && strides[1] == hd {
        let stride = strides[0];
        (t, stride)
    } else {
        (f32_contiguous(t), len * hd)
    }
}

impl FusedOps for Cube {
    fn rope(x: CubeTensor, start: usize, freqs: Arc<RopeFreqs>) -> CubeTensor {
        let x = f32_contiguous(x);
        let [heads, n, hd] = x.shape().dims::<3>();
        let table = angles(&x, start, n, &freqs);
        let out = empty_like(&x, x.shape());
        let (count, dim) = elementwise(&x, heads * n * (hd / 2));
        rope_kernel::launch(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            table.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            heads,
            n,
            hd,
            freqs.style == RopeStyle::Neox,
        );
        out
    }

    fn rms_norm(x: CubeTensor, w: CubeTensor, eps: f64) -> CubeTensor {
        let (x, w) = (f32_contiguous(x), f32_contiguous(w));
        let [rows, d] = x.shape().dims::<2>();
        let out = empty_like(&x, x.shape());
        let (count, dim) = per_row(rows);
        rms_norm_kernel::launch(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            w.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            d,
            eps as f32,
        );
        out
    }

    fn round_f16(x: CubeTensor) -> CubeTensor {
        <Cube as F16Rounding>::round_f16(x)
    }

    fn swiglu(x: CubeTensor) -> CubeTensor {
        let x = f32_contiguous(x);
        let [rows, two_d] = x.shape().dims::<2>();
        let d = two_d / 2;
        let out = empty_like(&x, Shape::new([rows, d]));
        let (count, dim) = elementwise(&x, rows * d);
        swiglu_kernel::launch(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            rows,
            d,
        );
        out
    }

    fn attention(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        start: usize,
        f16_weights: bool,
    ) -> CubeTensor {
        let q = f32_contiguous(q);
        let [heads, n, hd] = q.shape().dims::<3>();
        let kv_heads = k.shape().dims::<3>()[0];
        assert!(
            hd <= 2 * ROW_THREADS as usize,
            "attention: head size {hd} above {}",
            2 * ROW_THREADS
        );
        let (k, ks) = kv_rows(k);
        let (v, vs) = kv_rows(v);
        // One stride for both (the cache's views share one); else both copied dense.
        let (k, v, stride) = if ks == vs {
            (k, v, ks)
        } else {
            let [_, len, _] = k.shape().dims::<3>();
            // A fresh buffer each (never one bound twice); burn's output may be pitched on
            // CUDA, so packed again.
            let dense = |t: CubeTensor| {
                f32_contiguous(Cube::float_add_scalar(f32_contiguous(t), 0.0.into()))
            };
            (dense(k), dense(v), len * hd)
        };
        let out = empty_like(&q, Shape::new([n, heads * hd]));
        attention_kernel::launch(
            &q.client,
            CubeCount::Static(
                u32::try_from(heads).expect("heads fit a grid"),
                u32::try_from(n).expect("tokens fit a grid"),
                1,
            ),
            CubeDim::new_1d(ROW_THREADS),
            q.clone().into_buffer_arg(),
            k.into_buffer_arg(),
            v.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            heads,
            kv_heads,
            n,
            hd,
            start,
            stride,
            (1.0 / (hd as f64).sqrt()) as f32,
            f16_weights,
        );
        out
    }
}

impl FfnOps for Cube {
    fn ffn_residual(
        x: CubeTensor,
        a: CubeTensor,
        norm_w: CubeTensor,
        eps: f64,
        ws: Vec<QWeight>,
    ) -> CubeTensor {
        let (x, a, w) = (f32_contiguous(x), f32_contiguous(a), f32_contiguous(norm_w));
        let [n, d] = x.shape().dims::<2>();
        let h = empty_like(&x, x.shape());
        let z = empty_like(&x, x.shape());
        let (count, dim) = per_row(n);
        add_rms_norm_kernel::launch(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            a.into_buffer_arg(),
            w.into_buffer_arg(),
            h.clone().into_buffer_arg(),
            z.clone().into_buffer_arg(),
            d,
            eps as f32,
        );
        let [gate, up, down] = [&ws[0], &ws[1], &ws[2]];
        let gu = Cube::q_matmul(z, vec![gate.clone(), up.clone()]);
        let m = <Cube as FusedOps>::swiglu(gu);
        match layout(down.ggml_type(), down.cols()) {
            Some(kind) if n <= MATVEC_TOKENS || q8_block([down]).is_some() => {
                // h + m · downᵀ in the product's own kernel.
                let out = empty_like(&h, h.shape());
                let q8 = quantized(&m, m.shape().num_elements(), std::slice::from_ref(down));
                let acts = Acts {
                    x: &m,
                    q8: q8.as_ref().map(|(q, d)| (q, d)),
                };
                matvec_into(&acts, down, kind, n, &out, d, 0, Some(&h));
                out
            }
            _ => Cube::float_add(h, Cube::q_matmul(m, vec![down.clone()])),
        }
    }
}
