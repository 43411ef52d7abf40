//! Activations quantized to 8 bits per block of 32, as llama.cpp multiplies Q4_0/Q4_1/Q8_0
//! weights (`quantize_row_q8_0` / `quantize_row_q8_1`, then `ggml_vec_dot_q4_1_q8_1` etc.).
//!
//! Per block: `d = max|x| / 127` (rounded to f16, as stored in `block_q8_*`), `q = round(x ·
//! 127 / max|x|)` (ties to even, as the AVX2 code's `_mm256_round_ps`), `s = d · Σq` (f16).
//! A weight block then contributes `d_w · d · Σ q_w q` (+ `m_w · s` for Q4_1) with the sum in
//! exact integer arithmetic. This is both faster (8-bit multiply-adds) and what llama.cpp
//! computes, which keeps our logits within its rounding of the reference outputs.

use airlock_gguf::GgmlType;
use airlock_gguf::blocks::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK};
use half::f16;

/// Weight types multiplied with 8-bit activations.
pub fn supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// One activation row quantized in blocks of 32.
#[derive(Debug, Clone, Default)]
pub struct Q8Row {
    /// Codes, `len` values.
    pub qs: Vec<i8>,
    /// Per block: scale `d` (f16-rounded).
    pub d: Vec<f32>,
    /// Per block: `d · Σ q` (f16-rounded, `block_q8_1.s`).
    pub s: Vec<f32>,
    /// Per block: `Σ q` (exact).
    pub isum: Vec<i32>,
}

fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// The codes of one block of 32 into `q`; returns `(max|x|, Σq)`.
fn quantize_block(xb: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(xb) {
        // |v · id| <= 127 by construction; the cast cannot saturate.
        *q = (v * id).round_ties_even() as i8;
        sum += i32::from(*q);
    }
    (amax, sum)
}

/// [`quantize_block`] with AVX2 (identical codes): without SSE4.1 at compile time
/// `round_ties_even` is a libm call per value, which cost as much as the quantization.
#[allow(unsafe_code)]
fn quantize_block_simd(xb: &[f32], q: &mut [i8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if xb.len() == QK && q.len() == QK && super::Isa::Avx2.is_supported() {
        // SAFETY: AVX2/FMA/F16C present and both blocks are 32 long (checked above).
        return unsafe { super::avx2::quantize_block(xb, q) };
    }
    quantize_block(xb, q)
}

impl Q8Row {
    /// Quantizes `x` (`x.len()` a multiple of 32).
    pub fn quantize(x: &[f32]) -> Q8Row {
        let nb = x.len() / QK;
        let mut r = Q8Row {
            qs: vec![0; nb * QK],
            d: Vec::with_capacity(nb),
            s: Vec::with_capacity(nb),
            isum: Vec::with_capacity(nb),
        };
        let simd = super::Isa::detect() != super::Isa::Portable;
        for (xb, qb) in x.chunks_exact(QK).zip(r.qs.chunks_exact_mut(QK)) {
            let (amax, sum) = if simd {
                quantize_block_simd(xb, qb)
            } else {
                quantize_block(xb, qb)
            };
            let d = amax / 127.0;
            r.d.push(round_f16(d));
            r.s.push(round_f16(d * sum as f32));
            r.isum.push(sum);
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
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Portable `row · a` for a Q4_0/Q4_1/Q8_0 row and a quantized activation of equal length.
pub(crate) fn row_dot(ty: GgmlType, row: &[u8], a: &Q8Row) -> f32 {
    let mut acc = 0f32;
    let mut off = 0f32;
    let blocks = a.qs.chunks_exact(QK).zip(a.d.iter().zip(&a.s));
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let bb = if ty == GgmlType::Q4_0 {
                Q4_0_BYTES
            } else {
                Q4_1_BYTES
            };
            let hdr = bb - QK / 2;
            for ((b, (qa, (&da, &sa))), &isum) in row.chunks_exact(bb).zip(blocks).zip(&a.isum) {
                let mut sumi = 0i32;
                for (j, &q) in b[hdr..].iter().enumerate() {
                    sumi += i32::from(q & 0x0f) * i32::from(qa[j]);
                    sumi += i32::from(q >> 4) * i32::from(qa[j + QK / 2]);
                }
                let d = f16_at(b, 0);
                if ty == GgmlType::Q4_0 {
                    acc += d * da * (sumi - 8 * isum) as f32;
                } else {
                    acc += d * da * sumi as f32;
                    off += f16_at(b, 2) * sa;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (b, (qa, (&da, _))) in row.chunks_exact(Q8_0_BYTES).zip(blocks) {
                let sumi: i32 = b[2..]
                    .iter()
                    .zip(qa)
                    .map(|(&w, &x)| i32::from(w as i8) * i32::from(x))
                    .sum();
                acc += f16_at(b, 0) * da * sumi as f32;
            }
        }
        _ => return f32::NAN,
    }
    acc + off
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD block quantizer gives the scalar one's codes, sums and maxima exactly: random
    /// blocks, an all-zero block, and exact halves (ties round to even).
    #[test]
    fn simd_quantization_equals_the_scalar_code() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        };
        let mut blocks: Vec<Vec<f32>> = (0..200)
            .map(|_| (0..QK).map(|_| next()).collect())
            .collect();
        blocks.push(vec![0.0; QK]);
        // max 127 => codes are the values themselves; ±x.5 are ties.
        blocks.push(
            (0..QK)
                .map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 })
                .collect(),
        );
        for xb in &blocks {
            let (mut a, mut b) = ([0i8; QK], [0i8; QK]);
            assert_eq!(quantize_block(xb, &mut a), quantize_block_simd(xb, &mut b));
            assert_eq!(a, b, "{xb:?}");
        }
    }
}
