//! GGUF block layouts decoded inside CubeCL kernels, 32 values (a *unit*) at a time.
//!
//! A weight row is a run of blocks (`ggml-common.h`): 32 values per block for Q4_0, Q4_1 and
//! Q8_0, 256 per superblock for Q4_K, Q5_K and Q6_K. Every layout is cut into units of 32
//! values so one kernel loop serves them all: [`decode_unit`] writes unit `u` of a row into 32
//! registers and [`unit_col`] says which column each register holds. A K-quant unit is the 32
//! values that share one pass over 16 bytes of packed quants (two 32-value sub-blocks for
//! Q4_K/Q5_K, four 8-column strips for Q6_K), so each byte is read once.
//!
//! The device holds a row as `u32` words (block sizes 18, 20, 34, 210 are not word multiples),
//! so bytes are read out of words. Values are f32 from the block's f16 scales, exactly as
//! ggml's `dequantize_row_*` computes them.

use cubecl::prelude::*;

/// The layouts, as the kernels' comptime selector.
pub(super) const Q4_0: u32 = 0;
pub(super) const Q4_1: u32 = 1;
pub(super) const Q8_0: u32 = 2;
pub(super) const Q4_K: u32 = 3;
pub(super) const Q5_K: u32 = 4;
pub(super) const Q6_K: u32 = 5;
pub(super) const F16: u32 = 6;
pub(super) const BF16: u32 = 7;
pub(super) const F32: u32 = 8;

/// Byte `i` of a little-endian byte stream stored as `u32` words.
#[cube]
pub(super) fn byte_at(w: &[u32], i: usize) -> u32 {
    let word = w[i / 4];
    (word >> u32::cast_from((i % 4) * 8)) & 0xFF
}

/// The little-endian `u16` at bytes `i..i + 2`.
#[cube]
fn u16_at(w: &[u32], i: usize) -> u32 {
    byte_at(w, i) | (byte_at(w, i + 1) << 8)
}

/// The signed byte at `i`, as f32.
#[cube]
fn i8_at(w: &[u32], i: usize) -> f32 {
    let q = byte_at(w, i);
    // Subtract 256 when the sign bit is set.
    f32::cast_from(i32::cast_from(q) - i32::cast_from(q >> 7) * 256)
}

/// The IEEE half at bytes `i..i + 2`, as f32 (normal and subnormal; GGUF scales are finite).
#[cube]
pub(super) fn f16_at(w: &[u32], i: usize) -> f32 {
    f16_bits(u16_at(w, i))
}

/// The IEEE half whose bits are the low 16 of `h`, as f32 ([`f16_at`]).
#[cube]
pub(super) fn f16_bits(h: u32) -> f32 {
    let sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1F;
    let m = h & 0x3FF;
    // Normal: rebias the exponent (15 → 127) and widen the mantissa (10 → 23 bits).
    let mut v = f32::reinterpret(sign | ((e + 112) << 23) | (m << 13));
    if e == 0 {
        // Subnormal: m · 2⁻²⁴.
        v = f32::cast_from(m) * 5.960_464_5e-8;
        if sign != 0 {
            v = -v;
        }
    }
    v
}

/// Byte `j` (0..12) of the three words `s0`, `s1`, `s2` (little-endian).
#[cube]
fn byte_of3(s0: u32, s1: u32, s2: u32, j: usize) -> u32 {
    let word = if j < 4 {
        s0
    } else if j < 8 {
        s1
    } else {
        s2
    };
    (word >> u32::cast_from((j % 4) * 8)) & 0xFF
}

/// Scale and minimum `j` (0..8) of a Q4_K/Q5_K superblock, from its 12 packed 6-bit fields
/// held in the words `s0..s2` (ggml `get_scale_min_k4`).
#[cube]
fn scale_min_k4(s0: u32, s1: u32, s2: u32, j: usize) -> (f32, f32) {
    let mut sc = byte_of3(s0, s1, s2, j) & 63;
    let mut m = byte_of3(s0, s1, s2, j + 4) & 63;
    if j >= 4 {
        let hi = byte_of3(s0, s1, s2, j + 4);
        sc = (hi & 0xF) | ((byte_of3(s0, s1, s2, j - 4) >> 6) << 4);
        m = (hi >> 4) | ((byte_of3(s0, s1, s2, j) >> 6) << 4);
    }
    (f32::cast_from(sc), f32::cast_from(m))
}

/// For unit `u` of the Q4_K/Q5_K row starting at byte `row`: its superblock's first word, and
/// the scale and minimum (`d · sc`, `dmin · m`) of the unit's two sub-blocks `2g` and `2g + 1`
/// (`g = (u % 8) / 2`). Superblocks of 144/176 bytes in rows of whole superblocks keep every
/// field word-aligned: one word of `d, dmin`, three of scales.
#[cube]
pub(super) fn k4_unit_scales(
    w: &[u32],
    row: usize,
    u: usize,
    #[comptime] kind: u32,
) -> (usize, f32, f32, f32, f32) {
    let g = (u % 8) / 2;
    let size = if kind == Q4_K { 144usize } else { 176usize };
    let wb = (row + (u / 8) * size) / 4;
    let dm = w[wb];
    let d = f16_bits(dm & 0xFFFF);
    let dmin = f16_bits(dm >> 16);
    let (s0, s1, s2) = (w[wb + 1], w[wb + 2], w[wb + 3]);
    let (sc1, m1) = scale_min_k4(s0, s1, s2, 2 * g);
    let (sc2, m2) = scale_min_k4(s0, s1, s2, 2 * g + 1);
    (wb, d * sc1, dmin * m1, d * sc2, dmin * m2)
}

/// Writes the 32 values of unit `u` of the row starting at byte `row` into `vals`.
#[cube]
pub(super) fn decode_unit(
    w: &[u32],
    row: usize,
    u: usize,
    vals: &mut Array<f32>,
    #[comptime] kind: u32,
) {
    if kind == Q4_0 {
        // {f16 d; u8 qs[16]}: value j = d·(lo(qs[j]) − 8), value j+16 = d·(hi(qs[j]) − 8).
        let base = row + u * 18;
        let d = f16_at(w, base);
        #[unroll]
        for j in 0..16 {
            let q = byte_at(w, base + 2 + j);
            vals[j] = d * (f32::cast_from(q & 0xF) - 8.0);
            vals[j + 16] = d * (f32::cast_from(q >> 4) - 8.0);
        }
    } else if kind == Q4_1 {
        // {f16 d, m; u8 qs[16]}: d·q + m. Blocks of 20 bytes in rows of whole blocks: every
        // field is word-aligned, so the unit is 5 word loads.
        let wb = (row + u * 20) / 4;
        let dm = w[wb];
        let d = f16_bits(dm & 0xFFFF);
        let m = f16_bits(dm >> 16);
        #[unroll]
        for t in 0..4 {
            let qw = w[wb + 1 + t];
            #[unroll]
            for b in 0..4 {
                let q = (qw >> u32::cast_from(8 * b)) & 0xFF;
                vals[4 * t + b] = d * f32::cast_from(q & 0xF) + m;
                vals[4 * t + b + 16] = d * f32::cast_from(q >> 4) + m;
            }
        }
    } else if kind == Q8_0 {
        // {f16 d; i8 qs[32]}: d·q.
        let base = row + u * 34;
        let d = f16_at(w, base);
        #[unroll]
        for j in 0..32 {
            vals[j] = d * i8_at(w, base + 2 + j);
        }
    } else if kind == Q4_K || kind == Q5_K {
        // Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]} (144 bytes); Q5_K adds u8 qh[32]
        // before qs (176 bytes). 64-value group g reads qs[32g..32g + 32]: low nibbles are
        // sub-block 2g, high nibbles 2g + 1; unit (g, h) takes bytes 16h..16h + 16 of it.
        let k = u % 8;
        let g = k / 2;
        let h = k % 2;
        // Superblocks of 144/176 bytes in rows of whole superblocks: every field is
        // word-aligned, so the unit is word loads (1 + 3 + 4, and 4 of qh for Q5_K) with
        // constant shifts, not a load per byte.
        let (wb, d1, min1, d2, min2) = k4_unit_scales(w, row, u, kind);
        let qs_start = if kind == Q4_K { 4usize } else { 12usize };
        let qs = wb + qs_start + 8 * g + 4 * h;
        let qh_shift = u32::cast_from(2 * g);
        #[unroll]
        for t in 0..4 {
            let qw = w[qs + t];
            let mut hw = 0u32;
            if kind == Q5_K {
                hw = w[wb + 4 + 4 * h + t] >> qh_shift;
            }
            #[unroll]
            for b in 0..4 {
                let q = (qw >> u32::cast_from(8 * b)) & 0xFF;
                let mut lo = q & 0xF;
                let mut hi = q >> 4;
                if kind == Q5_K {
                    // Fifth bits: qh[l] bit 2g for the low sub-block, 2g + 1 for the high one.
                    let qh = hw >> u32::cast_from(8 * b);
                    lo += (qh & 1) << 4;
                    hi += ((qh >> 1) & 1) << 4;
                }
                vals[4 * t + b] = d1 * f32::cast_from(lo) - min1;
                vals[4 * t + b + 16] = d2 * f32::cast_from(hi) - min2;
            }
        }
    } else if kind == Q6_K {
        // {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} (210 bytes), two halves of 128
        // values. In half n, column l (0..32) of strip s (0..4) is value 32s + l: low 4 bits
        // from ql[64n + l] (strips 0, 2: low/high nibble) or ql[64n + 32 + l] (strips 1, 3),
        // high 2 bits from qh[32n + l] bits 2s..2s+2, scale scales[8n + l/16 + 2s].
        // Unit (n, c) takes columns 8c..8c + 8 of every strip.
        let k = u % 8;
        let n = k / 4;
        let c = k % 4;
        let base = row + (u / 8) * 210;
        let d = f16_at(w, base + 208);
        let l0 = 8 * c;
        #[unroll]
        for s in 0..4 {
            let sc = d * i8_at(w, base + 192 + 8 * n + c / 2 + 2 * s);
            #[unroll]
            for j in 0..8 {
                let l = l0 + j;
                let ql = byte_at(w, base + 64 * n + l + 32 * (s % 2));
                let lo = if s < 2 { ql & 0xF } else { ql >> 4 };
                let hi = (byte_at(w, base + 128 + 32 * n + l) >> u32::cast_from(2 * s)) & 3;
                let q = i32::cast_from(lo | (hi << 4)) - 32;
                vals[8 * s + j] = sc * f32::cast_from(q);
            }
        }
    } else if kind == F16 {
        let base = row + u * 64;
        #[unroll]
        for j in 0..32 {
            vals[j] = f16_at(w, base + 2 * j);
        }
    } else if kind == BF16 {
        let base = row + u * 64;
        #[unroll]
        for j in 0..32 {
            vals[j] = f32::reinterpret(u16_at(w, base + 2 * j) << 16);
        }
    } else {
        // F32 rows are whole words.
        let base = (row + u * 128) / 4;
        #[unroll]
        for j in 0..32 {
            vals[j] = f32::reinterpret(w[base + j]);
        }
    }
}

/// The column (within the row) of value `i` of unit `u`, as [`decode_unit`] lays them out.
#[cube]
pub(super) fn unit_col(u: usize, i: usize, #[comptime] kind: u32) -> usize {
    // `i` is an unrolled loop index at every call: the divisions fold away.
    let mut col = 32 * u + i;
    if kind == Q4_K || kind == Q5_K {
        let k = u % 8;
        col = 256 * (u / 8) + 64 * (k / 2) + 16 * (k % 2) + 32 * (i / 16) + i % 16;
    } else if kind == Q6_K {
        let k = u % 8;
        col = 256 * (u / 8) + 128 * (k / 4) + 8 * (k % 4) + 32 * (i / 8) + i % 8;
    }
    col
}
