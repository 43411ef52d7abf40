//! Register-tiled 8-bit-activation micro-kernel for prompt processing (x86-64).
//!
//! [`super::avx2::dot_q8_x4`] decodes a weight block once for four tokens but keeps one
//! accumulator per token and does the scale and offset arithmetic in scalar code per token and
//! block. Here a tile of `R` weight rows × `T` tokens keeps `R · T` vector accumulators in
//! registers (16 of the 32 ymm registers AVX-512VL gives, for 4 × 4): per block each weight
//! row is unpacked once and each token's 32 codes loaded once, and every (row, token) pair costs
//! one 8-bit dot (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd`), one conversion, one scale multiply
//! and one FMA. The per-block offset term (`m · s` for Q4_1, `−8 d_w d_a Σq` for Q4_0) is a
//! vector over the tile's tokens (`e4` below), one FMA per row and block.
//!
//! The arithmetic per pair is that of [`super::q8::row_dot`] (exact integer block sums, then
//! `d_w · d_a` in f32), so results agree with it up to f32 summation order; and per pair the
//! operations and their order are exactly those of the one-token kernel `super::avx2::dot_q8`
//! (same accumulator, same fused offset term), so a token's product is bitwise the same
//! whether it was multiplied alone (decode) or in a tile of four (prompt): the forward pass is
//! chunk-invariant, which batching and the prefix cache rely on.
//!
//! # Safety contract (every `unsafe fn` here)
//! * The CPU has the instruction sets named in the function's `target_feature`.
//! * Every `rows[r]` is exactly `nb` whole blocks of the kernel's weight type, where `nb` is the
//!   block count of every `a[t]` (`a[t].qs.len() == 32 nb`, `a[t].d.len() == nb`), and
//!   `e4.len() >= nb`. [`super::tile_dot_q8`] checks all of it.
//!
//! The weight tile is decoded once ([`decode`]: nibbles to bytes, f16 scales to f32) and then
//! serves every token group of the prompt from L1, so the inner loop is loads, dots, converts
//! and FMAs only.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use airlock_gguf::GgmlType;
use airlock_gguf::blocks::QK;

use super::avx2::{dot_u8_i8, dot_u8_i8_vnni, f16_at_ptr, hsum, nibbles32_ptr};
use super::q8::Q8Row;

/// Weight encodings of the tile kernel, as a const parameter (one specialised loop each).
pub(super) const Q4_0: u8 = 0;
/// See [`Q4_0`].
pub(super) const Q4_1: u8 = 1;
/// See [`Q4_0`].
pub(super) const Q8_0: u8 = 2;

/// The kind constant of `ty`, `None` for a type without a tile kernel.
pub(super) fn kind(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::Q4_0 => Some(Q4_0),
        GgmlType::Q4_1 => Some(Q4_1),
        GgmlType::Q8_0 => Some(Q8_0),
        _ => None,
    }
}

/// A tile of [`TILE_ROWS`] weight rows decoded once for all token groups of a prompt: per block
/// (then per row) the 32 codes as unsigned bytes (`|w|` for Q8_0, whose signs are kept in `sign`),
/// the scale `d`, and the offset factor `c` (`m` for Q4_1, `d` for Q4_0).
#[derive(Default)]
pub(super) struct Decoded {
    q: Vec<[u8; QK]>,
    sign: Vec<[u8; QK]>,
    d: Vec<[f32; TILE_ROWS]>,
    c: Vec<[f32; TILE_ROWS]>,
}

/// Rows of a [`Decoded`] tile.
pub(super) const TILE_ROWS: usize = 4;

impl Decoded {
    /// Blocks per row.
    pub(super) fn blocks(&self) -> usize {
        self.d.len()
    }
}

/// Decodes `rows` (each `nb` blocks of kind `K`) into `out`, reusing its allocations.
///
/// # Safety
/// AVX2/FMA/F16C present; every row is exactly `nb` whole blocks of kind `K`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn decode<const K: u8>(rows: &[&[u8]; TILE_ROWS], nb: usize, out: &mut Decoded) {
    let bb = match K {
        Q4_0 => 18,
        Q4_1 => 20,
        _ => 34,
    };
    out.q.resize(nb * TILE_ROWS, [0; QK]);
    out.sign
        .resize(if K == Q8_0 { nb * TILE_ROWS } else { 0 }, [0; QK]);
    out.d.resize(nb, [0.0; TILE_ROWS]);
    out.c.resize(nb, [0.0; TILE_ROWS]);
    for b in 0..nb {
        for (r, row) in rows.iter().enumerate() {
            // SAFETY: b < nb and the row holds nb blocks of bb bytes (contract); the stores go
            // to 32-byte arrays.
            unsafe {
                let blk = row.as_ptr().add(b * bb);
                let d = f16_at_ptr(blk);
                out.d[b][r] = d;
                let dst = out.q[b * TILE_ROWS + r].as_mut_ptr().cast();
                if K == Q8_0 {
                    let q = _mm256_loadu_si256(blk.add(2).cast());
                    _mm256_storeu_si256(dst, _mm256_sign_epi8(q, q));
                    _mm256_storeu_si256(out.sign[b * TILE_ROWS + r].as_mut_ptr().cast(), q);
                } else {
                    _mm256_storeu_si256(dst, nibbles32_ptr(blk.add(bb - QK / 2)));
                    out.c[b][r] = if K == Q4_1 { f16_at_ptr(blk.add(2)) } else { d };
                }
            }
        }
    }
}

macro_rules! tile_kernel {
    ($feat:literal, $dot:ident, $name:ident) => {
        /// `out[r][t] = row r of w · a[t]` for a decoded tile and `T` tokens; `e4[b]` holds, per
        /// block `b`, the offset factor of each token (`s` for Q4_1, `−8 d Σq` for Q4_0), token
        /// `t` in lane `L0 + t` (`L0 + T <= 4`).
        ///
        /// # Safety
        /// See the module's contract; `w` was decoded ([`decode`]) with kind `K` from rows of
        /// `a[t]`'s block count.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const K: u8, const T: usize, const L0: usize>(
            w: &Decoded,
            a: &[&Q8Row; T],
            e4: &[[f32; 4]],
        ) -> [[f32; T]; TILE_ROWS] {
            const R: usize = TILE_ROWS;
            let nb = w.blocks();
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let mut off = [_mm_setzero_ps(); R];
            for b in 0..nb {
                // SAFETY: b < nb; w holds nb blocks of R rows, every activation nb blocks of 32
                // codes and e4 nb entries (contract), so each pointer stays in its slice.
                unsafe {
                    let mut dw = [_mm256_setzero_ps(); R];
                    let qp = w.q.as_ptr().add(b * R);
                    for r in 0..R {
                        dw[r] = _mm256_set1_ps(*w.d.as_ptr().add(b).cast::<f32>().add(r));
                        if K != Q8_0 {
                            let c = *w.c.as_ptr().add(b).cast::<f32>().add(r);
                            let e = _mm_loadu_ps(e4.as_ptr().add(b).cast());
                            off[r] = _mm_fmadd_ps(_mm_set1_ps(c), e, off[r]);
                        }
                    }
                    for t in 0..T {
                        let x = _mm256_loadu_si256(a[t].qs.as_ptr().add(b * QK).cast());
                        let da = _mm256_set1_ps(*a[t].d.as_ptr().add(b));
                        for r in 0..R {
                            let wq = _mm256_loadu_si256(qp.add(r).cast());
                            let p = if K == Q8_0 {
                                let sw = _mm256_loadu_si256(w.sign.as_ptr().add(b * R + r).cast());
                                $dot(wq, _mm256_sign_epi8(x, sw))
                            } else {
                                $dot(wq, x)
                            };
                            let s = _mm256_mul_ps(dw[r], da);
                            acc[r][t] = _mm256_fmadd_ps(s, p, acc[r][t]);
                        }
                    }
                }
            }
            let mut out = [[0f32; T]; R];
            for r in 0..R {
                let mut o = [0f32; 4];
                // SAFETY: o has 4 lanes.
                unsafe { _mm_storeu_ps(o.as_mut_ptr(), off[r]) };
                for t in 0..T {
                    // SAFETY: features checked by the caller.
                    out[r][t] = unsafe { hsum(acc[r][t]) } + o[L0 + t];
                }
            }
            out
        }
    };
}

tile_kernel!("avx2,fma,f16c", dot_u8_i8, tile_avx2);
tile_kernel!(
    "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
    dot_u8_i8_vnni,
    tile_vnni
);
