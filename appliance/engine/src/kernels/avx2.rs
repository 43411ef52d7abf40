//! AVX2 + FMA + F16C kernels (x86-64), chosen at run time by [`super::Isa::detect`].
//!
//! Each function computes `row · x` for one encoded row and f32 activations, the same value as
//! [`super::portable::row_dot`] up to f32 rounding order (tests compare them on random rows).
//! Per 32-weight block the 4-bit or 8-bit codes are widened to eight-lane f32 vectors
//! (`vpmovzxbd`/`vpmovsxbd` + `vcvtdq2ps`), multiplied with the activations by FMA, and the
//! block sum is scaled by the block's `d` into a vector accumulator; the offset term
//! (`m` for Q4_1, `-8d` for Q4_0) multiplies the block's activation sum. One horizontal sum per
//! row.
//!
//! # Safety contract (all `unsafe fn` here)
//! * The CPU supports AVX2, FMA and F16C (the caller checked with `is_x86_feature_detected!`).
//! * `row.len()` is `x.len() / block_size * block_bytes` and `x.len()` is whole blocks: every
//!   load below reads inside a `chunks_exact` piece of exactly the block's size, so no load can
//!   leave either slice. The safe wrappers in `super` check the lengths.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use airlock_gguf::GgmlType;
use airlock_gguf::blocks::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK, QK_K};

use super::portable;

/// Horizontal sum of eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// The little-endian f16 at `b[i..i + 2]` as f32, converted by F16C (`vcvtph2ps`): the
/// software conversion costs as much as the block's arithmetic.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_at(b: &[u8], i: usize) -> f32 {
    let bits = u16::from_le_bytes([b[i], b[i + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// [`f16_at`] through a pointer to the two bytes.
///
/// # Safety
/// `p` and `p + 1` are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_at_ptr(p: *const u8) -> f32 {
    // SAFETY: two readable bytes (contract); unaligned read.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le(
        bits,
    )))))
}

/// Loads the 32 activations of one block as four vectors (`xb.len() == 32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_x32(xb: &[f32]) -> [__m256; 4] {
    debug_assert_eq!(xb.len(), QK);
    let p = xb.as_ptr();
    // SAFETY: xb has 32 elements (contract); offsets 0, 8, 16, 24 read 8 each.
    unsafe {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
}

/// `Σ q_j x_j` over a block of 4-bit codes `qs` (16 bytes: low nibbles are codes 0..16, high
/// nibbles codes 16..32), plus `Σ x_j`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibble_dot(qs: &[u8], x: [__m256; 4]) -> (__m256, __m256) {
    debug_assert_eq!(qs.len(), QK / 2);
    // SAFETY: qs has 16 bytes (contract), one unaligned 128-bit load.
    let q = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let m4 = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m4);
    let w0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    let w1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(lo)));
    let w2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
    let w3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(hi)));
    let p = _mm256_mul_ps(w0, x[0]);
    let p = _mm256_fmadd_ps(w1, x[1], p);
    let p = _mm256_fmadd_ps(w2, x[2], p);
    let p = _mm256_fmadd_ps(w3, x[3], p);
    let s = _mm256_add_ps(_mm256_add_ps(x[0], x[1]), _mm256_add_ps(x[2], x[3]));
    (p, s)
}

/// Q4_0: `Σ_blocks d (Σ q x − 8 Σ x)`.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_0(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut off = _mm256_setzero_ps();
    for (b, xb) in row.chunks_exact(Q4_0_BYTES).zip(x.chunks_exact(QK)) {
        let d = f16_at(b, 0);
        // SAFETY: contract; b is one 18-byte block, xb 32 values.
        let (p, s) = unsafe { nibble_dot(&b[2..], load_x32(xb)) };
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), p, acc);
        off = _mm256_fmadd_ps(_mm256_set1_ps(-8.0 * d), s, off);
    }
    // SAFETY: features checked by the caller.
    unsafe { hsum(_mm256_add_ps(acc, off)) }
}

/// Q4_1: `Σ_blocks (d Σ q x + m Σ x)`.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_1(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut off = _mm256_setzero_ps();
    for (b, xb) in row.chunks_exact(Q4_1_BYTES).zip(x.chunks_exact(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        // SAFETY: contract; b is one 20-byte block, xb 32 values.
        let (p, s) = unsafe { nibble_dot(&b[4..], load_x32(xb)) };
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), p, acc);
        off = _mm256_fmadd_ps(_mm256_set1_ps(m), s, off);
    }
    // SAFETY: features checked by the caller.
    unsafe { hsum(_mm256_add_ps(acc, off)) }
}

/// Q8_0: `Σ_blocks d Σ q x` with signed 8-bit `q`.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q8_0(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in row.chunks_exact(Q8_0_BYTES).zip(x.chunks_exact(QK)) {
        let d = f16_at(b, 0);
        // SAFETY: contract; b is one 34-byte block (codes at 2..34), xb 32 values.
        unsafe {
            let x = load_x32(xb);
            let q = b.as_ptr().add(2);
            let w = |o: usize| {
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(o).cast())))
            };
            let p = _mm256_mul_ps(w(0), x[0]);
            let p = _mm256_fmadd_ps(w(8), x[1], p);
            let p = _mm256_fmadd_ps(w(16), x[2], p);
            let p = _mm256_fmadd_ps(w(24), x[3], p);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), p, acc);
        }
    }
    // SAFETY: features checked by the caller.
    unsafe { hsum(acc) }
}

/// F32 rows.
///
/// # Safety
/// See the module's contract (`row.len() == 4 * x.len()`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut tail = 0f32;
    let whole = x.len() / 8 * 8;
    for (i, xc) in x[..whole].chunks_exact(8).enumerate() {
        // SAFETY: row has 4 bytes per value: bytes 32i..32i+32 exist.
        unsafe {
            let w = _mm256_loadu_ps(row.as_ptr().add(32 * i).cast());
            acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(xc.as_ptr()), acc);
        }
    }
    for (j, &xv) in x.iter().enumerate().skip(whole) {
        let c = &row[4 * j..4 * j + 4];
        tail += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv;
    }
    // SAFETY: features checked by the caller.
    unsafe { hsum(acc) + tail }
}

/// F16 rows (`vcvtph2ps`).
///
/// # Safety
/// See the module's contract (`row.len() == 2 * x.len()`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut tail = 0f32;
    let whole = x.len() / 8 * 8;
    for (i, xc) in x[..whole].chunks_exact(8).enumerate() {
        // SAFETY: row has 2 bytes per value: bytes 16i..16i+16 exist.
        unsafe {
            let h = _mm_loadu_si128(row.as_ptr().add(16 * i).cast());
            acc = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(xc.as_ptr()), acc);
        }
    }
    for (j, &xv) in x.iter().enumerate().skip(whole) {
        tail += f16_at(row, 2 * j) * xv;
    }
    // SAFETY: features checked by the caller.
    unsafe { hsum(acc) + tail }
}

/// `a · b` for f32 slices of equal length.
///
/// # Safety
/// AVX2/FMA/F16C present; `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f32_slices(a: &[f32], b: &[f32]) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let n16 = a.len() / 16 * 16;
    let mut i = 0;
    while i < n16 {
        // SAFETY: i + 16 <= len of both.
        unsafe {
            acc0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                acc0,
            );
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                acc1,
            );
        }
        i += 16;
    }
    let tail: f32 = a[n16..].iter().zip(&b[n16..]).map(|(x, y)| x * y).sum();
    // SAFETY: features checked by the caller.
    unsafe { hsum(_mm256_add_ps(acc0, acc1)) + tail }
}

/// K-quants and BF16: each super-block decoded by the reference decoder, then a SIMD dot.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_generic(ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    let (bs, bb) = (ty.block_size(), ty.block_bytes());
    if bs == 1 {
        return portable::row_dot(ty, row, x);
    }
    let mut buf = [0f32; QK_K];
    let mut sum = 0f32;
    for (b, xb) in row.chunks_exact(bb).zip(x.chunks_exact(bs)) {
        portable::decode_block(ty, b, &mut buf);
        // SAFETY: equal lengths (bs each); features checked by the caller.
        sum += unsafe { dot_f32_slices(&buf[..bs], xb) };
    }
    sum
}

/// `Σ u8 · i8` over 32 pairs, as eight i32 lanes converted to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_u8_i8(w: __m256i, a: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(w, a);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// The 32 four-bit codes of a Q4 block as bytes: low nibbles (codes 0..16) in the low lane,
/// high nibbles (codes 16..32) in the high lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(qs: &[u8]) -> __m256i {
    debug_assert_eq!(qs.len(), QK / 2);
    // SAFETY: qs has 16 bytes (contract).
    unsafe { nibbles32_ptr(qs.as_ptr()) }
}

/// [`nibbles32`] of the 16 bytes at `p`.
///
/// # Safety
/// `p..p + 16` is readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn nibbles32_ptr(p: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes (contract), one unaligned 128-bit load.
    let q = unsafe { _mm_loadu_si128(p.cast()) };
    let m4 = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m4);
    _mm256_set_m128i(hi, lo)
}

/// The 8-bit-activation kernels, generated twice: with `vpmaddubsw` + `vpmaddwd` (AVX2) and
/// with `vpdpbusd` (AVX-512 VNNI on 256-bit vectors), the only difference.
macro_rules! q8_kernels {
    ($feat:literal, $dot:ident, $single:ident, $x4:ident) => {
        /// Q4_0 / Q4_1 / Q8_0 row times 8-bit activations (see [`super::q8`]); exact integer block
        /// sums, so the result equals the portable one up to f32 summation order.
        ///
        /// # Safety
        /// AVX2/FMA/F16C present; `row` is `a.len()` values of `ty` in whole blocks, `a`'s per-block
        /// vectors have `a.len() / 32` entries.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $single(ty: GgmlType, row: &[u8], a: &super::q8::Q8Row) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut off = 0f32;
            let blocks = a.qs.chunks_exact(QK).zip(a.d.iter().zip(&a.s)).zip(&a.isum);
            match ty {
                GgmlType::Q4_0 | GgmlType::Q4_1 => {
                    let bb = if ty == GgmlType::Q4_0 {
                        Q4_0_BYTES
                    } else {
                        Q4_1_BYTES
                    };
                    for (b, ((qa, (&da, &sa)), &isum)) in row.chunks_exact(bb).zip(blocks) {
                        // SAFETY: b is one block (its codes are its last 16 bytes), qa 32 codes.
                        unsafe {
                            let w = nibbles32(&b[bb - QK / 2..]);
                            let x = _mm256_loadu_si256(qa.as_ptr().cast());
                            let p = $dot(w, x);
                            let dw = f16_at(b, 0);
                            let d = dw * da;
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), p, acc);
                            // The offset term exactly as the prompt tile computes it (one
                            // fused multiply-add per block), so that a token's product does not
                            // depend on how many tokens were multiplied together.
                            off = if ty == GgmlType::Q4_0 {
                                dw.mul_add(-8.0 * da * isum as f32, off)
                            } else {
                                f16_at(b, 2).mul_add(sa, off)
                            };
                        }
                    }
                }
                GgmlType::Q8_0 => {
                    for (b, ((qa, (&da, _)), _)) in row.chunks_exact(Q8_0_BYTES).zip(blocks) {
                        // SAFETY: b is one 34-byte block (codes at 2..34), qa 32 codes.
                        unsafe {
                            let w = _mm256_loadu_si256(b.as_ptr().add(2).cast());
                            let x = _mm256_loadu_si256(qa.as_ptr().cast());
                            // |w| as u8 times x with w's sign: maddubs needs an unsigned left operand.
                            let p = $dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(b, 0) * da), p, acc);
                        }
                    }
                }
                _ => return f32::NAN,
            }
            // SAFETY: features checked by the caller.
            unsafe { hsum(acc) + off }
        }

        /// [`dot_q8`] for four activation rows at once: each weight block is unpacked once and used
        /// four times (prompt processing). Per row the operations and their order are those of
        /// [`dot_q8`], so the results are identical to four single calls.
        ///
        /// # Safety
        /// As [`dot_q8`], for each of the four rows.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $x4(ty: GgmlType, row: &[u8], a: [&super::q8::Q8Row; 4]) -> [f32; 4] {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut off = [0f32; 4];
            let bb = ty.block_bytes();
            for (bi, b) in row.chunks_exact(bb).enumerate() {
                let (lo, hi) = (bi * QK, bi * QK + QK);
                // SAFETY: b is one whole block of `ty`; each a[k].qs has QK codes per block (contract).
                unsafe {
                    match ty {
                        GgmlType::Q4_0 | GgmlType::Q4_1 => {
                            let w = nibbles32(&b[bb - QK / 2..]);
                            let dw = f16_at(b, 0);
                            let mw = if ty == GgmlType::Q4_1 {
                                f16_at(b, 2)
                            } else {
                                0.0
                            };
                            for k in 0..4 {
                                let x = _mm256_loadu_si256(a[k].qs[lo..hi].as_ptr().cast());
                                let p = $dot(w, x);
                                let d = dw * a[k].d[bi];
                                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d), p, acc[k]);
                                off[k] = if ty == GgmlType::Q4_0 {
                                    dw.mul_add(-8.0 * a[k].d[bi] * a[k].isum[bi] as f32, off[k])
                                } else {
                                    mw.mul_add(a[k].s[bi], off[k])
                                };
                            }
                        }
                        GgmlType::Q8_0 => {
                            let w = _mm256_loadu_si256(b.as_ptr().add(2).cast());
                            let aw = _mm256_sign_epi8(w, w);
                            let dw = f16_at(b, 0);
                            for k in 0..4 {
                                let x = _mm256_loadu_si256(a[k].qs[lo..hi].as_ptr().cast());
                                let p = $dot(aw, _mm256_sign_epi8(x, w));
                                acc[k] =
                                    _mm256_fmadd_ps(_mm256_set1_ps(dw * a[k].d[bi]), p, acc[k]);
                            }
                        }
                        _ => return [f32::NAN; 4],
                    }
                }
            }
            // SAFETY: features checked by the caller.
            unsafe {
                [
                    hsum(acc[0]) + off[0],
                    hsum(acc[1]) + off[1],
                    hsum(acc[2]) + off[2],
                    hsum(acc[3]) + off[3],
                ]
            }
        }
    };
}

q8_kernels!("avx2,fma,f16c", dot_u8_i8, dot_q8, dot_q8_x4);
q8_kernels!(
    "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
    dot_u8_i8_vnni,
    dot_q8_vnni,
    dot_q8_x4_vnni
);

/// `Σ u8 · i8` over 32 pairs with one `vpdpbusd`, as eight f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_u8_i8_vnni(w: __m256i, a: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a))
}

/// One block of [`super::q8::Q8Row::quantize`]: the codes of `x` (32 values) into `q`, returning
/// `(max|x|, Σq)`. The same operations as the scalar code (`_mm256_round_ps` rounds half to
/// even, as `round_ties_even`; llama.cpp's `quantize_row_q8_1` uses it), so identical codes.
///
/// # Safety
/// AVX2/FMA/F16C present; `x.len() == q.len() == 32`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    debug_assert!(x.len() == QK && q.len() == QK);
    // SAFETY: x has 32 values (contract).
    let v = unsafe { load_x32(x) };
    let abs = _mm256_set1_ps(-0.0);
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(abs, v[0]), _mm256_andnot_ps(abs, v[1])),
        _mm256_max_ps(_mm256_andnot_ps(abs, v[2]), _mm256_andnot_ps(abs, v[3])),
    );
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
    let amax = _mm_cvtss_f32(m);
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let r = |v: __m256| {
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(_mm256_mul_ps(v, id)))
    };
    let (i0, i1, i2, i3) = (r(v[0]), r(v[1]), r(v[2]), r(v[3]));
    let sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    let s = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256::<1>(sum),
    );
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b1110>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    // Pack to bytes: packs work per 128-bit lane, so restore the order with a permute.
    let p16a = _mm256_packs_epi32(i0, i1);
    let p16b = _mm256_packs_epi32(i2, i3);
    let p8 = _mm256_packs_epi16(p16a, p16b);
    let p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: q has 32 bytes (contract).
    unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), p8) };
    (amax, _mm_cvtsi128_si32(s))
}

/// Rounds every value of `x` to the nearest f16 (ties to even, as `half` and ggml's
/// `GGML_FP32_TO_FP16` with F16C), kept as f32: `vcvtps2ph` + `vcvtph2ps` per eight values.
///
/// # Safety
/// AVX2/FMA/F16C present.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn round_f16(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: c has 8 values.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(v);
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for v in chunks.into_remainder() {
        *v = half::f16::from_f32(*v).to_f32();
    }
}
