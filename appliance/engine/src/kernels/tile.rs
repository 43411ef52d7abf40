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
//! `d_w · d_a` in f32), so results agree with it up to f32 summation order.
//!
//! # Safety contract (every `unsafe fn` here)
//! * The CPU has the instruction sets named in the function's `target_feature`.
//! * Every `rows[r]` is exactly `nb` whole blocks of the kernel's weight type, where `nb` is the
//!   block count of every `a[t]` (`a[t].qs.len() == 32 nb`, `a[t].d.len() == nb`), and
//!   `e4.len() >= nb` for Q4_0/Q4_1. [`super::tile_dot_q8`] checks all of it.

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

macro_rules! tile_kernel {
    ($feat:literal, $dot:ident, $name:ident) => {
        /// `out[r][t] = rows[r] · a[t]` for an `R × T` tile; `e4[b]` holds, per block `b`, the
        /// offset factor of each token (`s` for Q4_1, `−8 d Σq` for Q4_0), token `t` in lane
        /// `L0 + t` (`L0 + T <= 4`).
        ///
        /// # Safety
        /// See the module's contract.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const K: u8, const R: usize, const T: usize, const L0: usize>(
            rows: &[&[u8]; R],
            a: &[&Q8Row; T],
            e4: &[[f32; 4]],
        ) -> [[f32; T]; R] {
            let bb = match K {
                Q4_0 => 18,
                Q4_1 => 20,
                _ => 34,
            };
            let nb = a[0].d.len();
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let mut off = [_mm_setzero_ps(); R];
            for b in 0..nb {
                // SAFETY: b < nb; every row holds nb blocks of bb bytes and every activation
                // nb blocks of 32 codes (contract), so each pointer below stays in its slice.
                unsafe {
                    let mut w = [_mm256_setzero_si256(); R];
                    let mut sw = [_mm256_setzero_si256(); R];
                    let mut dw = [_mm256_setzero_ps(); R];
                    for r in 0..R {
                        let blk = rows[r].as_ptr().add(b * bb);
                        let d = f16_at_ptr(blk);
                        dw[r] = _mm256_set1_ps(d);
                        if K == Q8_0 {
                            let q = _mm256_loadu_si256(blk.add(2).cast());
                            // |w| as unsigned; the sign moves onto the activation codes.
                            w[r] = _mm256_sign_epi8(q, q);
                            sw[r] = q;
                        } else {
                            w[r] = nibbles32_ptr(blk.add(bb - QK / 2));
                            let c = if K == Q4_1 { f16_at_ptr(blk.add(2)) } else { d };
                            let e = _mm_loadu_ps(e4.as_ptr().add(b).cast());
                            off[r] = _mm_fmadd_ps(_mm_set1_ps(c), e, off[r]);
                        }
                    }
                    for t in 0..T {
                        let x = _mm256_loadu_si256(a[t].qs.as_ptr().add(b * QK).cast());
                        let da = _mm256_set1_ps(*a[t].d.as_ptr().add(b));
                        for r in 0..R {
                            let p = if K == Q8_0 {
                                $dot(w[r], _mm256_sign_epi8(x, sw[r]))
                            } else {
                                $dot(w[r], x)
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
