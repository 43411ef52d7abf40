//! [`QuantizedMatmul`] on burn's cube backend (the `wgpu` and `cuda` features).
//!
//! Weights stay quantized on the device: the first product with a [`QWeight`] uploads its raw
//! GGUF blocks once, as a `u32` buffer, and every later product reuses it. Every GGUF type the
//! engine loads is decoded on the device (`cube/decode.rs`: Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K,
//! F16, BF16, F32). Activations are, as on the CPU and in llama.cpp:
//! * 8-bit for the quantized types (the default, [`QWeight::q8_activations`]): the row is
//!   quantized once per product to 32-value blocks and multiplied by `dp4a` (`cube/q8.rs`), at
//!   every token count: [`q_matvec_kernel`] in slices of 8 tokens, so a weight byte is read once
//!   per slice (a prompt's slices of one row group run side by side and share it in L2);
//! * f32 for F16/BF16/F32 weights and exact activations (tests, the self-check's twin): up to
//!   [`MATVEC_TOKENS`] tokens the same kernel on f32 activations, the 32 lanes of a row
//!   striding over it with coalesced loads, partial sums added with a plane sum (NVIDIA) or in
//!   shared memory (lavapipe); more tokens (prompts): bands of rows dequantized to f32 on the
//!   device ([`dequantize_kernel`]) and multiplied with the backend's tiled matmul.
//!
//! The host keeps one fallback, for rows that are not whole 32-value units (dense tensors of
//! odd width): bands decoded on the host, uploaded and multiplied per call.
//!
//! `Cube` is `CubeBackend` here because burn's `fusion` feature is off; turning it on would
//! make `Cube` `Fusion<CubeBackend>` and this impl would need a fusion custom op.

mod decode;
mod fused;
mod fused_ops;
mod products;
mod q8;
pub(crate) mod step;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use airlock_gguf::GgmlType;
use burn::backend::ops::FloatTensorOps;
use burn::backend::{Cube, DType, Shape, TensorMetadata};
use burn::tensor::TensorData;
use burn_cubecl::CubeDevice;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::features::Plane;
use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::kernels;
use crate::ops::{F16Rounding, QuantizedMatmul};
use crate::qweight::QWeight;
use products::{LANES, dequantize_kernel, q_matvec_kernel, round_f16_kernel};

/// Weights decoded per band: f32 values, on the host (the fallback) and on the device (the
/// prompt path's scratch: 128 MiB).
const BAND_VALUES: usize = 32 << 20;

/// Largest token count the matrix-vector kernel takes; more go through dequantize + matmul.
const MATVEC_TOKENS: usize = 16;

/// Weight rows per cube of the matrix-vector kernel (`LANES` units each).
const ROWS_PER_CUBE: u32 = 4;

/// The device decoder for `ty` (`cube/decode.rs`: every type the engine loads), when rows are
/// whole 32-value units.
fn layout(ty: GgmlType, cols: usize) -> Option<u32> {
    let kind = match ty {
        GgmlType::Q4_0 => decode::Q4_0,
        GgmlType::Q4_1 => decode::Q4_1,
        GgmlType::Q8_0 => decode::Q8_0,
        GgmlType::Q4_K => decode::Q4_K,
        GgmlType::Q5_K => decode::Q5_K,
        GgmlType::Q6_K => decode::Q6_K,
        GgmlType::F16 => decode::F16,
        GgmlType::BF16 => decode::BF16,
        GgmlType::F32 => decode::F32,
    };
    cols.is_multiple_of(32).then_some(kind)
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
static UPLOADS: Mutex<Option<HashMap<UploadKey, Uploaded>>> = Mutex::new(None);

/// A device, and the address and length of a weight's mapped bytes.
type UploadKey = (CubeDevice, usize, usize);

/// `w`'s raw blocks on `x`'s device as a `u32` tensor (uploaded on first use).
fn device_blocks(x: &CubeTensor, w: &QWeight) -> CubeTensor {
    let bytes = w.bytes();
    let key = (x.device.clone(), bytes.as_ptr() as usize, bytes.len());
    let mut guard = UPLOADS.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    let up = map.entry(key).or_insert_with(|| {
        // Whole words, and one more: the 8-bit-activation products read a word past an
        // unaligned run (`q8::word_at_even`); the padding is zeros and never contributes.
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(4) * 4 + 4, 0);
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

/// One-value buffers by device and slot, bound where a kernel variant takes an argument it
/// never reads.
static UNREAD: Mutex<Option<HashMap<(CubeDevice, Unread), CubeTensor>>> = Mutex::new(None);

/// The arguments a kernel variant may leave unread, each with its own stand-in buffer: one
/// buffer bound to two arguments of a launch fails SPIR-V validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unread {
    Residual,
    Bias,
    Quantized,
    Scales,
}

/// `x`'s device's [`UNREAD`] buffer for `slot`: one allocation for the process, so a recorded
/// decode step (`step.rs`) allocates nothing for it and the buffer it recorded stays valid.
fn unread(x: &CubeTensor, slot: Unread) -> CubeTensor {
    let mut guard = UNREAD.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    map.entry((x.device.clone(), slot))
        .or_insert_with(|| empty_like(x, Shape::new([1])))
        .clone()
}

/// A product's activations: `x` (`[n, cols]` f32), and with 8-bit activations its blocks
/// ([`q8::quantize_q8_kernel`]: `q` packed bytes, `d` scales).
struct Acts<'a> {
    x: &'a CubeTensor,
    q8: Option<(&'a CubeTensor, &'a CubeTensor)>,
}

impl Acts<'_> {
    /// The kernel arguments `x`, `xq`, `xd` (stand-ins for unread ones) and the `q8` flag.
    fn args(&self) -> (CubeTensor, CubeTensor, CubeTensor, bool) {
        match self.q8 {
            Some((q, d)) => (self.x.clone(), q.clone(), d.clone(), true),
            None => (
                self.x.clone(),
                unread(self.x, Unread::Quantized),
                unread(self.x, Unread::Scales),
                false,
            ),
        }
    }
}

/// Buffers for `values` activations as 8-bit blocks: packed bytes (u32) and a `(d, s)` pair
/// per 32 values (f32).
fn q8_buffers(like: &CubeTensor, values: usize) -> (CubeTensor, CubeTensor) {
    let q = CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new([values / 4]),
        like.client.empty(values),
        DType::U32,
    );
    (q, empty_like(like, Shape::new([2 * values / q8::QBLOCK])))
}

/// `x`'s first `values` values as 8-bit blocks of `per` values into `q`, `d`
/// ([`q8::quantize_q8_kernel`]).
fn quantize_into(x: &CubeTensor, values: usize, per: u32, q: &CubeTensor, d: &CubeTensor) {
    let words = values / 4;
    let units = q8::QUANTIZE_UNITS;
    q8::quantize_q8_kernel::launch(
        &x.client,
        CubeCount::Static(
            u32::try_from(words.div_ceil(units as usize)).expect("words fit a grid"),
            1,
            1,
        ),
        CubeDim::new_1d(units),
        x.clone().into_buffer_arg(),
        q.clone().into_buffer_arg(),
        d.clone().into_buffer_arg(),
        words,
        per,
    );
}

/// `x`'s `values` values as 8-bit blocks in new buffers, if products with `ws` take them.
fn quantized(x: &CubeTensor, values: usize, ws: &[QWeight]) -> Option<(CubeTensor, CubeTensor)> {
    q8_block(ws).map(|per| {
        let (q, d) = q8_buffers(x, values);
        quantize_into(x, values, per, &q, &d);
        (q, d)
    })
}

/// Whether products with `ws` take 8-bit activations, and if so per how many values they are
/// scaled: every matrix asks for them ([`QWeight::q8_activations`]: the quantized types, unless
/// exact), per 256 when all are K-quants and per 32 otherwise, as the CPU rounds them for the
/// same weights. `AIRLOCK_GPU_ACTIVATIONS=f32` forces f32 activations (a diagnostic, and the
/// A/B switch of a benchmark: the f32 products are the slower, exact ones).
fn q8_block<'a>(ws: impl IntoIterator<Item = &'a QWeight>) -> Option<u32> {
    static FORCED_F32: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let forced = *FORCED_F32
        .get_or_init(|| std::env::var("AIRLOCK_GPU_ACTIVATIONS").is_ok_and(|v| v == "f32"));
    let kinds: Option<Vec<u32>> = ws
        .into_iter()
        .map(|w| layout(w.ggml_type(), w.cols()).filter(|_| w.q8_activations()))
        .collect();
    let kinds = kinds.filter(|k| !k.is_empty() && !forced)?;
    let per = if kinds.iter().all(|&k| q8::is_k_kind(k)) {
        q8::KBLOCK
    } else {
        q8::QBLOCK
    };
    Some(u32::try_from(per).expect("a block size"))
}

/// Whether the device adds a row's partial sums with one plane sum: planes exactly `LANES`
/// wide (NVIDIA's warps; lavapipe has no plane operations, its subgroups are 8 wide).
///
/// `AIRLOCK_GPU_REDUCE=shared` in the environment forces the shared-memory sums: a diagnostic,
/// to tell a plane-operation fault from another in the self-check's report.
fn plane_sum_fits(client: &cubecl::client::Client) -> bool {
    static FORCED_SHARED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let forced = *FORCED_SHARED
        .get_or_init(|| std::env::var("AIRLOCK_GPU_REDUCE").is_ok_and(|v| v == "shared"));
    let props = client.properties();
    !forced
        && props.features.plane.contains(Plane::Ops)
        && props.hardware.plane_size_min == LANES
        && props.hardware.plane_size_max == LANES
}

/// `x · Wᵀ` (plus `residual`, `[n, w.rows()]`) for a few tokens with the matrix-vector
/// kernel, written into columns `col0..col0 + w.rows()` of `out` (`[n, out_cols]`).
#[allow(
    clippy::too_many_arguments,
    reason = "the kernel's launch arguments, named"
)]
fn matvec_into(
    acts: &Acts,
    w: &QWeight,
    kind: u32,
    n: usize,
    out: &CubeTensor,
    out_cols: usize,
    col0: usize,
    residual: Option<&CubeTensor>,
) {
    let x = acts.x;
    let (xa, xq, xd, q8) = acts.args();
    let rows = w.rows();
    let blocks = device_blocks(x, w);
    // Tokens per cube: all of them up to 8 (one pass over the weights), as a power of two so
    // few kernel variants compile.
    let tokens = n.next_power_of_two().min(8);
    let cube_count = CubeCount::Static(
        u32::try_from(n.div_ceil(tokens)).expect("tokens fit a grid"),
        u32::try_from(rows.div_ceil(ROWS_PER_CUBE as usize)).expect("rows fit a grid"),
        1,
    );
    q_matvec_kernel::launch(
        &x.client,
        cube_count,
        CubeDim::new_2d(LANES, ROWS_PER_CUBE),
        xa.into_buffer_arg(),
        xq.into_buffer_arg(),
        xd.into_buffer_arg(),
        blocks.into_buffer_arg(),
        // Without a residual the kernel never reads it: a stand-in.
        residual
            .cloned()
            .unwrap_or_else(|| unread(x, Unread::Residual))
            .into_buffer_arg(),
        out.clone().into_buffer_arg(),
        n,
        rows,
        w.cols(),
        w.row_bytes(),
        out_cols,
        col0,
        kind,
        ROWS_PER_CUBE,
        tokens,
        plane_sum_fits(&x.client),
        residual.is_some(),
        q8 && q8::is_q8_kind(kind),
    );
}

/// `x · Wᵀ` for many tokens: bands of rows dequantized on the device, each multiplied with the
/// backend's matmul: `[n, w.rows()]`.
fn dequantized_product(x: &CubeTensor, w: &QWeight, kind: u32) -> CubeTensor {
    let (rows, cols) = (w.rows(), w.cols());
    let blocks = device_blocks(x, w);
    let band = (BAND_VALUES / cols).clamp(1, rows);
    let mut parts = Vec::with_capacity(rows.div_ceil(band));
    let mut start = 0;
    while start < rows {
        let len = band.min(rows - start);
        let deq = empty_like(x, Shape::new([len, cols]));
        let (cube_count, cube_dim) = elementwise(x, len * cols / 32);
        dequantize_kernel::launch(
            &x.client,
            cube_count,
            cube_dim,
            blocks.clone().into_buffer_arg(),
            deq.clone().into_buffer_arg(),
            start,
            len,
            cols,
            w.row_bytes(),
            kind,
        );
        // [n, cols] x [cols, len] -> [n, len]
        parts.push(Cube::float_matmul(x.clone(), Cube::float_transpose(deq)));
        start += len;
    }
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        Cube::float_cat(parts, 1)
    }
}

/// Fallback for rows the device decoders do not take: `x · Wᵀ` by bands decoded on the host.
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

/// A new f32 tensor of `shape` on `like`'s device, rows packed with no padding: the kernels
/// index outputs as one flat row-major array.
///
/// Not `empty_device_dtype`: on CUDA its rows are *pitched* (each padded to the next power of
/// two of its bytes, up to the buffer alignment), so a 576-wide row is 1024 values apart and a
/// kernel writing `[rows, 576]` flat leaves row 2 where the tensor's strides do not look (the
/// first H100 run's RMSNorm 3x576 and SwiGLU 4x192 faults; one row, or power-of-two widths,
/// hid it).
fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, DType::F32)
}

/// `x` as contiguous f32 (the kernels' activation layout): also unpads a pitched tensor
/// (burn's `is_contiguous` is strict row-major, so pitched rows are copied).
fn f32_contiguous(x: CubeTensor) -> CubeTensor {
    into_contiguous(if x.dtype() == DType::F32 {
        x
    } else {
        Cube::float_cast(x, burn::backend::FloatDType::F32)
    })
}

/// Launch dimensions for one unit per item of `units`, on `x`'s device.
fn elementwise(x: &CubeTensor, units: usize) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new(&x.client, units);
    (
        calculate_cube_count_elemwise(&x.client, units, cube_dim),
        cube_dim,
    )
}

impl QuantizedMatmul for Cube {
    fn q_matmul(x: CubeTensor, ws: Vec<QWeight>) -> CubeTensor {
        let [n, cols] = x.shape().dims::<2>();
        for w in &ws {
            assert_eq!(cols, w.cols(), "q_matmul: activation width vs {}", w.name());
        }
        let x = f32_contiguous(x);
        let kinds: Option<Vec<u32>> = ws.iter().map(|w| layout(w.ggml_type(), w.cols())).collect();
        // 8-bit activations take the matrix-vector kernel at any token count (token slices of
        // 8; the dequantize + matmul path below multiplies f32 activations).
        let q8 = kinds.is_some() && q8_block(&ws).is_some();
        if let Some(kinds) = kinds.filter(|_| n <= MATVEC_TOKENS || q8) {
            // The activations quantized once for every matrix.
            let q8 = quantized(&x, n * cols, &ws);
            let acts = Acts {
                x: &x,
                q8: q8.as_ref().map(|(q, d)| (q, d)),
            };
            // Every matrix into its columns of one output: no concatenation.
            let total: usize = ws.iter().map(QWeight::rows).sum();
            let out = empty_like(&x, Shape::new([n, total]));
            let mut col0 = 0;
            for (w, kind) in ws.iter().zip(kinds) {
                matvec_into(&acts, w, kind, n, &out, total, col0, None);
                col0 += w.rows();
            }
            return out;
        }
        let mut parts: Vec<CubeTensor> = ws
            .iter()
            .map(|w| match layout(w.ggml_type(), w.cols()) {
                Some(kind) => dequantized_product(&x, w, kind),
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

impl F16Rounding for Cube {
    fn round_f16(x: CubeTensor) -> CubeTensor {
        let x = f32_contiguous(x);
        let len = x.shape().num_elements();
        let out = empty_like(&x, x.shape());
        let (cube_count, cube_dim) = elementwise(&x, len);
        round_f16_kernel::launch(
            &x.client,
            cube_count,
            cube_dim,
            x.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            len,
        );
        out
    }
}
