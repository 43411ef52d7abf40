//! Each fused op of a backend against flex's on the same inputs: RMSNorm (rows of widths that
//! are and are not multiples of a GPU cube), RoPE in both pair layouts, SwiGLU, and causal
//! grouped-query attention of a decode step and of a few tokens after a cached prefix, in
//! narrowed views of a larger cache as the model passes them; and the quantized products of
//! every weight type against an f64 reference of the same arithmetic.
//!
//! `airlock doctor` runs it on each GPU backend, so an operator (and a developer without a
//! Rust toolchain on the GPU machine) sees which kernel, if any, computes otherwise there;
//! `tests/engine/gpu.rs` runs it on lavapipe or CUDA.

use std::sync::Arc;

use airlock_gguf::write::GgufWriter;
use airlock_gguf::{GgmlType, GgufFile};
use burn::tensor::{Device, Tensor, TensorData};

use crate::device::Backend;
use crate::error::{EngineError, Result};
use crate::fused;
use crate::model::rope::{RopeConfig, RopeStyle};
use crate::ops::q_linear;
use crate::qweight::QWeight;

/// Largest |device − reference| difference of an op, relative to its largest value, that a
/// device may show: f32 in another order stays near 1e-5.
pub const OP_TOLERANCE: f64 = 1e-3;

/// One op's comparison: its name and inputs, the largest |device − flex| difference and the
/// largest |flex value| (at least 1.0) it is measured against.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCheck {
    /// The op and its shape, e.g. `rms_norm 3x576`.
    pub op: String,
    /// Largest |device − flex| (infinite for a NaN or a shape mismatch).
    pub worst: f64,
    /// Largest |flex value|, at least 1.0.
    pub scale: f64,
}

impl OpCheck {
    /// `worst / scale`.
    pub fn relative(&self) -> f64 {
        self.worst / self.scale
    }

    /// Within [`OP_TOLERANCE`] (a NaN is not).
    pub fn agrees(&self) -> bool {
        self.relative() <= OP_TOLERANCE
    }
}

/// Values in [-2, 2) from a seed (an LCG: the same on every run and machine).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn check<const D: usize>(op: String, dev: Tensor<D>, cpu: Tensor<D>) -> OpCheck {
    let same_shape = dev.dims() == cpu.dims();
    let d: Vec<f32> = dev
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let c: Vec<f32> = cpu
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    // The self-check's measure: NaN counts as infinite, a shape mismatch is infinite too.
    let m = crate::engine::measure(&d, &c).filter(|_| same_shape);
    let (worst, scale) = m.map_or((f64::INFINITY, 1.0), |m| (m.worst, m.scale));
    OpCheck { op, worst, scale }
}

/// Runs every op on `backend` and on flex: one [`OpCheck`] each. A runtime that cannot run
/// them is [`EngineError::BackendFailed`].
pub fn fused_ops(backend: Backend) -> Result<Vec<OpCheck>> {
    let g = backend.device()?;
    let run = || all(&g, &Device::flex());
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|panic| {
        EngineError::BackendFailed {
            backend: backend.name(),
            message: crate::error::panic_message(panic.as_ref()),
        }
    })
}

fn all(g: &Device, c: &Device) -> Vec<OpCheck> {
    let t2 = |v: &[f32], s: [usize; 2], d: &Device| {
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), s), d)
    };
    let t3 = |v: &[f32], s: [usize; 3], d: &Device| {
        Tensor::<3>::from_data(TensorData::new(v.to_vec(), s), d)
    };
    let mut out = Vec::new();
    // SmolLM2's width (not a multiple of 128), an odd one, Llama-1B's, each at several row
    // counts (the first H100 run found 3x576 wrong and 1x300, 2x2048 right).
    let shapes = [
        (1usize, 576usize),
        (2, 576),
        (4, 576),
        (3, 576),
        (1, 300),
        (3, 300),
        (2, 2048),
        (3, 2048),
        (4, 2048),
    ];
    for (rows, d) in shapes {
        let (x, w) = (values(rows * d, 1), values(d, 2));
        let wt = |dev: &Device| Tensor::<1>::from_data(TensorData::new(w.clone(), [d]), dev);
        out.push(check(
            format!("rms_norm {rows}x{d}"),
            fused::rms_norm(t2(&x, [rows, d], g), wt(g), 1e-5),
            fused::rms_norm(t2(&x, [rows, d], c), wt(c), 1e-5),
        ));
    }
    // Inputs that are views, not packed rows (the model hands over slices, and CUDA pads
    // rows of burn's own outputs): the ops must read through the strides.
    {
        let (rows, d, wide) = (3, 576, 640);
        let (x, w) = (values(rows * wide, 8), values(d, 2));
        let wt = |dev: &Device| Tensor::<1>::from_data(TensorData::new(w.clone(), [d]), dev);
        let view = |dev: &Device| t2(&x, [rows, wide], dev).narrow(1, 0, d);
        out.push(check(
            format!("rms_norm {rows}x{d} view of {wide}"),
            fused::rms_norm(view(g), wt(g), 1e-5),
            fused::rms_norm(view(c), wt(c), 1e-5),
        ));
        let view = |dev: &Device| t2(&x, [rows, wide], dev).narrow(1, 32, 2 * 96);
        out.push(check(
            format!("swiglu {rows}x192 view of {wide}"),
            fused::swiglu(view(g)),
            fused::swiglu(view(c)),
        ));
    }
    // 3 heads of 64, 5 positions from 7.
    for style in [RopeStyle::Adjacent, RopeStyle::Neox] {
        let rope = RopeConfig::new(64, 10000.0).with_style(style).init(None);
        let x = values(3 * 5 * 64, 3);
        out.push(check(
            format!("rope {style:?} 3x5x64"),
            fused::rope(t3(&x, [3, 5, 64], g), 7, &rope.freqs),
            fused::rope(t3(&x, [3, 5, 64], c), 7, &rope.freqs),
        ));
    }
    for (rows, d) in [(1usize, 96usize), (2, 96), (4, 96), (1, 1024), (4, 1024)] {
        let x = values(rows * 2 * d, 4);
        out.push(check(
            format!("swiglu {rows}x{}", 2 * d),
            fused::swiglu(t2(&x, [rows, 2 * d], g)),
            fused::swiglu(t2(&x, [rows, 2 * d], c)),
        ));
    }
    // 4 query heads on 2 key/value heads of 64, a cache of capacity 300 holding `start + n`
    // positions (a narrowed view, as the KV cache hands it out).
    // Head size 80 (Phi-2's): rows of a width CUDA pads; 128 (Llama-3 8B's, Mistral 7B's).
    for (start, n, hd) in [
        (0usize, 1usize, 64usize),
        (37, 1, 64),
        (200, 5, 64),
        (0, 20, 64),
        (11, 3, 80),
        (57, 1, 128),
        (0, 20, 128),
    ] {
        let (h, kvh, cap) = (4, 2, 300);
        let q = values(h * n * hd, 5 + start as u64);
        let (k, v) = (values(kvh * cap * hd, 6), values(kvh * cap * hd, 7));
        let attend = |d: &Device| {
            let kt = t3(&k, [kvh, cap, hd], d).narrow(1, 0, start + n);
            let vt = t3(&v, [kvh, cap, hd], d).narrow(1, 0, start + n);
            fused::attention(t3(&q, [h, n, hd], d), kt, vt, start, true)
        };
        out.push(check(
            format!("attention start {start} n {n} hd {hd}"),
            attend(g),
            attend(c),
        ));
    }
    out.extend(products(g));
    out
}

/// The weight types with 8-bit-activation products on a GPU.
const QUANTIZED: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// The quantized products of every type on `backend` against their f64 reference (the part
/// of [`fused_ops`] the GPU self-check runs at load: the model's own comparison with the CPU
/// runs its f32-activation twin, [`crate::Engine`] says why).
pub(crate) fn product_checks(g: &Device) -> Vec<OpCheck> {
    products(g)
}

/// `x · Wᵀ` on `g` for each quantized type, 1, 3 and 20 tokens, 37 rows of 768 columns
/// (three K-quant superblocks: Q6_K's 210-byte blocks then start at odd half-words, Q4_0's and
/// Q8_0's at both halves), against flex's product of the same matrix: with 8-bit activations
/// both round them alike and sum exact integers per block, so they differ by f32 order only;
/// and 5 tokens with f32 activations against the exact f64 product.
fn products(g: &Device) -> Vec<OpCheck> {
    let (rows, cols) = (37usize, 768usize);
    let mut out = Vec::new();
    for (i, ty) in QUANTIZED.into_iter().enumerate() {
        let Some(w) = matrix(ty, rows, cols, 20 + i as u64) else {
            out.push(OpCheck {
                op: format!("product {ty:?}: matrix not built"),
                worst: f64::INFINITY,
                scale: 1.0,
            });
            continue;
        };
        // A device forced to f32 activations (`AIRLOCK_GPU_ACTIVATIONS=f32`, a diagnostic)
        // multiplies exactly where 8-bit activations were asked for.
        let forced_f32 = std::env::var("AIRLOCK_GPU_ACTIVATIONS").is_ok_and(|v| v == "f32");
        for (n, exact) in [(1usize, false), (3, false), (20, false), (5, true)] {
            let x = values(n * cols, 30 + n as u64);
            let w = w.clone().with_exact_activations(exact);
            let xt = |d: &Device| Tensor::<2>::from_data(TensorData::new(x.clone(), [n, cols]), d);
            let reference = if exact || forced_f32 {
                let dense: Vec<Vec<f32>> = (0..rows)
                    .map(|r| w.dequantize_row(r).unwrap_or_default())
                    .collect();
                let want: Vec<f32> = x
                    .chunks_exact(cols)
                    .flat_map(|xr| {
                        dense.iter().map(move |wr| {
                            let dot = wr.iter().zip(xr);
                            dot.map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() as f32
                        })
                    })
                    .collect();
                Tensor::<2>::from_data(TensorData::new(want, [n, rows]), &Device::flex())
            } else {
                q_linear(xt(&Device::flex()), &w)
            };
            let what = if exact { "f32" } else { "8-bit" };
            out.push(check(
                format!("product {ty:?} {n}x{cols} by {rows} rows, {what} activations"),
                q_linear(xt(g), &w),
                reference,
            ));
        }
    }
    out
}

/// A `rows × cols` matrix of `ty` quantized from seeded values, in an in-memory GGUF file.
fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Option<QWeight> {
    let mut writer = GgufWriter::new();
    writer
        .tensor_from_f32(
            "w",
            &[cols as u64, rows as u64],
            ty,
            &values(rows * cols, seed),
        )
        .ok()?;
    let file = Arc::new(GgufFile::from_bytes(writer.to_bytes()).ok()?);
    let info = file.tensor("w")?.clone();
    QWeight::new(&file, &info).ok()
}
