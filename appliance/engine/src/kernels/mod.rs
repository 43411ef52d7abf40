//! Matrix kernels over weights still in their GGUF encoding.
//!
//! * [`matmul_rows`]: `out[t, r] = W[r, :] · x[t, :]` for a few activation rows (decode steps,
//!   small batches). Each weight row is decoded and multiplied in registers, never written out
//!   as f32: the product reads the 4–8-bit weights once per step, which is what bounds decode
//!   speed. Rows are split over rayon's pool (flex runs matrix-vector products on one thread).
//!   With 8-bit activations and several tokens (prompt processing) each task runs a
//!   register-tiled kernel ([`tile_dot_q8`], module `tile`): 4 weight rows × 4 tokens per
//!   tile, so a decoded weight block serves four tokens and a loaded activation block four rows.
//!   A single token (a decode step) runs four weight rows per call instead ([`rows4_dot_q8`],
//!   module `avx512`: the same block of four rows in one 512-bit vector). Every path gives a
//!   token bitwise the same outputs, whatever the number of tokens in the call (the tiles'
//!   arithmetic is the definition; tests compare them).
//! * K-quants (Q4_K/Q5_K/Q6_K) with 8-bit activations in super-blocks of 256 (module `q8k`,
//!   llama.cpp's `block_q8_K`) take [`row_dot_q8k`] (module `kmatmul`): ggml's arithmetic
//!   bitwise (AVX2 and AVX-512 kernels in `kquant`, scalar twins in `q8k`), one row per call
//!   for a decode step, and for several tokens each row decoded once and multiplied with four
//!   tokens per pass (module `ktile`), bitwise the one-token result. On AVX-512 VNNI, Q4_K and
//!   Q6_K matrices loaded for the CPU carry a copy with sixteen rows interleaved per
//!   super-block (module `interleaved`: `q4k16`, `q6k16`), multiplied sixteen rows per
//!   instruction for one token or four, with their own (token-invariant) arithmetic; so do
//!   Q4_0 and Q8_0 matrices (`q40x16`, `q80x16`, 8-bit activations per 32,
//!   [`matmul_rows_multi`] when every matrix of the call has the copy).
//! * [`dequantize_rows`]: a band of rows decoded to f32, for prompt processing of the types
//!   without 8-bit kernels (F16/BF16/F32, exact activations), multiplied by burn's GEMM (see
//!   `crate::ops`).
//!
//! [`matmul_rows`] is token-invariant: a token's output is bitwise the same whether it was
//! multiplied alone or with other tokens (the prompt tile repeats the one-token kernel's
//! operations per pair; other types decode a row once and dot it per token exactly as the
//! one-token product does). Batching and the prefix cache rely on it.
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
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod ggml;
pub mod interleaved;
mod kmatmul;
#[cfg(target_arch = "x86_64")]
mod kquant;
mod ktile;
pub(crate) mod portable;
pub mod q40x16;
pub mod q4k16;
pub mod q6k16;
pub mod q8;
pub mod q80x16;
pub mod q8k;
#[cfg(target_arch = "x86_64")]
mod tile;

pub use self::kmatmul::{row_dot_q8k, row_dot_q8k_tokens, row_pair_dot_q8k_tokens};
use self::q8::Q8Row;

/// The instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (any CPU).
    Portable,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 plus AVX-512 F/VL/BW and VNNI (`vpdpbusd`) for the 8-bit-activation kernels.
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

    /// The best set this CPU supports, ignoring the environment (cached: the kernels check
    /// it on every call).
    pub fn best_supported() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(Isa::probe)
    }

    fn probe() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512bw")
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

/// [`rows4_dot_q8`] with the activation checked once for many calls (a decode step's band of
/// rows): each call then checks only its rows' lengths.
struct Rows4<'a> {
    isa: Isa,
    ty: GgmlType,
    a: &'a Q8Row,
    row_len: usize,
}

impl<'a> Rows4<'a> {
    /// `None` for a type without 8-bit kernels, a malformed `a`, or an `isa` this CPU lacks.
    fn new(isa: Isa, ty: GgmlType, a: &'a Q8Row) -> Option<Rows4<'a>> {
        let row_len = a.len() / airlock_gguf::blocks::QK * ty.block_bytes();
        let probe = vec![0u8; row_len];
        (q8_args_ok(ty, &probe, a) && isa.is_supported()).then_some(Rows4 {
            isa,
            ty,
            a,
            row_len,
        })
    }

    /// [`rows4_dot_q8`] of `rows`; `None` if a row has the wrong length.
    #[allow(unsafe_code)]
    fn dot(&self, rows: &[&[u8]; 4]) -> Option<[f32; 4]> {
        if rows.iter().any(|r| r.len() != self.row_len) {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512Vnni {
            // SAFETY: `new` checked the type, `a`'s shape (with a row of `row_len` bytes) and
            // the CPU's features; every row is `row_len` bytes (checked above): the contract
            // of `avx512`, as in `rows4_dot_q8`.
            return Some(unsafe {
                match self.ty {
                    GgmlType::Q4_0 => avx512::dot_q4_rows4::<{ tile::Q4_0 }>(rows, self.a),
                    GgmlType::Q4_1 => avx512::dot_q4_rows4::<{ tile::Q4_1 }>(rows, self.a),
                    _ => avx512::dot_q8_0_rows4(rows, self.a),
                }
            });
        }
        rows4_dot_q8(self.isa, self.ty, rows, self.a)
    }
}

/// `[rows[r] · a]` for four Q4_0/Q4_1/Q8_0 rows and one token's 8-bit activations: bitwise
/// the results of four [`row_dot_q8`] calls and of the prompt tiles ([`tile_dot_q8`]), with
/// AVX-512's four-row kernel where the CPU has it (decode steps). `None` for another type,
/// mismatched lengths, or an `isa` this CPU lacks.
#[allow(unsafe_code)]
pub fn rows4_dot_q8(isa: Isa, ty: GgmlType, rows: &[&[u8]; 4], a: &Q8Row) -> Option<[f32; 4]> {
    if !rows.iter().all(|r| q8_args_ok(ty, r, a)) || !isa.is_supported() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        // SAFETY: the CPU has AVX-512 F/VL/BW/VNNI besides AVX2/FMA/F16C (`isa` is supported,
        // checked above) and every row is `a.len()` values of `ty` with `a` well formed
        // (`q8_args_ok`, checked above): the contract of `avx512`.
        return Some(unsafe {
            match ty {
                GgmlType::Q4_0 => avx512::dot_q4_rows4::<{ tile::Q4_0 }>(rows, a),
                GgmlType::Q4_1 => avx512::dot_q4_rows4::<{ tile::Q4_1 }>(rows, a),
                _ => avx512::dot_q8_0_rows4(rows, a),
            }
        });
    }
    Some([
        row_dot_q8(isa, ty, rows[0], a)?,
        row_dot_q8(isa, ty, rows[1], a)?,
        row_dot_q8(isa, ty, rows[2], a)?,
        row_dot_q8(isa, ty, rows[3], a)?,
    ])
}

/// Rows and tokens of one [`tile_dot_q8`] tile.
pub const TILE: usize = 4;

/// Per block, the offset factor of each of four tokens (lanes): `s` for Q4_1, `−8 d Σq` for
/// Q4_0 (llama.cpp's `- 8 * d_w * d_a * Σq` regrouped), unused (zero) for Q8_0.
fn offsets4(ty: GgmlType, a: &[&Q8Row; TILE]) -> Vec<[f32; 4]> {
    let nb = a[0].d.len();
    (0..nb)
        .map(|b| {
            std::array::from_fn(|t| match ty {
                GgmlType::Q4_1 => a[t].s.get(b).copied().unwrap_or(0.0),
                GgmlType::Q4_0 => {
                    let (d, isum) = (a[t].d.get(b), a[t].isum.get(b));
                    -8.0 * d.copied().unwrap_or(0.0) * isum.copied().unwrap_or(0) as f32
                }
                _ => 0.0,
            })
        })
        .collect()
}

/// The tile kernel on a full 4 × 4 tile with prepared offsets ([`offsets4`] of `a`); `None`
/// for a type without 8-bit kernels, mismatched lengths, or an `isa` this CPU lacks.
#[allow(unsafe_code)]
fn tile_q8(
    isa: Isa,
    ty: GgmlType,
    rows: &[&[u8]; TILE],
    a: &[&Q8Row; TILE],
    e4: &[[f32; 4]],
) -> Option<[[f32; TILE]; TILE]> {
    let nb = a[0].d.len();
    if !a.iter().all(|r| r.len() == nb * airlock_gguf::blocks::QK)
        || !rows.iter().all(|r| q8_args_ok(ty, r, a[0]))
        || !a.iter().all(|r| q8_args_ok(ty, rows[0], r))
        || e4.len() < nb
    {
        return None;
    }
    match isa {
        Isa::Portable => {
            let mut out = [[0f32; TILE]; TILE];
            for (o, row) in out.iter_mut().zip(rows) {
                for (v, act) in o.iter_mut().zip(a) {
                    *v = q8::row_dot(ty, row, act);
                }
            }
            Some(out)
        }
        Isa::Avx2 | Isa::Avx512Vnni => {
            #[cfg(target_arch = "x86_64")]
            {
                let mut dec = tile::Decoded::default();
                if !tile_decode(isa, ty, rows, nb, &mut dec) {
                    return None;
                }
                tile_run(isa, ty, &dec, a, e4)
            }
            #[cfg(not(target_arch = "x86_64"))]
            None
        }
    }
}

/// Decodes a tile of four rows of `ty` (`nb` blocks each) into `dec` for [`tile_run`]; false
/// (nothing decoded) for a type without tile kernels, other lengths, or an `isa` this CPU lacks.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn tile_decode(
    isa: Isa,
    ty: GgmlType,
    rows: &[&[u8]; TILE],
    nb: usize,
    dec: &mut tile::Decoded,
) -> bool {
    let Some(kind) = tile::kind(ty) else {
        return false;
    };
    if isa == Isa::Portable
        || !isa.is_supported()
        || !rows.iter().all(|r| r.len() == nb * ty.block_bytes())
    {
        return false;
    }
    // SAFETY: AVX2/FMA/F16C present (every non-portable isa has them; checked above) and every
    // row is `nb` blocks of `ty` (checked above): the contract of `tile::decode`.
    unsafe {
        match kind {
            tile::Q4_0 => tile::decode::<{ tile::Q4_0 }>(rows, nb, dec),
            tile::Q4_1 => tile::decode::<{ tile::Q4_1 }>(rows, nb, dec),
            _ => tile::decode::<{ tile::Q8_0 }>(rows, nb, dec),
        }
    }
    true
}

/// The tile kernel on a decoded weight tile ([`tile_decode`] with the same `isa` and `ty`) and
/// four tokens with prepared offsets ([`offsets4`]); `None` if the lengths disagree.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn tile_run(
    isa: Isa,
    ty: GgmlType,
    dec: &tile::Decoded,
    a: &[&Q8Row; TILE],
    e4: &[[f32; 4]],
) -> Option<[[f32; TILE]; TILE]> {
    let nb = dec.blocks();
    let kind = tile::kind(ty)?;
    if !isa.is_supported()
        || e4.len() < nb
        || !a
            .iter()
            .all(|r| r.d.len() == nb && r.qs.len() == nb * airlock_gguf::blocks::QK)
    {
        return None;
    }
    use tile::{Q4_0, Q4_1, Q8_0, tile_avx2, tile_vnni};
    // SAFETY: the CPU has `isa`'s features (checked above); `dec` holds `nb` decoded blocks of
    // `kind` (the caller decoded it with this `ty`), every activation `nb` blocks and e4 `nb`
    // entries (checked above): the contract of `tile`.
    Some(unsafe {
        match (isa, kind) {
            (Isa::Avx512Vnni, Q4_0) => tile_vnni::<Q4_0, 4, 0>(dec, a, e4),
            (Isa::Avx512Vnni, Q4_1) => tile_vnni::<Q4_1, 4, 0>(dec, a, e4),
            (Isa::Avx512Vnni, _) => tile_vnni::<Q8_0, 4, 0>(dec, a, e4),
            _ => {
                // Sixteen accumulators would spill AVX2's sixteen registers: two 4 × 2 tiles.
                let (p, q) = ([a[0], a[1]], [a[2], a[3]]);
                let (lo, hi) = match kind {
                    Q4_0 => (
                        tile_avx2::<Q4_0, 2, 0>(dec, &p, e4),
                        tile_avx2::<Q4_0, 2, 2>(dec, &q, e4),
                    ),
                    Q4_1 => (
                        tile_avx2::<Q4_1, 2, 0>(dec, &p, e4),
                        tile_avx2::<Q4_1, 2, 2>(dec, &q, e4),
                    ),
                    _ => (
                        tile_avx2::<Q8_0, 2, 0>(dec, &p, e4),
                        tile_avx2::<Q8_0, 2, 2>(dec, &q, e4),
                    ),
                };
                std::array::from_fn(|r| [lo[r][0], lo[r][1], hi[r][0], hi[r][1]])
            }
        }
    })
}

/// `out[r * a.len() + t] = rows[r] · a[t]` for up to [`TILE`] rows × [`TILE`] tokens of a
/// Q4_0/Q4_1/Q8_0 type with 8-bit activations, in one register tile; `None` for another
/// type, empty or oversized inputs, mismatched lengths, or an `isa` this CPU lacks.
pub fn tile_dot_q8(
    isa: Isa,
    ty: GgmlType,
    rows: &[&[u8]],
    a: &[&Q8Row],
    out: &mut [f32],
) -> Option<()> {
    let (nr, nt) = (rows.len(), a.len());
    if nr == 0 || nt == 0 || nr > TILE || nt > TILE || out.len() != nr * nt {
        return None;
    }
    // Short tiles repeat their last row/token; the repeats' results are dropped.
    let rows4: [&[u8]; TILE] = std::array::from_fn(|k| rows[k.min(nr - 1)]);
    let a4: [&Q8Row; TILE] = std::array::from_fn(|k| a[k.min(nt - 1)]);
    if !a4.iter().all(|r| r.d.len() == a4[0].d.len()) {
        return None;
    }
    let res = tile_q8(isa, ty, &rows4, &a4, &offsets4(ty, &a4))?;
    for (r, o) in out.chunks_exact_mut(nt).enumerate() {
        o.copy_from_slice(&res[r][..nt]);
    }
    Some(())
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

/// Rounds `x` to f16 precision in place (kept f32), with the best instruction set.
#[allow(unsafe_code)]
pub fn round_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() != Isa::Portable {
        // SAFETY: AVX2/FMA/F16C detected.
        return unsafe { avx2::round_f16(x) };
    }
    for v in x {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// Up to [`TILE`] tokens of a prompt tile (short groups repeat their last token) and their
/// offset vectors ([`offsets4`]).
struct TokenGroup<'a> {
    acts: [&'a Q8Row; TILE],
    count: usize,
    e4: Vec<[f32; 4]>,
}

/// Rows per rayon task: enough work (≈ 64 KiB of weights) to amortise scheduling.
/// A multiple of [`TILE`], so that prompt tiles do not straddle tasks.
fn rows_per_task(w: &QWeight) -> usize {
    (64 * 1024 / w.row_bytes().max(1)).clamp(TILE, 1024) / TILE * TILE
}

/// `out[t * rows + r] = W[r, :] · x[t * cols ..][..cols]` for `t < n`.
///
/// # Panics
/// If `x.len() != n * w.cols()` or `out.len() != n * w.rows()` (caller bug: the burn op checks
/// shapes first).
pub fn matmul_rows(w: &QWeight, x: &[f32], n: usize, out: &mut [f32]) {
    matmul_rows_multi(&[w], x, n, out);
}

/// True if `ws` can share one [`matmul_rows_multi`] pass: same input width, activation mode
/// and type (K-quants of different types share one pass: their activations are quantized
/// alike).
pub fn can_fuse(ws: &[&QWeight]) -> bool {
    let kq = |w: &QWeight| w.q8_activations() && q8k::supports(w.ggml_type());
    ws.windows(2).all(|p| {
        p[0].cols() == p[1].cols()
            && p[0].q8_activations() == p[1].q8_activations()
            && (p[0].ggml_type() == p[1].ggml_type() || (kq(p[0]) && kq(p[1])))
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
    if w0.q8_activations() && q8k::supports(w0.ggml_type()) {
        return kmatmul::matmul_rows_q8k(ws, x, n, out);
    }
    let isa = Isa::detect();
    if w0.q8_activations()
        && isa == Isa::Avx512Vnni
        && ws.iter().all(|w| {
            matches!(
                w.interleaved(),
                Some(interleaved::Interleaved::Q40(_) | interleaved::Interleaved::Q80(_))
            )
        })
    {
        return matmul_interleaved_q8(ws, x, n, out);
    }
    let ty = w0.ggml_type();
    let chunk = rows_per_task(w0);
    let acts: Vec<Q8Row> = if w0.q8_activations() {
        x.par_chunks(cols).map(Q8Row::quantize).collect()
    } else {
        Vec::new()
    };
    // (encoded bytes, rows) of each matrix, looked up once: `row_of` runs per row.
    let mats: Vec<(&[u8], usize)> = ws.iter().map(|w| (w.bytes(), w.rows())).collect();
    let rb = w0.row_bytes();
    let row_of = |mut r: usize| -> &[u8] {
        for &(bytes, rows) in &mats {
            if r < rows {
                return bytes.get(r * rb..(r + 1) * rb).unwrap_or_default();
            }
            r -= rows;
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
        let k4 = acts.first().and_then(|a| Rows4::new(isa, ty, a));
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, o)| match acts.first() {
                Some(_) => {
                    // Four rows at a time, one from each quarter of the task's band: each of the
                    // four pointers then walks its quarter sequentially, a stream the hardware
                    // prefetchers follow (four adjacent rows are four short streams they do not).
                    let q = o.len().div_ceil(4);
                    let r0 = c * chunk;
                    for i in 0..q {
                        // Quarters past the band's end (short bands) repeat row `i`; dropped below.
                        let idx: [usize; 4] =
                            std::array::from_fn(
                                |k| if k * q + i < o.len() { k * q + i } else { i },
                            );
                        let rs: [&[u8]; 4] = std::array::from_fn(|k| row_of(r0 + idx[k]));
                        // INVARIANT: as for `dot`.
                        let res = k4
                            .as_ref()
                            .and_then(|k| k.dot(&rs))
                            .unwrap_or([f32::NAN; 4]);
                        for (k, &v) in res.iter().enumerate() {
                            o[idx[k]] = v;
                        }
                    }
                }
                None => {
                    for (i, v) in o.iter_mut().enumerate() {
                        *v = dot(row_of(c * chunk + i), 0);
                    }
                }
            });
        return;
    }
    // Each task owns a band of `nr` whole weight rows and writes it token-major (`[n, nr]`) to
    // its piece of `tmp`; the bands are then copied into place row by row (contiguous copies,
    // where a transposition of `[rows, n]` cost 6% of a prompt pass).
    let mut tmp = vec![0f32; rows * n];
    if acts.len() == n && isa != Isa::Portable {
        // Prompt processing: tiles of 4 rows × 4 tokens (short tiles repeat their last row or
        // token). Token groups and their offset vectors are prepared once for all tasks.
        let groups: Vec<TokenGroup<'_>> = (0..n)
            .step_by(TILE)
            .map(|t0| {
                let count = (n - t0).min(TILE);
                let acts: [&Q8Row; TILE] = std::array::from_fn(|k| &acts[t0 + k.min(count - 1)]);
                let e4 = offsets4(ty, &acts);
                TokenGroup { acts, count, e4 }
            })
            .collect();
        #[cfg(target_arch = "x86_64")]
        tmp.par_chunks_mut(chunk * n)
            .enumerate()
            .for_each(|(c, o)| {
                let nr = o.len() / n;
                let mut dec = tile::Decoded::default();
                for r0 in (0..nr).step_by(TILE) {
                    let rc = (nr - r0).min(TILE);
                    let rs: [&[u8]; TILE] =
                        std::array::from_fn(|k| row_of(c * chunk + r0 + k.min(rc - 1)));
                    // INVARIANT: QWeight rows are `cols` values of `ty` and the activations were
                    // quantized from `cols` values: decoding and the tiles cannot fail.
                    let ok = tile_decode(isa, ty, &rs, cols / airlock_gguf::blocks::QK, &mut dec);
                    for (gi, g) in groups.iter().enumerate() {
                        let res = ok
                            .then(|| tile_run(isa, ty, &dec, &g.acts, &g.e4))
                            .flatten()
                            .unwrap_or([[f32::NAN; 4]; 4]);
                        for (r, rv) in res.iter().enumerate().take(rc) {
                            for (t, &v) in rv.iter().enumerate().take(g.count) {
                                o[(gi * TILE + t) * nr + r0 + r] = v;
                            }
                        }
                    }
                }
            });
    } else if acts.is_empty() && decodes_blocks(isa, ty) {
        // Types whose one-token product decodes each block and dots it in f32 ([`row_dot`]
        // for K-quants, and every block type on the portable path): the row is decoded once
        // and serves every token, with the same per-block dots and sum as the one-token
        // product, so a token's result does not depend on how many tokens share the call.
        let bs = ty.block_size();
        tmp.par_chunks_mut(chunk * n)
            .enumerate()
            .for_each_init(Vec::new, |dec, (c, o)| {
                let nr = o.len() / n;
                dec.resize(cols, 0f32);
                for i in 0..nr {
                    portable::decode_row(ty, row_of(c * chunk + i), dec);
                    for t in 0..n {
                        let mut sum = 0f32;
                        for (db, xb) in dec
                            .chunks_exact(bs)
                            .zip(x[t * cols..(t + 1) * cols].chunks_exact(bs))
                        {
                            sum += dot_f32(db, xb);
                        }
                        o[t * nr + i] = sum;
                    }
                }
            });
    } else {
        tmp.par_chunks_mut(chunk * n)
            .enumerate()
            .for_each(|(c, o)| {
                let nr = o.len() / n;
                for i in 0..nr {
                    let row = row_of(c * chunk + i);
                    for t in 0..n {
                        o[t * nr + i] = dot(row, t);
                    }
                }
            });
    }
    for (c, band) in tmp.chunks(chunk * n).enumerate() {
        let nr = band.len() / n;
        for (t, src) in band.chunks_exact(nr).enumerate() {
            out[t * rows + c * chunk..][..nr].copy_from_slice(src);
        }
    }
}

/// [`matmul_rows_multi`] for matrices that all carry a Q4_0 or Q8_0 copy interleaved by
/// sixteen (`q40x16`, `q80x16`): every row is in a group (their row counts are multiples of sixteen), one token
/// through the one-token kernel, several four at a time (the last one to three alone); each
/// bitwise the layout's scalar twin, so the product is token-invariant.
fn matmul_interleaved_q8(ws: &[&QWeight], x: &[f32], n: usize, out: &mut [f32]) {
    const G: usize = interleaved::ROWS;
    let cols = ws[0].cols();
    let rows: usize = ws.iter().map(|w| w.rows()).sum();
    let acts: Vec<Q8Row> = if n == 1 {
        vec![Q8Row::quantize(x)]
    } else {
        x.par_chunks(cols).map(Q8Row::quantize).collect()
    };
    let refs: Vec<&Q8Row> = acts.iter().collect();
    // Group `g` of the stacked matrices (looked up per group: no list built per call).
    let mats: Vec<&interleaved::Interleaved> = ws.iter().filter_map(|w| w.interleaved()).collect();
    let group_of = |mut g: usize| {
        for m in &mats {
            if g < m.groups() {
                return Some(m.group(g));
            }
            g -= m.groups();
        }
        None
    };
    // ≈ 64 KiB of weights per task, whole groups.
    let per_task = (64 * 1024 / (ws[0].row_bytes() * G).max(1)).clamp(1, 64);
    let mut tmp = vec![0f32; rows * n];
    tmp.par_chunks_mut(per_task * G * n)
        .enumerate()
        .for_each(|(c, o)| {
            let nr = o.len() / n;
            for k in 0..nr / G {
                // INVARIANT: every row is in a group (each matrix is interleaved) and the
                // lengths agree (one width, activations of it): neither lookup nor kernel
                // fails; should one, its outputs are NaN rather than zeros.
                let group = group_of(c * per_task + k);
                interleaved::for_tokens(
                    &refs,
                    |four| group?.dot_tokens_q8::<4>(&four),
                    |a| group?.dot_tokens_q8::<1>(&[a]).map(|v| v[0]),
                    |t, r, v| o[t * nr + k * G + r] = v,
                );
            }
        });
    let band = per_task * G;
    for (c, b) in tmp.chunks(band * n).enumerate() {
        let nr = b.len() / n;
        for (t, src) in b.chunks_exact(nr).enumerate() {
            out[t * rows + c * band..][..nr].copy_from_slice(src);
        }
    }
}

/// True if [`row_dot`] on `isa` computes a row of `ty` as decoded blocks (the reference
/// decoder) each dotted with [`dot_f32`] and summed in order: every block type on the portable
/// path; on x86-64 those without a dedicated kernel (K-quants and the other block types).
fn decodes_blocks(isa: Isa, ty: GgmlType) -> bool {
    ty.block_size() > 1
        && (isa == Isa::Portable || !matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0))
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
