//! K-quant (Q4_K, Q5_K, Q6_K) rows times 8-bit activations in super-blocks of 256
//! ([`super::q8k::Q8KRow`]), x86-64.
//!
//! The arithmetic is, lane for lane, that of the scalar twins in [`super::q8k`] (ggml's AVX2
//! `ggml_vec_dot_q*_K_q8_K`): per super-block eight exact i32 lanes, one conversion and one
//! fused multiply-add into eight f32 accumulators, the min term as ggml keeps it, and
//! `hsum_float_8`'s final order. Tests compare every kernel here bitwise with its twin.
//!
//! * `*_avx2`: 256-bit vectors, one 32-code vector per `vpmaddubsw` (ggml's layout).
//! * `*_avx512`: the same integer lanes with two 32-code vectors per 512-bit instruction: the
//!   low 256 bits carry one vector and the high 256 bits the next; the two halves' i32 lanes
//!   are added at the end of the super-block (exact), which gives the 256-bit kernel's lanes.
//!   The scale multiply and the accumulation are one VNNI `vpdpwssd` (the same exact i32 sums
//!   as `vpmaddwd` then `vpaddd`).
//!   About half the instructions per weight, which matters where decode must keep up with
//!   memory bandwidth on two cores.
//!
//! # Safety contract (every `unsafe fn` here)
//! * The CPU has the instruction sets named in the function's `target_feature`.
//! * `row` is exactly `a.len() / 256` whole blocks of the kernel's type and `a` is well formed
//!   ([`super::q8k::Q8KRow::is_well_formed`]). [`super::row_dot_q8k`] checks both.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use airlock_gguf::blocks::{K_SCALE_SIZE, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, QK_K};

use super::avx2::{f16_at_ptr, hsum};
use super::q8k::{BSUMS, Q8KRow, k4_scales_mins};

/// `vpshufb` mask broadcasting i16 element `k` of each 128-bit lane over the lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bcast16(k: i32) -> __m256i {
    _mm256_set1_epi16((((2 * k + 1) << 8) | (2 * k)) as i16)
}

/// A Q4_K/Q5_K super-block's header: `(d, dmin, scales ×2 lanes, min lanes)` where `d` and
/// `dmin` already carry the activation's scale (`dmin` negated), the scales are the eight i16
/// in both 128-bit lanes, and the min lanes the four i32 `m_2k Σ_2k + m_2k+1 Σ_2k+1`.
///
/// # Safety
/// `b` points at a whole Q4_K/Q5_K block, `bs` at 16 readable i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_header(b: *const u8, da: f32, bs: *const i16) -> (f32, f32, __m256i, __m128i) {
    // SAFETY: a whole block: d at 0, dmin at 2, 12 scale bytes at 4 (contract).
    let (dm, sm) = unsafe {
        (
            // Both halves in one load and one conversion. Converting each alone compiles to
            // `vpinsrw` into a free register, often the accumulator: every block then waited
            // for the previous block's multiply-add (~27 cycles a block instead of ~20).
            _mm_cvtph_ps(_mm_cvtsi32_si128(b.cast::<i32>().read_unaligned())),
            k4_scales_mins(std::slice::from_raw_parts(b.add(4), K_SCALE_SIZE)),
        )
    };
    let (dw, mw) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
    // SAFETY: `sm` has 16 bytes; `bs` points at 16 i16 (contract).
    let (ms, q8sums) = unsafe {
        (
            _mm256_cvtepu8_epi16(_mm_loadu_si128(sm.as_ptr().cast())),
            _mm256_loadu_si256(bs.cast()),
        )
    };
    let q8s = _mm_hadd_epi16(
        _mm256_castsi256_si128(q8sums),
        _mm256_extracti128_si256::<1>(q8sums),
    );
    let prod = _mm_madd_epi16(_mm256_extracti128_si256::<1>(ms), q8s);
    let sc = _mm256_castsi256_si128(ms);
    (da * dw, -da * mw, _mm256_set_m128i(sc, sc), prod)
}

/// The 32 codes of sub-blocks `2j` (low nibbles of `q`) and `2j + 1` (high nibbles) of a Q5_K
/// super-block, fifth bits from `hbits` (bits `2j`, `2j + 1` of each byte).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_codes(q: __m256i, hbits: __m256i, j: i32) -> (__m256i, __m256i) {
    let m4 = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    let sh = _mm_cvtsi32_si128(2 * j);
    let sh1 = _mm_cvtsi32_si128(2 * j + 1);
    let h0 = _mm256_and_si256(_mm256_srl_epi16(hbits, sh), one);
    let h1 = _mm256_and_si256(_mm256_srl_epi16(hbits, sh1), one);
    let lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16::<4>(h0));
    let hi = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
        _mm256_slli_epi16::<4>(h1),
    );
    (lo, hi)
}

/// The integer lanes of one Q4_K (`Q5 == false`) or Q5_K super-block with 256-bit vectors.
///
/// # Safety
/// `qs` points at the block's 128 code bytes, `qh` (Q5_K) at its 32 high-bit bytes, `q8` at
/// 256 activation codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_sumi_avx2<const Q5: bool>(
    qs: *const u8,
    qh: *const u8,
    q8: *const i8,
    scales: __m256i,
) -> __m256i {
    let m4 = _mm256_set1_epi8(0x0f);
    // SAFETY: 32 readable bytes (contract; unused for Q4_K).
    let hbits = if Q5 {
        unsafe { _mm256_loadu_si256(qh.cast()) }
    } else {
        _mm256_setzero_si256()
    };
    let mut sumi = _mm256_setzero_si256();
    for j in 0..(QK_K / 64) as i32 {
        let sl = _mm256_shuffle_epi8(scales, bcast16(2 * j));
        let sh = _mm256_shuffle_epi8(scales, bcast16(2 * j + 1));
        // SAFETY: j < 4: bytes 32j..32j + 32 of the codes, 64j..64j + 64 of the activation.
        let (q, xl, xh) = unsafe {
            (
                _mm256_loadu_si256(qs.add(32 * j as usize).cast()),
                _mm256_loadu_si256(q8.add(64 * j as usize).cast()),
                _mm256_loadu_si256(q8.add(64 * j as usize + 32).cast()),
            )
        };
        let (ql, qhi) = if Q5 {
            q5_codes(q, hbits, j)
        } else {
            (
                _mm256_and_si256(q, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
            )
        };
        let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(ql, xl));
        let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(qhi, xh));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
    }
    sumi
}

/// The integer lanes of one Q4_K / Q5_K super-block, two 32-code vectors per 512-bit
/// instruction (sub-block `2j` low, `2j + 1` high), folded to the 256-bit kernel's lanes.
///
/// Each 32 code bytes are loaded once into both halves of a vector; one masked shift moves the
/// high half's upper nibbles down, so a pair of sub-blocks costs a load, a shift and a mask
/// (where the 256-bit layout needs two masks, a shift and an insert): the kernel is bound by
/// instructions per weight at decode, not by memory.
///
/// # Safety
/// As [`k4_sumi_avx2`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
unsafe fn k4_sumi_avx512<const Q5: bool>(
    qs: *const u8,
    qh: *const u8,
    q8: *const i8,
    scales: __m256i,
) -> __m256i {
    let m4 = _mm512_set1_epi8(0x0f);
    // Scales as eight i16 in each 128-bit lane; per j the high 256 bits take sub-block 2j + 1.
    let sc512 = _mm512_broadcast_i32x4(_mm256_castsi256_si128(scales));
    // SAFETY: 32 readable bytes (contract; unused for Q4_K).
    let hbits = if Q5 {
        unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(qh.cast())) }
    } else {
        _mm512_setzero_si512()
    };
    let mut sumi = _mm512_setzero_si512();
    for j in 0..(QK_K / 64) as i32 {
        let sel =
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(bcast16(2 * j)), bcast16(2 * j + 1));
        let s = _mm512_shuffle_epi8(sc512, sel);
        // SAFETY: j < 4: bytes 32j..32j + 32 of the codes, 64j..64j + 64 of the activation.
        let (q, x) = unsafe {
            (
                _mm512_broadcast_i64x4(_mm256_loadu_si256(qs.add(32 * j as usize).cast())),
                _mm512_loadu_si512(q8.add(64 * j as usize).cast()),
            )
        };
        // Low half: the low nibbles (sub-block 2j); high half: the high nibbles (2j + 1).
        let mut w = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xffff_0000, q, 4), m4);
        if Q5 {
            // The fifth bit, bit 2j (low half) or 2j + 1 (high half) of each byte, rotated
            // within its 32-bit lane to bit 4 of the same byte.
            let rot = _mm512_inserti64x4::<1>(
                _mm512_set1_epi32((4 - 2 * j).rem_euclid(32)),
                _mm256_set1_epi32((3 - 2 * j).rem_euclid(32)),
            );
            let h = _mm512_and_si512(_mm512_rolv_epi32(hbits, rot), _mm512_set1_epi8(0x10));
            w = _mm512_or_si512(w, h);
        }
        sumi = _mm512_dpwssd_epi32(sumi, s, _mm512_maddubs_epi16(w, x));
    }
    _mm256_add_epi32(
        _mm512_castsi512_si256(sumi),
        _mm512_extracti64x4_epi64::<1>(sumi),
    )
}

macro_rules! k4_kernels {
    ($feat:literal, $sumi:ident, $q4:ident, $q5:ident) => {
        /// `row · a` for a Q4_K row: ggml's `ggml_vec_dot_q4_K_q8_K` bitwise.
        ///
        /// # Safety
        /// See the module's contract.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $q4(row: &[u8], a: &Q8KRow) -> f32 {
            let nb = a.d.len();
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = _mm_setzero_ps();
            let (p, q8, bs) = (row.as_ptr(), a.qs.as_ptr(), a.bsums.as_ptr());
            for i in 0..nb {
                // SAFETY: i < nb: block i of the row (144 bytes), super-block i of the
                // activation (256 codes, 16 sums) exist (contract).
                unsafe {
                    let b = p.add(i * Q4_K_BYTES);
                    let (d, dmin, scales, prod) =
                        k4_header(b, *a.d.get_unchecked(i), bs.add(i * BSUMS));
                    acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
                    let sumi = $sumi::<false>(b.add(4 + K_SCALE_SIZE), b, q8.add(i * QK_K), scales);
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
                }
            }
            let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
            let m = _mm_add_ss(m, _mm_movehdup_ps(m));
            // SAFETY: features present (contract).
            unsafe { hsum(acc) + _mm_cvtss_f32(m) }
        }

        /// `row · a` for a Q5_K row: ggml's `ggml_vec_dot_q5_K_q8_K` bitwise.
        ///
        /// # Safety
        /// See the module's contract.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $q5(row: &[u8], a: &Q8KRow) -> f32 {
            let nb = a.d.len();
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0f32;
            let (p, q8, bs) = (row.as_ptr(), a.qs.as_ptr(), a.bsums.as_ptr());
            for i in 0..nb {
                // SAFETY: i < nb: block i of the row (176 bytes: header, 32 high-bit bytes at
                // 16, 128 code bytes at 48), super-block i of the activation (contract).
                unsafe {
                    let b = p.add(i * Q5_K_BYTES);
                    let (d, dmin, scales, prod) =
                        k4_header(b, *a.d.get_unchecked(i), bs.add(i * BSUMS));
                    let h = _mm_hadd_epi32(
                        _mm_hadd_epi32(prod, _mm_setzero_si128()),
                        _mm_setzero_si128(),
                    );
                    summs = dmin.mul_add(_mm_cvtsi128_si32(h) as f32, summs);
                    let qh = b.add(4 + K_SCALE_SIZE);
                    let sumi = $sumi::<true>(qh.add(QK_K / 8), qh, q8.add(i * QK_K), scales);
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
                }
            }
            // SAFETY: features present (contract).
            unsafe { hsum(acc) + summs }
        }
    };
}

k4_kernels!("avx2,fma,f16c", k4_sumi_avx2, dot_q4_k_avx2, dot_q5_k_avx2);
k4_kernels!(
    "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni",
    k4_sumi_avx512,
    dot_q4_k_avx512,
    dot_q5_k_avx512
);

/// The four 32-code vectors (positions `32k..32k + 32` of the half) of half `j`'s Q6_K codes:
/// `ql` 64 bytes, `qh` 32 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_codes(l1: __m256i, l2: __m256i, h: __m256i) -> [__m256i; 4] {
    let m15 = _mm256_set1_epi8(15);
    let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(h, _mm256_set1_epi8(3)));
    let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(12)));
    let h2 = _mm256_and_si256(h, _mm256_set1_epi8(48));
    let h3 = _mm256_srli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(-64)));
    [
        _mm256_or_si256(_mm256_and_si256(l1, m15), h0),
        _mm256_or_si256(_mm256_and_si256(l2, m15), h1),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), m15), h2),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l2), m15), h3),
    ]
}

/// `vpshufb` mask (128-bit) spreading scale bytes `2m` (first eight) and `2m + 1` (last eight).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_scale_sel(m: i32) -> __m128i {
    let (a, b) = (2 * m as i64, 2 * m as i64 + 1);
    _mm_set_epi64x(b * 0x0101_0101_0101_0101, a * 0x0101_0101_0101_0101)
}

/// `row · a` for a Q6_K row: ggml's `ggml_vec_dot_q6_K_q8_K` bitwise (256-bit vectors).
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q6_k_avx2(row: &[u8], a: &Q8KRow) -> f32 {
    let nb = a.d.len();
    let mut acc = _mm256_setzero_ps();
    let (p, q8p, bs) = (row.as_ptr(), a.qs.as_ptr(), a.bsums.as_ptr());
    for i in 0..nb {
        // SAFETY: i < nb: block i (ql 128 bytes, qh 64 at 128, 16 scales at 192, d at 208) and
        // super-block i of the activation exist (contract).
        unsafe {
            let b = p.add(i * Q6_K_BYTES);
            let q8 = q8p.add(i * QK_K);
            let d = *a.d.get_unchecked(i) * f16_at_ptr(b.add(Q6_K_BYTES - 2));
            let scales = _mm_loadu_si128(b.add(192).cast());
            let q8sums = _mm256_loadu_si256(bs.add(i * BSUMS).cast());
            let sub =
                _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, _mm256_cvtepi8_epi16(scales)));
            let mut sumi = _mm256_setzero_si256();
            for j in 0..2usize {
                let l1 = _mm256_loadu_si256(b.add(64 * j).cast());
                let l2 = _mm256_loadu_si256(b.add(64 * j + 32).cast());
                let h = _mm256_loadu_si256(b.add(128 + 32 * j).cast());
                let q = q6_codes(l1, l2, h);
                let mut part = [_mm256_setzero_si256(); 4];
                for (k, (pk, qk)) in part.iter_mut().zip(q).enumerate() {
                    let x = _mm256_loadu_si256(q8.add(128 * j + 32 * k).cast());
                    let s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(
                        scales,
                        q6_scale_sel((4 * j + k) as i32),
                    ));
                    *pk = _mm256_madd_epi16(s, _mm256_maddubs_epi16(qk, x));
                }
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(part[0], part[1]));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(part[2], part[3]));
            }
            let sumi = _mm256_sub_epi32(sumi, sub);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: features present (contract).
    unsafe { hsum(acc) }
}

/// `vpermw` indices spreading Q6_K's sixteen i16 scales for vectors `2p` (low 256 bits) and
/// `2p + 1` (high) of half `j`, entry `2j + p`: vector `k` of half `j` covers sub-blocks
/// `m = 8j + 2k` (its first sixteen codes, i16 lanes 0..8) and `m + 1` (lanes 8..16), as the
/// 256-bit kernel's `cvtepi8_epi16(shuffle(scales, sel(4j + k)))`.
static Q6_SCALE_IDX: [[i16; 32]; 4] = {
    let mut t = [[0i16; 32]; 4];
    let mut e = 0;
    while e < 4 {
        let mut n = 0;
        while n < 32 {
            let k = 2 * (e % 2) + n / 16;
            let m = 8 * (e / 2) + 2 * k + (n % 16) / 8;
            t[e][n] = m as i16;
            n += 1;
        }
        e += 1;
    }
    t
};

/// [`dot_q6_k_avx2`] with two 32-code vectors per 512-bit instruction (vectors `2k'` low and
/// `2k' + 1` high, `k'` over the half's pairs), lanes folded at the end of the super-block.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_q6_k_avx512(row: &[u8], a: &Q8KRow) -> f32 {
    let nb = a.d.len();
    let mut acc = _mm256_setzero_ps();
    let (p, q8p, bs) = (row.as_ptr(), a.qs.as_ptr(), a.bsums.as_ptr());
    let m15 = _mm512_set1_epi8(15);
    for i in 0..nb {
        // SAFETY: as in `dot_q6_k_avx2`.
        unsafe {
            let b = p.add(i * Q6_K_BYTES);
            let q8 = q8p.add(i * QK_K);
            let d = *a.d.get_unchecked(i) * f16_at_ptr(b.add(Q6_K_BYTES - 2));
            let scales = _mm_loadu_si128(b.add(192).cast());
            let q8sums = _mm256_loadu_si256(bs.add(i * BSUMS).cast());
            let sub =
                _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, _mm256_cvtepi8_epi16(scales)));
            // The sixteen scales as i16; [`Q6_SCALE_IDX`] spreads them.
            let sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(scales));
            let mut sumi = _mm512_setzero_si512();
            for j in 0..2usize {
                // Low 256 bits: ql[64j..64j + 32] (vectors 0 and 2), high: ql[64j + 32..]
                // (vectors 1 and 3); qh twice.
                let l = _mm512_loadu_si512(b.add(64 * j).cast());
                let h = _mm256_loadu_si256(b.add(128 + 32 * j).cast());
                let h2 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(h), h);
                // Vectors 0 | 1: low nibbles, qh bits 0-1 | 2-3; vectors 2 | 3: high nibbles,
                // qh bits 4-5 | 6-7.
                let hl = _mm512_mask_blend_epi64(
                    0xf0,
                    _mm512_slli_epi16::<4>(h2),
                    _mm512_slli_epi16::<2>(h2),
                );
                let hh = _mm512_mask_blend_epi64(0xf0, h2, _mm512_srli_epi16::<2>(h2));
                let m48 = _mm512_set1_epi8(48);
                let q01 = _mm512_or_si512(_mm512_and_si512(l, m15), _mm512_and_si512(hl, m48));
                let q23 = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(l), m15),
                    _mm512_and_si512(hh, m48),
                );
                let x01 = _mm512_loadu_si512(q8.add(128 * j).cast());
                let x23 = _mm512_loadu_si512(q8.add(128 * j + 64).cast());
                let s01 = _mm512_permutexvar_epi16(
                    _mm512_loadu_si512(Q6_SCALE_IDX[2 * j].as_ptr().cast()),
                    sc16,
                );
                let s23 = _mm512_permutexvar_epi16(
                    _mm512_loadu_si512(Q6_SCALE_IDX[2 * j + 1].as_ptr().cast()),
                    sc16,
                );
                sumi = _mm512_dpwssd_epi32(sumi, s01, _mm512_maddubs_epi16(q01, x01));
                sumi = _mm512_dpwssd_epi32(sumi, s23, _mm512_maddubs_epi16(q23, x23));
            }
            let sumi = _mm256_add_epi32(
                _mm512_castsi512_si256(sumi),
                _mm512_extracti64x4_epi64::<1>(sumi),
            );
            let sumi = _mm256_sub_epi32(sumi, sub);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    // SAFETY: features present (contract).
    unsafe { hsum(acc) }
}

/// The 256 codes of one block in value order (`0..=63`) at `out`, for the multi-token kernel
/// (`super::ktile`): kind `K` is `ktile::Q4K`, `Q5K` or `Q6K`. The codes are the ones the dot
/// products above multiply, unpacked by the same helpers.
///
/// # Safety
/// AVX2/FMA/F16C present; `b` points at one whole block of kind `K`, `out` at 256 writable
/// bytes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn block_codes<const K: u8>(b: *const u8, out: *mut u8) {
    use super::ktile::{Q5K, Q6K};
    // SAFETY: every load reads inside the block (Q4_K codes at 16..144; Q5_K high bits at
    // 16..48 and codes at 48..176; Q6_K ql at 0..128, qh at 128..192) and every store writes
    // inside `out`'s 256 bytes (contract).
    unsafe {
        if K == Q6K {
            for j in 0..2 {
                let l1 = _mm256_loadu_si256(b.add(64 * j).cast());
                let l2 = _mm256_loadu_si256(b.add(64 * j + 32).cast());
                let h = _mm256_loadu_si256(b.add(128 + 32 * j).cast());
                for (k, q) in q6_codes(l1, l2, h).into_iter().enumerate() {
                    _mm256_storeu_si256(out.add(128 * j + 32 * k).cast(), q);
                }
            }
            return;
        }
        let m4 = _mm256_set1_epi8(0x0f);
        let (qh, qs) = if K == Q5K {
            (b.add(4 + K_SCALE_SIZE), b.add(4 + K_SCALE_SIZE + QK_K / 8))
        } else {
            (b, b.add(4 + K_SCALE_SIZE))
        };
        let hbits = if K == Q5K {
            _mm256_loadu_si256(qh.cast())
        } else {
            _mm256_setzero_si256()
        };
        for j in 0..4 {
            let q = _mm256_loadu_si256(qs.add(32 * j).cast());
            let (lo, hi) = if K == Q5K {
                q5_codes(q, hbits, j as i32)
            } else {
                (
                    _mm256_and_si256(q, m4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                )
            };
            _mm256_storeu_si256(out.add(64 * j).cast(), lo);
            _mm256_storeu_si256(out.add(64 * j + 32).cast(), hi);
        }
    }
}
