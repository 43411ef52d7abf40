//! Products with 8-bit activations, as llama.cpp's `mmvq`: the activation row is quantized once
//! per product to blocks of 32 signed bytes and one f32 scale ([`quantize_q8_kernel`]), and a
//! weight unit of 32 values is multiplied with it as packed bytes by `dp4a` (four byte products
//! and their sum in one instruction), with one conversion to f32 per block segment.
//!
//! The f32 products (`products.rs`) read a 4-byte activation per weight value and convert every
//! value to f32 before its multiply: on an H100/H200 that bound a 7B decode step at ~190 GB/s of
//! weights, a twentieth of the card's bandwidth. Here a weight value costs a quarter of a
//! `dp4a` and one activation byte.
//!
//! A unit is split into *segments*: the values that share one weight scale and
//! one activation block. Each segment's sum is `xd · (dw · Σ q·xq − mw · Σ xq)` with `dw` the
//! segment's weight scale and `mw` its offset (`8d` for Q4_0's `q − 8`, `dmin·m` for Q4_K's
//! minimum, …): the integer sums are exact, so the result differs from the f32 product by the
//! activations' 8-bit rounding only, the rounding the CPU path and llama.cpp apply too (there
//! per 256 values for K-quants, here per 32: closer to f32).
//!
//! Weight bytes are read as whole `u32` words. Q4_1, Q4_K and Q5_K blocks keep every field
//! word-aligned; Q4_0 (18 bytes), Q8_0 (34) and Q6_K (210) blocks start at even bytes, so their
//! runs are two loaded words joined by a 16-bit funnel ([`word_at_even`]).

#![allow(
    clippy::manual_is_multiple_of,
    reason = "CubeCL expands `%`, not `is_multiple_of`, inside kernels"
)]
#![allow(
    clippy::too_many_arguments,
    reason = "a kernel's arguments are its launch ABI (the macro's launch fn repeats them)"
)]

use cubecl::prelude::*;

use super::decode::{
    BF16, F16, F32, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, Q8_0, byte_at, f16_at, f16_bits, k4_unit_scales,
};
use super::fused::{ROW_THREADS, rms_norm_row, round_to_f16};

/// Activation values per scale: one activation block.
pub(super) const QBLOCK: usize = 32;

/// Whether `kind` is multiplied here (the quantized layouts), not by the f32 products.
pub(super) fn is_q8_kind(kind: u32) -> bool {
    !matches!(kind, F16 | BF16 | F32)
}

/// Whether `kind` is a K-quant (its products round activations per [`KBLOCK`] values).
pub(super) fn is_k_kind(kind: u32) -> bool {
    matches!(kind, Q4_K | Q5_K | Q6_K)
}

/// Values per activation scale for K-quant weights, as the CPU's `Q8_K` rows.
pub(super) const KBLOCK: usize = 256;

/// Units per cube of [`quantize_q8_kernel`] (each unit one word: four values).
pub(super) const QUANTIZE_UNITS: u32 = 64;

/// `f32` to the nearest integer, ties to even, for `|v| < 2²²`: the bits of `v + 1.5·2²³`
/// (ggml's `nearest_int`; the same on every backend, unlike a `round` instruction whose ties
/// SPIR-V leaves to the driver).
#[cube]
fn nearest_int(v: f32) -> i32 {
    let bits = u32::reinterpret(v + 12_582_912.0f32);
    i32::cast_from(bits & 0x007F_FFFF) - 0x0040_0000
}

/// The activations of a product as 8-bit blocks, rounded as the CPU path rounds them for the
/// same weights (`kernels::q8`, `kernels::q8k`), so the two compute alike:
/// * `per = 32` (Q4_0/Q4_1/Q8_0 weights, ggml's `q8_1`): `q = round(x · 127 / max|x|)`,
///   scale `d = max|x| / 127` rounded to f16, and `s = d · Σq` rounded to f16 (Q4_1's offset
///   term multiplies it);
/// * `per = 256` (K-quant weights, ggml's `q8_K`): `q = min(round(x · −127 / m), 127)` with
///   `m` the value of largest magnitude (its sign kept), `d = 1 / (−127 / m)` in f32, written
///   for each of the 256 values' eight 32-value blocks.
///
/// Ties round to even; an all-zero block has `q = 0`, `d = 0`. Out: `xq` the codes, four to a
/// word (`[values / 4]`), `xd` per 32-value block `(d, s)` (`[values / 32, 2]`; `s` only with
/// `per = 32`). One unit per word, [`QUANTIZE_UNITS`] per cube (blocks never straddle cubes).
#[cube(launch)]
pub(super) fn quantize_q8_kernel(
    x: &[f32],
    xq: &mut [u32],
    xd: &mut [f32],
    words: usize,
    #[comptime] per: u32,
) {
    let w = ABSOLUTE_POS;
    let valid = w < words;
    let mut v = Array::<f32>::new(4usize);
    #[unroll]
    for j in 0..4 {
        v[j] = select(valid, x[select(valid, 4 * w + j, 0)], 0.0f32);
    }
    quantize_word(
        &v,
        w,
        valid,
        xq,
        xd,
        comptime!(QUANTIZE_UNITS as usize),
        per,
    );
}

/// Word `w` of [`quantize_q8_kernel`]'s output from its four values `v`, in a cube of `units`
/// units that each quantize one word (`valid` false for a unit past the end: it takes part in
/// the cube's exchanges and writes nothing). Every unit of the cube must call it, the same
/// number of times (it synchronises the cube); 32- and 256-value blocks never straddle cubes.
#[cube]
pub(super) fn quantize_word(
    v: &Array<f32>,
    w: usize,
    valid: bool,
    xq: &mut [u32],
    xd: &mut [f32],
    #[comptime] units: usize,
    #[comptime] per: u32,
) {
    let group = comptime!(per as usize / 4);
    let mut amaxes = Shared::<[f32]>::new_slice(units);
    let mut maxes = Shared::<[f32]>::new_slice(units);
    let mut sums = Shared::<[i32]>::new_slice(units);
    let tid = UNIT_POS as usize;
    let mut am = 0.0f32;
    let mut mx = 0.0f32;
    #[unroll]
    for j in 0..4 {
        // The first value of largest magnitude, in order (ggml's loop).
        if f32::abs(v[j]) > am {
            am = f32::abs(v[j]);
            mx = v[j];
        }
    }
    amaxes[tid] = am;
    maxes[tid] = mx;
    sync_cube();
    let g0 = tid - tid % group;
    let mut bam = 0.0f32;
    let mut bmx = 0.0f32;
    for i in 0..group {
        let a = amaxes[g0 + i];
        if a > bam {
            bam = a;
            bmx = maxes[g0 + i];
        }
    }
    let mut word = 0u32;
    let mut isum = 0i32;
    let mut d = 0.0f32;
    if bam > 0.0 {
        let mut scale = 127.0f32 / bam;
        if comptime!(per as usize == KBLOCK) {
            scale = -127.0f32 / bmx;
            d = 1.0f32 / scale;
        } else {
            d = round_to_f16(bam / 127.0);
        }
        #[unroll]
        for j in 0..4 {
            let q = i32::min(nearest_int(v[j] * scale), 127);
            isum += q;
            word |= (u32::reinterpret(q) & 0xFF) << u32::cast_from(8 * j);
        }
    }
    sums[tid] = isum;
    sync_cube();
    if valid {
        xq[w] = word;
        // The first unit of each 32-value block writes its (d, s).
        if tid % 8 == 0 {
            let blk = w / 8;
            xd[2 * blk] = d;
            if comptime!(per as usize == QBLOCK) {
                let mut total = 0i32;
                #[unroll]
                for i in 0..8 {
                    total += sums[tid + i];
                }
                xd[2 * blk + 1] = round_to_f16(bam / 127.0 * f32::cast_from(total));
            }
        }
    }
    // A caller's next word reuses the exchanges.
    sync_cube();
}

/// [`super::fused::rms_norm_kernel`] for one row, and the row quantized for an
/// 8-bit-activation product into `xq`, `xd` in the same launch (`per` values per scale: [`super::q8::quantize_q8_kernel`]'s
/// arithmetic on the same values, so the codes are those of a separate quantizing launch).
#[cube(launch)]
pub(super) fn rms_norm_q8_kernel(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    xq: &mut [u32],
    xd: &mut [f32],
    d: usize,
    eps: f32,
    #[comptime] per: u32,
) {
    let tid = UNIT_POS as usize;
    let threads = comptime!(ROW_THREADS as usize);
    let scale = rms_norm_row(x, w, out, 0, d, eps);
    // Each unit recomputes its word's four values (the expression above, so the same bits)
    // rather than reading back what other units wrote.
    let words = d / 4;
    for p in 0..words.div_ceil(threads) {
        let wi = p * threads + tid;
        let valid = wi < words;
        let mut v = Array::<f32>::new(4usize);
        #[unroll]
        for j in 0..4 {
            let i = select(valid, 4 * wi + j, 0);
            v[j] = select(valid, x[i] * scale * w[i], 0.0f32);
        }
        quantize_word(&v, wi, valid, xq, xd, threads, per);
    }
}

/// The 4-byte word at even byte offset `byte` of a word stream: the word itself, or the high
/// half of one and the low half of the next (every block these read starts at an even byte).
/// Reads one word past the run (the upload pads a word).
#[cube]
fn word_at_even(w: &[u32], byte: usize) -> u32 {
    let i = byte / 4;
    let a = w[i];
    let b = w[i + 1];
    select(byte % 4 == 0, a, (a >> 16) | (b << 16))
}

/// Unit `u` of the row starting at byte `row`: its 32 values as 8 words of packed bytes `qv`
/// (segment `s` in words `s · 8/S ..`), each segment's scale `dw[s]` and offset `mw[s]`
/// (value = `dw · q − mw`). Values are 0..63 (or signed for Q8_0), so `dp4a`'s signed bytes
/// hold them.
#[cube]
pub(super) fn unit_q8(
    w: &[u32],
    row: usize,
    u: usize,
    qv: &mut Array<u32>,
    dw: &mut Array<f32>,
    mw: &mut Array<f32>,
    #[comptime] kind: u32,
) {
    if kind == Q4_0 {
        // {f16 d; u8 qs[16]}: value j = d·(lo(qs[j]) − 8), value j + 16 = d·(hi(qs[j]) − 8).
        let base = row + u * 18;
        let d = f16_at(w, base);
        #[unroll]
        for t in 0..4 {
            let qw = word_at_even(w, base + 2 + 4 * t);
            qv[t] = qw & 0x0F0F_0F0F;
            qv[4 + t] = (qw >> 4) & 0x0F0F_0F0F;
        }
        dw[0] = d;
        mw[0] = 8.0 * d;
    } else if kind == Q4_1 {
        // {f16 d, m; u8 qs[16]}: d·q + m; 20-byte blocks keep every field word-aligned.
        let wb = (row + u * 20) / 4;
        let dm = w[wb];
        #[unroll]
        for t in 0..4 {
            let qw = w[wb + 1 + t];
            qv[t] = qw & 0x0F0F_0F0F;
            qv[4 + t] = (qw >> 4) & 0x0F0F_0F0F;
        }
        dw[0] = f16_bits(dm & 0xFFFF);
        mw[0] = -f16_bits(dm >> 16);
    } else if kind == Q8_0 {
        // {f16 d; i8 qs[32]}: d·q.
        let base = row + u * 34;
        #[unroll]
        for t in 0..8 {
            qv[t] = word_at_even(w, base + 2 + 4 * t);
        }
        dw[0] = f16_at(w, base);
        mw[0] = 0.0;
    } else if kind == Q4_K || kind == Q5_K {
        // Superblock {f16 d, dmin; u8 scales[12]; (Q5_K: u8 qh[32];) u8 qs[128]}: unit
        // (g, h) = bytes 16h..16h + 16 of 64-value group g's 32 bytes; low nibbles are
        // sub-block 2g (segment 0), high nibbles 2g + 1 (segment 1). Word-aligned.
        let k = u % 8;
        let g = k / 2;
        let h = k % 2;
        let (wb, d1, min1, d2, min2) = k4_unit_scales(w, row, u, kind);
        dw[0] = d1;
        mw[0] = min1;
        dw[1] = d2;
        mw[1] = min2;
        let qs_start = if kind == Q4_K { 4usize } else { 12usize };
        let qs = wb + qs_start + 8 * g + 4 * h;
        let qh_shift = u32::cast_from(2 * g);
        #[unroll]
        for t in 0..4 {
            let qw = w[qs + t];
            let mut lo = qw & 0x0F0F_0F0F;
            let mut hi = (qw >> 4) & 0x0F0F_0F0F;
            if kind == Q5_K {
                // Fifth bits: qh[l] bit 2g for the low sub-block, 2g + 1 for the high one
                // (the shift leaves bits 0 and 1 of each byte clean).
                let hw = w[wb + 4 + 4 * h + t] >> qh_shift;
                lo |= (hw & 0x0101_0101) << 4;
                hi |= ((hw >> 1) & 0x0101_0101) << 4;
            }
            qv[t] = lo;
            qv[4 + t] = hi;
        }
    } else {
        // Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: unit (n, c) takes columns
        // 8c..8c + 8 of each strip s of half n (segment s, value d·scale·(q − 32)): low 4 bits
        // from ql[64n + 32(s % 2) + l] (low nibble for s < 2), high 2 bits from
        // qh[32n + l] bits 2s..2s + 2.
        let k = u % 8;
        let n = k / 4;
        let c = k % 4;
        let base = row + (u / 8) * 210;
        let d = f16_at(w, base + 208);
        let l0 = 8 * c;
        #[unroll]
        for j in 0..2 {
            let a = word_at_even(w, base + 64 * n + l0 + 4 * j);
            let b = word_at_even(w, base + 64 * n + 32 + l0 + 4 * j);
            let qh = word_at_even(w, base + 128 + 32 * n + l0 + 4 * j);
            qv[j] = (a & 0x0F0F_0F0F) | ((qh & 0x0303_0303) << 4);
            qv[2 + j] = (b & 0x0F0F_0F0F) | (((qh >> 2) & 0x0303_0303) << 4);
            qv[4 + j] = ((a >> 4) & 0x0F0F_0F0F) | (((qh >> 4) & 0x0303_0303) << 4);
            qv[6 + j] = ((b >> 4) & 0x0F0F_0F0F) | (((qh >> 6) & 0x0303_0303) << 4);
        }
        #[unroll]
        for s in 0..4 {
            let q = byte_at(w, base + 192 + 8 * n + c / 2 + 2 * s);
            // Signed byte.
            let sc = d * f32::cast_from(i32::cast_from(q) - i32::cast_from(q >> 7) * 256);
            dw[s] = sc;
            mw[s] = 32.0 * sc;
        }
    }
}

/// The activation block of segment `s` of unit `u` (blocks counted from the row's start) and
/// the first of its words the segment multiplies.
#[cube]
fn segment_x(u: usize, s: usize, #[comptime] kind: u32) -> (usize, usize) {
    let mut block = u;
    let mut word = 0usize;
    if kind == Q4_K || kind == Q5_K {
        let k = u % 8;
        block = 8 * (u / 8) + 2 * (k / 2) + s;
        word = 4 * (k % 2);
    } else if kind == Q6_K {
        let k = u % 8;
        block = 8 * (u / 8) + 4 * (k / 4) + s;
        word = 2 * (k % 4);
    }
    (block, word)
}

/// `Σ W[unit u] · x` for one token whose blocks start at block `xb` of `xq`/`xd`: each segment's
/// integer sums by `dp4a`, then one f32 multiply-add per segment.
#[cube]
pub(super) fn unit_dot_q8(
    xq: &[u32],
    xd: &[f32],
    xb: usize,
    u: usize,
    qv: &Array<u32>,
    dw: &Array<f32>,
    mw: &Array<f32>,
    #[comptime] kind: u32,
) -> f32 {
    // Segments per unit: values sharing one weight scale and one activation block.
    let segs = comptime!(if kind == Q4_K || kind == Q5_K {
        2usize
    } else if kind == Q6_K {
        4usize
    } else {
        1usize
    });
    let per = comptime!(8 / segs);
    let mut acc = 0.0f32;
    #[unroll]
    for s in 0..segs {
        let (block, word) = segment_x(u, s, kind);
        let blk = xb + block;
        let x0 = blk * (QBLOCK / 4) + word;
        let mut isum = 0i32;
        let mut xsum = 0i32;
        #[unroll]
        for i in 0..per {
            let xw = i32::reinterpret(xq[x0 + i]);
            isum = dp4a(i32::reinterpret(qv[s * per + i]), xw, isum);
            if kind != Q8_0 && kind != Q4_1 {
                xsum = dp4a(0x0101_0101i32, xw, xsum);
            }
        }
        if kind == Q4_1 {
            // The offset times the block's `s` (f16, as the CPU's `q8_1` rows).
            acc += xd[2 * blk] * dw[s] * f32::cast_from(isum) - mw[s] * xd[2 * blk + 1];
        } else {
            acc += xd[2 * blk] * (dw[s] * f32::cast_from(isum) - mw[s] * f32::cast_from(xsum));
        }
    }
    acc
}
