//! [`QuantizedMatmul`] on burn's cube backend (the `wgpu` and `cuda` features).
//!
//! Weights stay quantized on the device: the first product with a [`QWeight`] uploads its raw
//! GGUF blocks once, as a `u32` buffer (blocks are 18/20/34 bytes, so they are read bytewise
//! out of words), and every later product reuses that buffer.
//! * Q4_0, Q4_1, Q8_0: [`q_matmul_kernel`], a CubeCL kernel that decodes the blocks inside the
//!   dot product (one unit per output value: token `t`, weight row `r`). f32 activations (no
//!   8-bit activation rounding as on the CPU: the tolerance against flex says so).
//! * Other types (K-quants, F16/BF16/F32): **fallback**, not a kernel: bands of ≈ 4 M weights
//!   are decoded to f32 on the host per call, uploaded and multiplied with the backend's
//!   matmul, so nothing f32 stays on the device, at the price of a transfer per call.
//!   TODO(K-quants kernel): decode Q4_K/Q5_K/Q6_K in the kernel too (they decide the output
//!   head of many models); left for lack of time, not of a reason.
//!
//! `Cube` is `CubeBackend` here because burn's `fusion` feature is off; turning it on would
//! make `Cube` `Fusion<CubeBackend>` and this impl would need a fusion custom op.
#![allow(
    clippy::too_many_arguments,
    reason = "a kernel's arguments are its launch ABI (the macro's launch fn repeats them)"
)]

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use airlock_gguf::GgmlType;
use burn::backend::ops::FloatTensorOps;
use burn::backend::{Cube, DType, Shape, TensorMetadata};
use burn::tensor::TensorData;
use burn_cubecl::CubeDevice;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::kernels;
use crate::ops::QuantizedMatmul;
use crate::qweight::QWeight;

/// Weights decoded per band in the host fallback (f32 values), as flex's GEMM path.
const BAND_VALUES: usize = 4 << 20;

/// Block layouts the kernel decodes (ggml `block_q4_0`, `block_q4_1`, `block_q8_0`).
#[derive(Clone, Copy)]
enum Kernel {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl Kernel {
    fn of(ty: GgmlType) -> Option<Kernel> {
        match ty {
            GgmlType::Q4_0 => Some(Kernel::Q4_0),
            GgmlType::Q4_1 => Some(Kernel::Q4_1),
            GgmlType::Q8_0 => Some(Kernel::Q8_0),
            _ => None,
        }
    }

    /// The kernel's comptime selector.
    fn id(self) -> u32 {
        match self {
            Kernel::Q4_0 => 0,
            Kernel::Q4_1 => 1,
            Kernel::Q8_0 => 2,
        }
    }

    /// Offset of the quants in a block (after the f16 scale, and Q4_1's f16 minimum).
    fn qs_offset(self) -> usize {
        match self {
            Kernel::Q4_1 => 4,
            Kernel::Q4_0 | Kernel::Q8_0 => 2,
        }
    }

    /// Bytes per block of 32 values.
    fn block_bytes(self) -> usize {
        match self {
            Kernel::Q4_0 => 18,
            Kernel::Q4_1 => 20,
            Kernel::Q8_0 => 34,
        }
    }
}

/// Byte `i` of a little-endian byte stream stored as `u32` words.
#[cube]
fn byte_at(w: &[u32], i: usize) -> u32 {
    let word = w[i / 4];
    (word >> u32::cast_from((i % 4) * 8)) & 0xFF
}

/// The IEEE half at bytes `i..i + 2`, as f32 (normal and subnormal; GGUF scales are finite).
#[cube]
fn f16_at(w: &[u32], i: usize) -> f32 {
    let h = byte_at(w, i) | (byte_at(w, i + 1) << 8);
    let sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1F;
    let m = h & 0x3FF;
    // Normal: rebias the exponent (15 → 127) and widen the mantissa (10 → 23 bits).
    let mut v = f32::reinterpret(sign | ((e + 112) << 23) | (m << 13));
    if e == 0 {
        // Subnormal: m · 2⁻²⁴.
        v = f32::cast_from(m) * 5.960_464_5e-8;
        if sign != 0 {
            v = -v;
        }
    }
    v
}

/// `out[t, col0 + r] = Σ_c x[t, c] · W[r, c]` for `t < n`, `r < rows`; `W` row `r` is
/// `row_bytes` bytes of blocks at `r * row_bytes` of `w`, quants at `qs_offset` of a block.
/// Layouts (ggml `ggml-common.h`):
/// Q4_0 `{f16 d; u8 qs[16]}`, value `j` = `d · ((qs[j] & 15) − 8)`, value `j + 16` =
/// `d · ((qs[j] >> 4) − 8)`; Q4_1 `{f16 d, m; u8 qs[16]}`, values `d · q + m`; Q8_0
/// `{f16 d; i8 qs[32]}`, values `d · qs[j]`.
#[cube(launch)]
fn q_matmul_kernel(
    x: &[f32],
    w: &[u32],
    out: &mut [f32],
    n: usize,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    block_bytes: usize,
    qs_offset: usize,
    out_stride: usize,
    col0: usize,
    #[comptime] kind: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos >= n * rows {
        terminate!();
    }
    let t = pos / rows;
    let r = pos % rows;
    let blocks = cols / 32;
    let mut acc = 0.0f32;
    for b in 0..blocks {
        let base = r * row_bytes + b * block_bytes;
        let xo = t * cols + b * 32;
        let d = f16_at(w, base);
        if kind == 2 {
            let mut s = 0.0f32;
            for j in 0..32 {
                let q = byte_at(w, base + 2 + j);
                // i8 from its byte: subtract 256 when the sign bit is set.
                let qi = i32::cast_from(q) - i32::cast_from(q >> 7) * 256;
                s += f32::cast_from(qi) * x[xo + j];
            }
            acc += d * s;
        } else {
            let mut s = 0.0f32;
            let mut sx = 0.0f32;
            for j in 0..16 {
                let q = byte_at(w, base + qs_offset + j);
                let x0 = x[xo + j];
                let x1 = x[xo + j + 16];
                s += f32::cast_from(q & 0xF) * x0 + f32::cast_from(q >> 4) * x1;
                sx += x0 + x1;
            }
            if kind == 1 {
                acc += d * s + f16_at(w, base + 2) * sx;
            } else {
                acc += d * (s - 8.0 * sx);
            }
        }
    }
    out[t * out_stride + col0 + r] = acc;
}

/// A weight's blocks on one device, with a clone of the weight: holding it keeps the file
/// mapped, so the address the cache is keyed by cannot be reused by another weight.
struct Uploaded {
    _weight: QWeight,
    handle: Handle,
    words: usize,
}

/// Uploaded weights by (device, address and length of the mapped bytes). Lives as long as the
/// process: the appliance loads its model once.
static UPLOADS: Mutex<Option<HashMap<(CubeDevice, usize, usize), Uploaded>>> = Mutex::new(None);

/// `w`'s raw blocks on `x`'s device as a `u32` tensor (uploaded on first use).
fn device_blocks(x: &CubeTensor, w: &QWeight) -> CubeTensor {
    let bytes = w.bytes();
    let key = (x.device.clone(), bytes.as_ptr() as usize, bytes.len());
    let mut guard = UPLOADS.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    let up = map.entry(key).or_insert_with(|| {
        // Whole words: pad the last one with zeros (never read by the kernel).
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(4) * 4, 0);
        Uploaded {
            _weight: w.clone(),
            handle: x.client.create_from_slice(&padded),
            words: padded.len() / 4,
        }
    });
    CubeTensor::new_contiguous(
        x.client.clone(),
        x.device.clone(),
        Shape::new([up.words]),
        up.handle.clone(),
        DType::U32,
    )
}

/// `x · Wᵀ` with the kernel: `[n, w.rows()]`.
fn kernel_product(x: &CubeTensor, w: &QWeight, kind: Kernel, n: usize) -> CubeTensor {
    let rows = w.rows();
    let blocks = device_blocks(x, w);
    let out = empty_device_dtype(
        x.client.clone(),
        x.device.clone(),
        Shape::new([n, rows]),
        DType::F32,
    );
    let units = n * rows;
    let cube_dim = CubeDim::new(&x.client, units);
    let cube_count = calculate_cube_count_elemwise(&x.client, units, cube_dim);
    q_matmul_kernel::launch(
        &x.client,
        cube_count,
        cube_dim,
        x.clone().into_buffer_arg(),
        blocks.into_buffer_arg(),
        out.clone().into_buffer_arg(),
        n,
        rows,
        w.cols(),
        w.row_bytes(),
        kind.block_bytes(),
        kind.qs_offset(),
        rows,
        0,
        kind.id(),
    );
    out
}

/// Fallback for types without a kernel: `x · Wᵀ` by bands decoded on the host.
fn host_decoded_product(x: &CubeTensor, w: &QWeight) -> CubeTensor {
    let (rows, cols) = (w.rows(), w.cols());
    let band = (BAND_VALUES / cols).clamp(1, rows);
    let mut parts = Vec::with_capacity(rows.div_ceil(band));
    let mut start = 0;
    while start < rows {
        let len = band.min(rows - start);
        let mut buf = vec![0f32; len * cols];
        kernels::dequantize_rows(w, start, &mut buf);
        // [len, cols] -> [cols, len]
        let wt = Cube::float_transpose(Cube::float_from_data(
            TensorData::new(buf, [len, cols]),
            &x.device,
        ));
        // [n, cols] x [cols, len] -> [n, len]
        parts.push(Cube::float_matmul(x.clone(), wt));
        start += len;
    }
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        Cube::float_cat(parts, 1)
    }
}

impl QuantizedMatmul for Cube {
    fn q_matmul(x: CubeTensor, ws: Vec<QWeight>) -> CubeTensor {
        let [n, cols] = x.shape().dims::<2>();
        for w in &ws {
            assert_eq!(cols, w.cols(), "q_matmul: activation width vs {}", w.name());
        }
        let x = if x.dtype() == DType::F32 {
            x
        } else {
            Cube::float_cast(x, burn::backend::FloatDType::F32)
        };
        let x = into_contiguous(x);
        let mut parts: Vec<CubeTensor> = ws
            .iter()
            .map(|w| match Kernel::of(w.ggml_type()) {
                Some(kind) => kernel_product(&x, w, kind, n),
                None => host_decoded_product(&x, w),
            })
            .collect();
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cube::float_cat(parts, 1)
        }
    }
}
