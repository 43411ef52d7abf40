//! Block layouts of the supported ggml types and plain (scalar) decoding of one block.
//!
//! Source of truth: ggml's `ggml-common.h` (the `block_*` structs, which are packed: no
//! padding, little-endian fields in declaration order) and `ggml-quants.c`
//! (`dequantize_row_*`). `f16` below is IEEE half precision, `bf16` is bfloat16.
//!
//! Each function decodes exactly one block from a fixed-size byte array into a fixed-size
//! output, so there is nothing to bounds-check at run time and nothing to get wrong about
//! lengths; [`crate::dequantize`] splits a buffer into blocks. These are the reference
//! decoders: the engine's fused SIMD kernels are tested against them.
//!
//! Quantized weights are stored as rows of `dims[0]` values; a row is a sequence of whole
//! blocks, so block `b` of a row covers values `b*QK .. (b+1)*QK` of that row.

use half::{bf16, f16};

/// Weights per block of the 32-wide types (`QK4_0`, `QK4_1`, `QK8_0`).
pub const QK: usize = 32;
/// Weights per super-block of the K-quants (`QK_K`).
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in a Q4_K / Q5_K super-block (`K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// `block_q4_0`: `f16 d; u8 qs[16]` = 18 bytes for 32 weights.
pub const Q4_0_BYTES: usize = 2 + QK / 2;
/// `block_q4_1`: `f16 d; f16 m; u8 qs[16]` = 20 bytes for 32 weights.
pub const Q4_1_BYTES: usize = 2 + 2 + QK / 2;
/// `block_q8_0`: `f16 d; i8 qs[32]` = 34 bytes for 32 weights.
pub const Q8_0_BYTES: usize = 2 + QK;
/// `block_q4_K`: `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]` = 144 bytes for 256 weights.
pub const Q4_K_BYTES: usize = 2 + 2 + K_SCALE_SIZE + QK_K / 2;
/// `block_q5_K`: `f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]` = 176 bytes.
pub const Q5_K_BYTES: usize = 2 + 2 + K_SCALE_SIZE + QK_K / 8 + QK_K / 2;
/// `block_q6_K`: `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d` = 210 bytes for 256 weights.
pub const Q6_K_BYTES: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;

/// Reads the little-endian `f16` at `b[i..i+2]` as f32.
#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    match b.get(i..i + 2) {
        Some(&[lo, hi]) => f16::from_le_bytes([lo, hi]).to_f32(),
        // Callers pass fixed-size blocks with constant in-range offsets.
        _ => f32::NAN,
    }
}

/// One `F16` value.
#[inline]
pub fn decode_f16(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

/// One `BF16` value (the top 16 bits of an f32).
#[inline]
pub fn decode_bf16(b: [u8; 2]) -> f32 {
    bf16::from_le_bytes(b).to_f32()
}

/// Q4_0: `x[j] = d * (q[j] - 8)` with 4-bit `q`. The low nibbles of `qs[0..16]` are weights
/// 0..16, the high nibbles weights 16..32 (not interleaved).
pub fn dequantize_q4_0(b: &[u8; Q4_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    let (lo, hi) = out.split_at_mut(QK / 2);
    for ((&q, l), h) in b[2..].iter().zip(lo).zip(hi) {
        *l = d * (f32::from(q & 0x0f) - 8.0);
        *h = d * (f32::from(q >> 4) - 8.0);
    }
}

/// Q4_1: `x[j] = d * q[j] + m` with 4-bit `q`; nibble order as Q4_0.
pub fn dequantize_q4_1(b: &[u8; Q4_1_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = out.split_at_mut(QK / 2);
    for ((&q, l), h) in b[4..].iter().zip(lo).zip(hi) {
        *l = d * f32::from(q & 0x0f) + m;
        *h = d * f32::from(q >> 4) + m;
    }
}

/// Q8_0: `x[j] = d * qs[j]` with `qs` signed bytes.
pub fn dequantize_q8_0(b: &[u8; Q8_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    for (&q, o) in b[2..].iter().zip(out.iter_mut()) {
        *o = d * f32::from(q as i8);
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K super-block
/// (`get_scale_min_k4` in ggml-quants.c). The 12 bytes pack eight 6-bit scales and eight
/// 6-bit mins:
///
/// ```text
/// bytes 0..4 : scale[0..4] in bits 0..6; bits 6..8 are the high 2 bits of scale[4..8]
/// bytes 4..8 : min[0..4]   in bits 0..6; bits 6..8 are the high 2 bits of min[4..8]
/// bytes 8..12: low 4 bits of scale[4..8] in bits 0..4, low 4 bits of min[4..8] in bits 4..8
/// ```
#[inline]
pub fn scale_min_k4(j: usize, s: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

fn k_scales(b: &[u8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    if let Some(src) = b.get(4..4 + K_SCALE_SIZE) {
        s.copy_from_slice(src);
    }
    s
}

/// Q4_K: a super-block of 8 sub-blocks of 32 weights; sub-block `j` has 6-bit scale `sc_j` and
/// min `m_j` ([`scale_min_k4`]), and `x = d * sc_j * q - dmin * m_j` with 4-bit `q`.
/// `qs` holds 4 chunks of 32 bytes; chunk `c` carries sub-block `2c` in its low nibbles and
/// sub-block `2c + 1` in its high nibbles.
pub fn dequantize_q4_k(b: &[u8; Q4_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = k_scales(b);
    let qs = &b[4 + K_SCALE_SIZE..];
    for (c, (q, y)) in qs
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * c, &scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, &scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (lo, hi) = y.split_at_mut(32);
        for ((&q, l), h) in q.iter().zip(lo).zip(hi) {
            *l = d1 * f32::from(q & 0x0f) - m1;
            *h = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Q5_K: as Q4_K with a fifth bit per weight from `qh[32]`: for chunk `c` (sub-blocks `2c`,
/// `2c + 1`), bit `2c` of `qh[l]` is the high bit of the low-nibble weight `l` and bit
/// `2c + 1` that of the high-nibble weight `l`. `x = d * sc_j * q - dmin * m_j`, `q` in 0..32.
pub fn dequantize_q5_k(b: &[u8; Q5_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = k_scales(b);
    let (qh, qs) = b[4 + K_SCALE_SIZE..].split_at(QK_K / 8);
    for (c, (q, y)) in qs
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * c, &scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, &scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (u1, u2) = (1u8 << (2 * c), 1u8 << (2 * c + 1));
        let (lo, hi) = y.split_at_mut(32);
        for (((&q, &h), l), hv) in q.iter().zip(qh).zip(lo).zip(hi) {
            let ql = (q & 0x0f) + if h & u1 != 0 { 16 } else { 0 };
            let qh5 = (q >> 4) + if h & u2 != 0 { 16 } else { 0 };
            *l = d1 * f32::from(ql) - m1;
            *hv = d2 * f32::from(qh5) - m2;
        }
    }
}

/// Q6_K: 16 sub-blocks of 16 weights, each with a signed 8-bit scale; `x = d * scale * (q -
/// 32)` with 6-bit `q` = 4 low bits from `ql` and 2 high bits from `qh`. The super-block is
/// two halves of 128 weights; half `h` uses `ql[64h..64h+64]`, `qh[32h..32h+32]`,
/// `scales[8h..8h+8]`, and for `l` in 0..32 (`is = l / 16`):
///
/// ```text
/// y[l]      = d * sc[is+0] * ((ql[l]    & 15 | (qh[l] >> 0 & 3) << 4) - 32)
/// y[l + 32] = d * sc[is+2] * ((ql[l+32] & 15 | (qh[l] >> 2 & 3) << 4) - 32)
/// y[l + 64] = d * sc[is+4] * ((ql[l]    >> 4 | (qh[l] >> 4 & 3) << 4) - 32)
/// y[l + 96] = d * sc[is+6] * ((ql[l+32] >> 4 | (qh[l] >> 6 & 3) << 4) - 32)
/// ```
pub fn dequantize_q6_k(b: &[u8; Q6_K_BYTES], out: &mut [f32; QK_K]) {
    let (ql, rest) = b.split_at(QK_K / 2);
    let (qh, rest) = rest.split_at(QK_K / 4);
    let (sc, _) = rest.split_at(QK_K / 16);
    let d = f16_at(b, Q6_K_BYTES - 2);
    for (h, y) in out.chunks_exact_mut(128).enumerate() {
        let ql = &ql[64 * h..64 * h + 64];
        let qh = &qh[32 * h..32 * h + 32];
        let sc = &sc[8 * h..8 * h + 8];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            let s = |k: usize| d * f32::from(sc[is + k] as i8);
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}
