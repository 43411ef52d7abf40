//! Matrix kernels over weights still in their GGUF encoding.
//!
//! * [`matmul_rows`]: `out[t, r] = W[r, :] · x[t, :]` for a few activation rows (decode steps,
//!   small batches). Each weight row is decoded and multiplied in registers, never written out
//!   as f32: the product reads the 4–8-bit weights once per step, which is what bounds decode
//!   speed. Rows are split over rayon's pool (flex runs matrix-vector products on one thread).
//! * [`dequantize_rows`]: a band of rows decoded to f32, for prompt processing, where each
//!   weight is reused by many tokens and burn's GEMM on a decoded band wins (see `crate::ops`).
//!
//! Instruction sets are chosen at run time ([`Isa::detect`]): AVX2+FMA+F16C on x86-64, with
//! AVX-512 VNNI's `vpdpbusd` for the 8-bit products where present (the
//! `unsafe` lives in [`avx2`], each function tested against [`portable`]), else the portable
//! code. `AIRLOCK_KERNELS=portable` (or `avx2`) forces a path (tests, diagnosis).

use std::sync::OnceLock;

use airlock_gguf::GgmlType;
use rayon::prelude::*;

use crate::qweight::QWeight;

#[cfg(target_arch = "x86_64")]
mod avx2;
pub(crate) mod portable;
pub mod q8;

use self::q8::Q8Row;

/// The instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (any CPU).
    Portable,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 plus AVX-512 VNNI (`vpdpbusd`) for the 8-bit-activation kernels.
    Avx512Vnni,
}

impl Isa {
    /// The best set this CPU supports (cached), unless `AIRLOCK_KERNELS=portable`.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            match std::env::var("AIRLOCK_KERNELS").as_deref() {
                Ok("portable") => return Isa::Portable,
                Ok("avx2") if Isa::Avx2.is_supported() => return Isa::Avx2,
                _ => {}
            }
            Isa::best_supported()
        })
    }

    /// The best set this CPU supports, ignoring the environment.
    pub fn best_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    return Isa::Avx512Vnni;
                }
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Name for logs and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// True if this CPU can run `self`'s kernels.
    pub fn is_supported(self) -> bool {
        matches!(
            (self, Isa::best_supported()),
            (Isa::Portable, _)
                | (Isa::Avx2, Isa::Avx2 | Isa::Avx512Vnni)
                | (Isa::Avx512Vnni, Isa::Avx512Vnni)
        )
    }
}

/// `row · x` for one encoded row of `ty` whose value count is `x.len()`.
///
/// Returns `None` if the lengths disagree (the row is not `x.len()` values of `ty`), or if
/// `isa` is not supported by this CPU.
#[allow(unsafe_code)]
pub fn row_dot(isa: Isa, ty: GgmlType, row: &[u8], x: &[f32]) -> Option<f32> {
    let bs = ty.block_size();
    if !x.len().is_multiple_of(bs) || row.len() != x.len() / bs * ty.block_bytes() {
        return None;
    }
    match isa {
        Isa::Portable => Some(portable::row_dot(ty, row, x)),
        Isa::Avx2 | Isa::Avx512Vnni => {
            #[cfg(target_arch = "x86_64")]
            {
                if !isa.is_supported() {
                    return None;
                }
                // SAFETY: the CPU has AVX2/FMA/F16C (checked above) and `row` is exactly
                // `x.len()` values of `ty` in whole blocks (checked above): the contract of
                // every kernel in `avx2`.
                Some(unsafe {
                    match ty {
                        GgmlType::Q4_0 => avx2::dot_q4_0(row, x),
                        GgmlType::Q4_1 => avx2::dot_q4_1(row, x),
                        GgmlType::Q8_0 => avx2::dot_q8_0(row, x),
                        GgmlType::F32 => avx2::dot_f32(row, x),
                        GgmlType::F16 => avx2::dot_f16(row, x),
                        _ => avx2::dot_generic(ty, row, x),
                    }
                })
            }
            #[cfg(not(target_arch = "x86_64"))]
            None
        }
    }
}

/// True if `row` is `a.len()` values of a Q4_0/Q4_1/Q8_0 type and `a` is well formed.
fn q8_args_ok(ty: GgmlType, row: &[u8], a: &Q8Row) -> bool {
    let nb = a.len() / airlock_gguf::blocks::QK;
    q8::supports(ty)
        && a.len().is_multiple_of(airlock_gguf::blocks::QK)
        && row.len() == nb * ty.block_bytes()
        && a.d.len() == nb
        && a.s.len() == nb
        && a.isum.len() == nb
}

/// `row · a` for a Q4_0/Q4_1/Q8_0 row and 8-bit activations ([`q8`]); `None` for another
/// type, mismatched lengths, or an `isa` this CPU lacks.
#[allow(unsafe_code)]
pub fn row_dot_q8(isa: Isa, ty: GgmlType, row: &[u8], a: &Q8Row) -> Option<f32> {
    if !q8_args_ok(ty, row, a) {
        return None;
    }
    match isa {
        Isa::Portable => Some(q8::row_dot(ty, row, a)),
        Isa::Avx2 | Isa::Avx512Vnni => {
            #[cfg(target_arch = "x86_64")]
            {
                if !isa.is_supported() {
                    return None;
                }
                // SAFETY: the CPU has the features of `isa` (checked above) and every length
                // was checked above: the contract of `avx2::dot_q8{,_vnni}`.
                Some(unsafe {
                    if isa == Isa::Avx512Vnni {
                        avx2::dot_q8_vnni(ty, row, a)
                    } else {
                        avx2::dot_q8(ty, row, a)
                    }
                })
            }
            #[cfg(not(target_arch = "x86_64"))]
            None
        }
    }
}

/// [`row_dot_q8`] for four activation rows (each weight block decoded once); identical
/// results to four single calls.
#[allow(unsafe_code)]
pub fn row_dot_q8_x4(isa: Isa, ty: GgmlType, row: &[u8], a: [&Q8Row; 4]) -> Option<[f32; 4]> {
    let n = a[0].len();
    if a.iter().any(|r| r.len() != n) {
        return None;
    }
    match isa {
        Isa::Avx2 | Isa::Avx512Vnni => {
            #[cfg(target_arch = "x86_64")]
            {
                if !isa.is_supported() || !a.iter().all(|r| q8_args_ok(ty, row, r)) {
                    return None;
                }
                // SAFETY: every row passed the checks of `row_dot_q8` (type, lengths) and the
                // CPU has `isa`'s features: the contract of `avx2::dot_q8_x4{,_vnni}`.
                Some(unsafe {
                    if isa == Isa::Avx512Vnni {
                        avx2::dot_q8_x4_vnni(ty, row, a)
                    } else {
                        avx2::dot_q8_x4(ty, row, a)
                    }
                })
            }
            #[cfg(not(target_arch = "x86_64"))]
            None
        }
        Isa::Portable => Some([
            row_dot_q8(isa, ty, row, a[0])?,
            row_dot_q8(isa, ty, row, a[1])?,
            row_dot_q8(isa, ty, row, a[2])?,
            row_dot_q8(isa, ty, row, a[3])?,
        ]),
    }
}

/// `a · b` for f32 slices of equal length, with the best instruction set.
#[allow(unsafe_code)]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 lengths");
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() != Isa::Portable {
        // SAFETY: AVX2/FMA/F16C detected; equal lengths asserted above.
        return unsafe { avx2::dot_f32_slices(a, b) };
    }
    portable::dot_f32(a, b)
}

/// Rows per rayon task: enough work (≈ 64 KiB of weights) to amortise scheduling.
fn rows_per_task(w: &QWeight) -> usize {
    (64 * 1024 / w.row_bytes().max(1)).clamp(4, 1024)
}

/// `out[t * rows + r] = W[r, :] · x[t * cols ..][..cols]` for `t < n`.
///
/// # Panics
/// If `x.len() != n * w.cols()` or `out.len() != n * w.rows()` (caller bug: the burn op checks
/// shapes first).
pub fn matmul_rows(w: &QWeight, x: &[f32], n: usize, out: &mut [f32]) {
    matmul_rows_multi(&[w], x, n, out);
}

/// True if `ws` can share one [`matmul_rows_multi`] pass: same input width, type and
/// activation mode.
pub fn can_fuse(ws: &[&QWeight]) -> bool {
    ws.windows(2).all(|p| {
        p[0].cols() == p[1].cols()
            && p[0].ggml_type() == p[1].ggml_type()
            && p[0].q8_activations() == p[1].q8_activations()
    })
}

/// Several matrices over the same activations as one (their rows stacked): one activation
/// quantization and one parallel pass for, e.g., the q, k and v projections.
/// `out` is `[n, Σ rows]`.
///
/// # Panics
/// If `ws` is empty or not [`can_fuse`], or the lengths disagree (caller bugs).
pub fn matmul_rows_multi(ws: &[&QWeight], x: &[f32], n: usize, out: &mut [f32]) {
    assert!(!ws.is_empty() && can_fuse(ws), "fusable weights");
    let w0 = ws[0];
    let cols = w0.cols();
    let rows: usize = ws.iter().map(|w| w.rows()).sum();
    assert_eq!(x.len(), n * cols, "activation length");
    assert_eq!(out.len(), n * rows, "output length");
    let isa = Isa::detect();
    let ty = w0.ggml_type();
    let chunk = rows_per_task(w0);
    let acts: Vec<Q8Row> = if w0.q8_activations() {
        x.par_chunks(cols).map(Q8Row::quantize).collect()
    } else {
        Vec::new()
    };
    let row_of = |mut r: usize| -> &[u8] {
        for w in ws {
            if r < w.rows() {
                return w.row(r).unwrap_or_default();
            }
            r -= w.rows();
        }
        &[]
    };
    let dot = |row: &[u8], t: usize| {
        // INVARIANT: QWeight guarantees every row is `cols` values of `ty`; lengths match.
        match acts.get(t) {
            Some(a) => row_dot_q8(isa, ty, row, a),
            None => row_dot(isa, ty, row, &x[t * cols..(t + 1) * cols]),
        }
        .unwrap_or(f32::NAN)
    };
    if n == 1 {
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
            for (i, v) in o.iter_mut().enumerate() {
                *v = dot(row_of(c * chunk + i), 0);
            }
        });
        return;
    }
    // Row-major over weights ([rows, n]) so each task owns whole weight rows, then transpose.
    let mut tmp = vec![0f32; rows * n];
    tmp.par_chunks_mut(chunk * n)
        .enumerate()
        .for_each(|(c, o)| {
            for (i, vs) in o.chunks_exact_mut(n).enumerate() {
                let row = row_of(c * chunk + i);
                let mut t = 0;
                if acts.len() == n {
                    while t + 4 <= n {
                        let group = [&acts[t], &acts[t + 1], &acts[t + 2], &acts[t + 3]];
                        let four = row_dot_q8_x4(isa, ty, row, group).unwrap_or([f32::NAN; 4]);
                        vs[t..t + 4].copy_from_slice(&four);
                        t += 4;
                    }
                }
                for (tt, v) in vs.iter_mut().enumerate().skip(t) {
                    *v = dot(row, tt);
                }
            }
        });
    for (r, vs) in tmp.chunks_exact(n).enumerate() {
        for (t, &v) in vs.iter().enumerate() {
            out[t * rows + r] = v;
        }
    }
}

/// Decodes rows `start..start + out.len() / cols` of `w` to f32 into `out` (row-major), in
/// parallel.
///
/// # Panics
/// If the band is outside the matrix or `out` is not whole rows.
pub fn dequantize_rows(w: &QWeight, start: usize, out: &mut [f32]) {
    let cols = w.cols();
    assert!(out.len().is_multiple_of(cols), "whole rows");
    assert!(
        start + out.len() / cols <= w.rows(),
        "band inside the matrix"
    );
    let ty = w.ggml_type();
    out.par_chunks_mut(cols * 16)
        .enumerate()
        .for_each(|(c, o)| {
            for (i, orow) in o.chunks_exact_mut(cols).enumerate() {
                let row = w.row(start + c * 16 + i).unwrap_or_default();
                portable::decode_row(ty, row, orow);
            }
        });
}
