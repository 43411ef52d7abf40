//! AVX-512 VNNI decode kernel: four weight rows times one token's 8-bit activations
//! (x86-64), for single-token steps, where every weight is used once per step.
//!
//! The 256-bit kernels handle one row per 256-bit vector and spend most of their instructions
//! on per-block bookkeeping (unpacking, converting the f16 scales, broadcasting). Here one
//! 512-bit vector holds the same block of four rows: the 4-bit codes of four rows are unpacked
//! in one pass, the activation block is broadcast once, and the four rows' f16 scales are
//! converted by one `vcvtph2ps`. About a quarter of the instructions per weight.
//!
//! **The arithmetic is lane for lane that of the register tile** (`super::tile`), which is
//! what prompt chunks use: per row and block, the exact integer dot of each group of four
//! codes (`vpdpbusd`), converted to f32, times `d_w · d_a`, fused-added into the lane's
//! accumulator; per row an offset `Σ fma(c, e)` (`m · s` for Q4_1, `d_w · (−8 d_a Σq)` for
//! Q4_0); then the eight lanes summed in [`super::avx2::hsum`]'s order. A token's outputs are
//! therefore bitwise the same whether it is decoded alone or inside a prompt chunk (tests
//! compare them), which lets a cached position stand for a freshly computed one.
//!
//! For Q4 types, vector `lo` holds codes 0..16 of row `r` in 128-bit lane `r` (the 256-bit
//! kernel's lanes 0..4) and `hi` codes 16..32 (its lanes 4..8); for Q8_0 each 256-bit half holds
//! one row's 32 codes, exactly as the 256-bit kernel.
//!
//! # Safety contract (every `unsafe fn` here)
//! * The CPU has AVX2, FMA, F16C, AVX-512 F/VL/BW and VNNI.
//! * Every `rows[r]` is exactly `a.len() / 32` whole blocks of the kernel's weight type, and
//!   `a`'s per-block vectors (`d`, `s`, `isum`) have `a.len() / 32` entries.
//!   [`super::rows4_dot_q8`] checks all of it.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use airlock_gguf::blocks::QK;

use super::avx2::hsum;
use super::q8::Q8Row;
use super::tile::{Q4_0, Q4_1};

/// Bytes ahead of each row pointer to prefetch (non-temporal: each weight is used once per
/// step, and the activations and keys/values should keep the caches).
const PREFETCH: usize = 512;

/// Sums the four lanes of `s` as [`hsum`]'s last two steps do.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum4(s: __m128) -> f32 {
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// The four bytes at `p` as an i32 (a block's f16 header, plus whatever follows it).
///
/// # Safety
/// `p..p + 4` is readable.
#[inline]
unsafe fn u32_at(p: *const u8) -> i32 {
    // SAFETY: four readable bytes (contract); unaligned read.
    unsafe { p.cast::<i32>().read_unaligned() }
}

/// `[rows[r] · a]` for four Q4_0 (`K == Q4_0`) or Q4_1 rows.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_q4_rows4<const K: u8>(rows: &[&[u8]; 4], a: &Q8Row) -> [f32; 4] {
    let bb = if K == Q4_0 { 18 } else { 20 };
    let nb = a.d.len();
    let m4 = _mm512_set1_epi8(0x0f);
    let zero = _mm512_setzero_si512();
    // Each row's `d` (f16 at byte 0 of its 4-byte header read) replicated over its lane.
    let idx_d = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
    // Q4_1: the rows' `m` (bytes 2..4); Q4_0: their `d` (the offset factor is `d_w`).
    let idx_c = if K == Q4_1 {
        _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7)
    } else {
        _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)
    };
    let (mut acc_lo, mut acc_hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut off = _mm_setzero_ps();
    let p = [
        rows[0].as_ptr(),
        rows[1].as_ptr(),
        rows[2].as_ptr(),
        rows[3].as_ptr(),
    ];
    let (qa, da, sa, isum) = (a.qs.as_ptr(), a.d.as_ptr(), a.s.as_ptr(), a.isum.as_ptr());
    for b in 0..nb {
        // SAFETY: b < nb: every row holds nb blocks of bb bytes (a 4-byte header read stays
        // inside an 18- or 20-byte block), the activation nb blocks of 32 codes and nb scales
        // (contract).
        unsafe {
            let o = b * bb;
            for &pr in &p {
                _mm_prefetch::<_MM_HINT_NTA>(pr.wrapping_add(o + PREFETCH).cast());
            }
            let q = _mm512_castsi128_si512(_mm_loadu_si128(p[0].add(o + bb - 16).cast()));
            let q = _mm512_inserti32x4::<1>(q, _mm_loadu_si128(p[1].add(o + bb - 16).cast()));
            let q = _mm512_inserti32x4::<2>(q, _mm_loadu_si128(p[2].add(o + bb - 16).cast()));
            let q = _mm512_inserti32x4::<3>(q, _mm_loadu_si128(p[3].add(o + bb - 16).cast()));
            let lo = _mm512_and_si512(q, m4);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4);
            let xlo = _mm512_broadcast_i32x4(_mm_loadu_si128(qa.add(b * QK).cast()));
            let xhi = _mm512_broadcast_i32x4(_mm_loadu_si128(qa.add(b * QK + 16).cast()));
            let plo = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, lo, xlo));
            let phi = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, hi, xhi));
            let h = _mm_setr_epi32(
                u32_at(p[0].add(o)),
                u32_at(p[1].add(o)),
                u32_at(p[2].add(o)),
                u32_at(p[3].add(o)),
            );
            // [d0, m0, d1, m1, d2, m2, d3, m3] (Q4_0: code bytes in place of m, unused).
            let dm = _mm256_cvtph_ps(h);
            let dw = _mm512_permutexvar_ps(idx_d, _mm512_castps256_ps512(dm));
            let s = _mm512_mul_ps(dw, _mm512_set1_ps(*da.add(b)));
            acc_lo = _mm512_fmadd_ps(s, plo, acc_lo);
            acc_hi = _mm512_fmadd_ps(s, phi, acc_hi);
            let c = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(dm, idx_c));
            let e = if K == Q4_1 {
                *sa.add(b)
            } else {
                -8.0 * *da.add(b) * *isum.add(b) as f32
            };
            off = _mm_fmadd_ps(c, _mm_set1_ps(e), off);
        }
    }
    // Per row: lanes 0..4 plus lanes 4..8 (hsum's first step), then its last two.
    let s = _mm512_add_ps(acc_lo, acc_hi);
    let mut o = [0f32; 4];
    // SAFETY: o has four lanes.
    unsafe { _mm_storeu_ps(o.as_mut_ptr(), off) };
    [
        hsum4(_mm512_extractf32x4_ps::<0>(s)) + o[0],
        hsum4(_mm512_extractf32x4_ps::<1>(s)) + o[1],
        hsum4(_mm512_extractf32x4_ps::<2>(s)) + o[2],
        hsum4(_mm512_extractf32x4_ps::<3>(s)) + o[3],
    ]
}

/// `[rows[r] · a]` for four Q8_0 rows.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_q8_0_rows4(rows: &[&[u8]; 4], a: &Q8Row) -> [f32; 4] {
    const BB: usize = 34;
    let nb = a.d.len();
    let zero = _mm512_setzero_si512();
    let idx01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    let idx23 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    let (mut acc01, mut acc23) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let p = [
        rows[0].as_ptr(),
        rows[1].as_ptr(),
        rows[2].as_ptr(),
        rows[3].as_ptr(),
    ];
    let (qa, da) = (a.qs.as_ptr(), a.d.as_ptr());
    // `vpsignb` has no 512-bit form: |w| by `vpabsb`, and the activation negated where w < 0
    // (where w == 0 the product is 0 either way): the same integer products as the 256-bit
    // kernel's `sign(w, w) · sign(x, w)`.
    let dot = |w: __m512i, x: __m512i| {
        let neg = _mm512_movepi8_mask(w);
        let xs = _mm512_mask_sub_epi8(x, neg, zero, x);
        _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_abs_epi8(w), xs))
    };
    for b in 0..nb {
        // SAFETY: b < nb: every row holds nb blocks of 34 bytes (codes at 2..34, a 4-byte
        // header read at 0), the activation nb blocks of 32 codes and nb scales (contract).
        unsafe {
            let o = b * BB;
            for &pr in &p {
                _mm_prefetch::<_MM_HINT_NTA>(pr.wrapping_add(o + PREFETCH).cast());
            }
            let w = |r: usize| _mm256_loadu_si256(p[r].add(o + 2).cast());
            let w01 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(w(0)), w(1));
            let w23 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(w(2)), w(3));
            let x = _mm512_broadcast_i64x4(_mm256_loadu_si256(qa.add(b * QK).cast()));
            let h = _mm_setr_epi32(
                u32_at(p[0].add(o)),
                u32_at(p[1].add(o)),
                u32_at(p[2].add(o)),
                u32_at(p[3].add(o)),
            );
            // [d0, _, d1, _, d2, _, d3, _]
            let dm = _mm512_castps256_ps512(_mm256_cvtph_ps(h));
            let dab = _mm512_set1_ps(*da.add(b));
            let s01 = _mm512_mul_ps(_mm512_permutexvar_ps(idx01, dm), dab);
            let s23 = _mm512_mul_ps(_mm512_permutexvar_ps(idx23, dm), dab);
            acc01 = _mm512_fmadd_ps(s01, dot(w01, x), acc01);
            acc23 = _mm512_fmadd_ps(s23, dot(w23, x), acc23);
        }
    }
    let high = |v: __m512| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    // Q8_0 has no offset term; `+ 0.0` is the tile's addition of its zero offset lane (it turns
    // a −0.0 sum into +0.0, so it is kept for bitwise agreement).
    // SAFETY: features present (contract).
    unsafe {
        [
            hsum(_mm512_castps512_ps256(acc01)) + 0.0,
            hsum(high(acc01)) + 0.0,
            hsum(_mm512_castps512_ps256(acc23)) + 0.0,
            hsum(high(acc23)) + 0.0,
        ]
    }
}
