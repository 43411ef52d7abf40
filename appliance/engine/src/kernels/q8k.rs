//! Activations quantized to 8 bits per super-block of 256 (`block_q8_K`), as llama.cpp
//! multiplies K-quant weights (`quantize_row_q8_K`, then `ggml_vec_dot_q{4,5,6}_K_q8_K`), and
//! the scalar twins of those dot products.
//!
//! **Quantization** (ggml-quants.c `quantize_row_q8_K_ref`, which the x86 CPU backend's
//! `quantize_row_q8_K` calls as is): per 256 values, `max` is the value of largest magnitude
//! (the first one on ties), `iscale = −127 / max`, `q = min(127, nearest_int(iscale · x))` with
//! ggml's `nearest_int` (add 1.5 · 2²³, keep the mantissa: round half to even), `d = 1 / iscale`
//! kept in f32 (not f16), and `bsums[k]` the sum of codes `16k..16k + 16`. An all-zero block
//! has `d = 0` and zero codes.
//!
//! **Dot products**: the arithmetic of ggml's AVX2 kernels in `ggml-cpu/arch/x86/quants.c`,
//! which is what llama.cpp computes on x86-64 with AVX2 or AVX-512 (the K-quant dot products
//! have no AVX-512 variant there). Per super-block each of eight i32 lanes collects an exact
//! integer sum (lane `l` holds the codes at positions `4l..4l + 4` of every 32-code vector,
//! times their sub-block scale: `vpmaddubsw` then `vpmaddwd`), the lanes are converted to f32
//! and fused-multiply-added with `d_w · d_a` into eight f32 accumulators, and at the end the
//! lanes are summed as `hsum_float_8` does. The integer sums never overflow (`|q_w| ≤ 63`,
//! `|q_a| ≤ 128`, scales ≤ 127), so these twins reproduce llama.cpp's results bitwise, and the
//! SIMD kernels (`super::kquant`) are tested bitwise against them.
//!
//! The min term of Q4_K / Q5_K (`−dmin · m_j · Σ q_a` over sub-block `j`) uses `bsums`:
//! Q4_K keeps it in four f32 lanes (one `vfmadd` per super-block), Q5_K sums it in a scalar
//! (`summs += dmin · prod`, which GCC, building llama.cpp as GNU C, contracts to one fused
//! multiply-add). Q6_K subtracts `32 · Σ scale · bsum` from the integer lanes instead.

use airlock_gguf::GgmlType;
use airlock_gguf::blocks::{K_SCALE_SIZE, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, QK_K};
use half::f16;

/// Sums per super-block kept in `bsums` (one per 16 codes).
pub const BSUMS: usize = QK_K / 16;

/// Weight types multiplied with [`Q8KRow`] activations.
pub fn supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

/// One activation row quantized in super-blocks of 256 (`block_q8_K`).
#[derive(Debug, Clone, Default)]
pub struct Q8KRow {
    /// Codes, `len` values in `−127..=127`.
    pub qs: Vec<i8>,
    /// Per super-block: scale `d` (f32).
    pub d: Vec<f32>,
    /// Per super-block: the sums of codes `16k..16k + 16`, [`BSUMS`] of them.
    pub bsums: Vec<i16>,
}

/// ggml's `nearest_int`: `v` rounded half to even through the mantissa of `v + 1.5 · 2²³`
/// (exact for `|v| ≤ 2²²`; here `|v| ≤ 127`).
#[inline]
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits();
    (bits & 0x007f_ffff) as i32 - 0x0040_0000
}

impl Q8KRow {
    /// Quantizes `x` (`x.len()` a multiple of 256) as `quantize_row_q8_K_ref`.
    pub fn quantize(x: &[f32]) -> Q8KRow {
        let nb = x.len() / QK_K;
        let mut r = Q8KRow {
            qs: vec![0; nb * QK_K],
            d: vec![0.0; nb],
            bsums: vec![0; nb * BSUMS],
        };
        for (((xb, qb), d), bs) in x
            .chunks_exact(QK_K)
            .zip(r.qs.chunks_exact_mut(QK_K))
            .zip(r.d.iter_mut())
            .zip(r.bsums.chunks_exact_mut(BSUMS))
        {
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            if amax == 0.0 {
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &v) in qb.iter_mut().zip(xb) {
                // |iscale · v| <= 127 up to rounding; the min keeps the code an i8, as ggml's.
                *q = nearest_int(iscale * v).min(127) as i8;
            }
            for (s, qc) in bs.iter_mut().zip(qb.chunks_exact(16)) {
                // At most 16 · 127 in magnitude: fits an i16.
                *s = qc.iter().map(|&q| i16::from(q)).sum();
            }
            *d = 1.0 / iscale;
        }
        r
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.qs.len()
    }

    /// True for an empty row.
    pub fn is_empty(&self) -> bool {
        self.qs.is_empty()
    }

    /// True if the per-super-block vectors agree with the code count (a whole number of
    /// super-blocks).
    pub fn is_well_formed(&self) -> bool {
        let nb = self.qs.len() / QK_K;
        self.qs.len().is_multiple_of(QK_K) && self.d.len() == nb && self.bsums.len() == nb * BSUMS
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `hsum_float_8`: lanes `l` and `l + 4` added, then `(0 + 2) + (1 + 3)`.
#[inline]
pub(crate) fn hsum8(a: [f32; 8]) -> f32 {
    let c = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (c[0] + c[2]) + (c[1] + c[3])
}

/// The eight 6-bit scales and eight 6-bit mins of a Q4_K / Q5_K super-block from its 12 packed
/// bytes (ggml's `utmp` shuffle with `kmask1..3`; the same values as
/// [`airlock_gguf::blocks::scale_min_k4`]), as the 16 bytes `[scales; mins]`.
#[inline]
pub(crate) fn k4_scales_mins(s: &[u8]) -> [u8; 16] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let (k1, k2, k3) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
    let t = [
        u0 & k1,
        (u2 & k2) | (((u0 >> 6) & k3) << 4),
        u1 & k1,
        ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, v) in out.chunks_exact_mut(4).zip(t) {
        o.copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// The min term's four i32 lanes of a Q4_K / Q5_K super-block (`vpmaddwd` of the mins with the
/// pairwise sums of `bsums`, `vphaddw`'s wrapping included).
#[inline]
fn min_lanes(mins: &[u8], bs: &[i16]) -> [i32; 4] {
    std::array::from_fn(|k| {
        let s0 = bs[4 * k].wrapping_add(bs[4 * k + 1]);
        let s1 = bs[4 * k + 2].wrapping_add(bs[4 * k + 3]);
        i32::from(mins[2 * k]) * i32::from(s0) + i32::from(mins[2 * k + 1]) * i32::from(s1)
    })
}

/// Scalar twin of `ggml_vec_dot_q4_K_q8_K` (AVX2 arithmetic): `row` is whole Q4_K blocks, `a`
/// the same number of super-blocks.
fn dot_q4_k(row: &[u8], a: &Q8KRow) -> f32 {
    let mut acc = [0f32; 8];
    let mut acc_m = [0f32; 4];
    for (i, b) in row.chunks_exact(Q4_K_BYTES).enumerate() {
        let q8 = &a.qs[i * QK_K..(i + 1) * QK_K];
        let d = a.d[i] * f16_at(b, 0);
        let dmin = -a.d[i] * f16_at(b, 2);
        let sm = k4_scales_mins(&b[4..4 + K_SCALE_SIZE]);
        let qs = &b[4 + K_SCALE_SIZE..];
        let mut sumi = [0i32; 8];
        for j in 0..QK_K / 64 {
            let (sl, sh) = (i32::from(sm[2 * j]), i32::from(sm[2 * j + 1]));
            for (p, &q) in qs[32 * j..32 * j + 32].iter().enumerate() {
                let lo = i32::from(q & 0x0f) * i32::from(q8[64 * j + p]);
                let hi = i32::from(q >> 4) * i32::from(q8[64 * j + 32 + p]);
                sumi[p / 4] += sl * lo + sh * hi;
            }
        }
        for (acc, s) in acc.iter_mut().zip(sumi) {
            *acc = d.mul_add(s as f32, *acc);
        }
        let m = min_lanes(&sm[8..], &a.bsums[i * BSUMS..(i + 1) * BSUMS]);
        for (acc, p) in acc_m.iter_mut().zip(m) {
            *acc = dmin.mul_add(p as f32, *acc);
        }
    }
    hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]))
}

/// Scalar twin of `ggml_vec_dot_q5_K_q8_K` (AVX2 arithmetic).
fn dot_q5_k(row: &[u8], a: &Q8KRow) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (i, b) in row.chunks_exact(Q5_K_BYTES).enumerate() {
        let q8 = &a.qs[i * QK_K..(i + 1) * QK_K];
        let d = a.d[i] * f16_at(b, 0);
        let dmin = -a.d[i] * f16_at(b, 2);
        let sm = k4_scales_mins(&b[4..4 + K_SCALE_SIZE]);
        let (qh, qs) = b[4 + K_SCALE_SIZE..].split_at(QK_K / 8);
        let mut sumi = [0i32; 8];
        for j in 0..QK_K / 64 {
            let (sl, sh) = (i32::from(sm[2 * j]), i32::from(sm[2 * j + 1]));
            for (p, (&q, &h)) in qs[32 * j..32 * j + 32].iter().zip(qh).enumerate() {
                let ql = i32::from(q & 0x0f) | (i32::from((h >> (2 * j)) & 1) << 4);
                let qh5 = i32::from(q >> 4) | (i32::from((h >> (2 * j + 1)) & 1) << 4);
                let lo = ql * i32::from(q8[64 * j + p]);
                let hi = qh5 * i32::from(q8[64 * j + 32 + p]);
                sumi[p / 4] += sl * lo + sh * hi;
            }
        }
        for (acc, s) in acc.iter_mut().zip(sumi) {
            *acc = d.mul_add(s as f32, *acc);
        }
        let m = min_lanes(&sm[8..], &a.bsums[i * BSUMS..(i + 1) * BSUMS]);
        // `vphaddd` twice: (m0 + m1) + (m2 + m3), exact in i32.
        let prod = (m[0] + m[1]) + (m[2] + m[3]);
        summs = dmin.mul_add(prod as f32, summs);
    }
    hsum8(acc) + summs
}

/// Scalar twin of `ggml_vec_dot_q6_K_q8_K` (AVX2 arithmetic).
fn dot_q6_k(row: &[u8], a: &Q8KRow) -> f32 {
    let mut acc = [0f32; 8];
    for (i, b) in row.chunks_exact(Q6_K_BYTES).enumerate() {
        let q8 = &a.qs[i * QK_K..(i + 1) * QK_K];
        let bs = &a.bsums[i * BSUMS..(i + 1) * BSUMS];
        let d = a.d[i] * f16_at(b, Q6_K_BYTES - 2);
        let (ql, rest) = b.split_at(QK_K / 2);
        let (qh, rest) = rest.split_at(QK_K / 4);
        let sc: [i32; 16] = std::array::from_fn(|k| i32::from(rest[k] as i8));
        let mut sumi = [0i32; 8];
        for j in 0..2 {
            let (ql, qh) = (&ql[64 * j..64 * j + 64], &qh[32 * j..32 * j + 32]);
            for p in 0..32 {
                let h = qh[p];
                // The four 32-code vectors of this half: positions 128j + 32k + p.
                let q = [
                    (ql[p] & 15) | ((h & 3) << 4),
                    (ql[32 + p] & 15) | (((h >> 2) & 3) << 4),
                    (ql[p] >> 4) | (((h >> 4) & 3) << 4),
                    (ql[32 + p] >> 4) | (((h >> 6) & 3) << 4),
                ];
                for (k, &qk) in q.iter().enumerate() {
                    let pos = 128 * j + 32 * k + p;
                    sumi[p / 4] += sc[pos / 16] * i32::from(qk) * i32::from(q8[pos]);
                }
            }
        }
        for (l, s) in sumi.iter_mut().enumerate() {
            // The `−32` offset of every code, through `bsums` (`q8sclsub`).
            *s -=
                (i32::from(bs[2 * l]) * sc[2 * l] + i32::from(bs[2 * l + 1]) * sc[2 * l + 1]) << 5;
        }
        for (acc, s) in acc.iter_mut().zip(sumi) {
            *acc = d.mul_add(s as f32, *acc);
        }
    }
    hsum8(acc)
}

/// Portable `row · a` for a Q4_K/Q5_K/Q6_K row and a [`Q8KRow`] of equal length: llama.cpp's
/// x86 result bitwise (see the module docs). NaN for another type.
pub(crate) fn row_dot(ty: GgmlType, row: &[u8], a: &Q8KRow) -> f32 {
    match ty {
        GgmlType::Q4_K => dot_q4_k(row, a),
        GgmlType::Q5_K => dot_q5_k(row, a),
        GgmlType::Q6_K => dot_q6_k(row, a),
        _ => f32::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_gguf::blocks::scale_min_k4;

    /// The `utmp` shuffle gives the reference decoder's scales and mins for every byte pattern
    /// of a sub-block pair.
    #[test]
    fn packed_scales_match_the_reference_decoder() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..500 {
            let mut s = [0u8; K_SCALE_SIZE];
            for v in &mut s {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                *v = (state >> 56) as u8;
            }
            let sm = k4_scales_mins(&s);
            for j in 0..8 {
                assert_eq!(
                    scale_min_k4(j, &s),
                    (sm[j], sm[8 + j]),
                    "{s:?} sub-block {j}"
                );
            }
        }
    }

    /// `nearest_int` rounds half to even, like `round_ties_even`, over the whole code range.
    #[test]
    fn nearest_int_rounds_half_to_even() {
        for i in -1300..=1300 {
            let v = i as f32 / 10.0;
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
        for v in [0.5f32, 1.5, 2.5, -0.5, -1.5, -126.5, 126.5] {
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
    }

    /// Quantization: the largest magnitude maps to −127 · sign, ties of magnitude keep the first
    /// value, and an all-zero block is all zeros with `d = 0`.
    #[test]
    fn quantization_follows_ggml() {
        let mut x = vec![0f32; 2 * QK_K];
        x[3] = 2.0;
        x[7] = -2.0;
        x[9] = 1.0;
        let r = Q8KRow::quantize(&x);
        assert!(r.is_well_formed());
        // max is x[3] = 2.0 (first of the ties): iscale = −63.5.
        assert_eq!((r.qs[3], r.qs[7], r.qs[9]), (-127, 127, -64));
        assert_eq!(r.d[0], 1.0 / (-127.0f32 / 2.0));
        assert_eq!(r.bsums[0], -127 + 127 - 64);
        assert_eq!(r.d[1], 0.0);
        assert!(r.qs[QK_K..].iter().all(|&q| q == 0));
    }
}
