//! The launchable kernels: a quantized matrix-vector product for decode and small batches, and
//! a dequantizer that feeds the backend's matmul for prompts.
#![allow(
    clippy::too_many_arguments,
    reason = "a kernel's arguments are its launch ABI (the macro's launch fn repeats them)"
)]

use cubecl::prelude::*;

use super::decode::{decode_unit, unit_col};

/// Lanes that share one weight row in [`q_matvec_kernel`] (a warp on NVIDIA).
pub(super) const LANES: u32 = 32;

/// `out[t, r] = Σ_c x[t, c] · W[r, c]` for `t` in this cube's `tokens`-wide slice of the `n`
/// tokens, `r < rows`. Cube `(LANES, rows_per_cube)`: the `LANES` units of a row stride over its
/// 32-value units (adjacent lanes, adjacent bytes: coalesced loads), each decoded once and
/// multiplied with every token of the slice, so a weight byte is read once per `tokens`
/// tokens; the lanes' partial sums are then added with one plane sum (`plane`: planes are
/// exactly `LANES` wide) or through shared memory.
#[cube(launch)]
pub(super) fn q_matvec_kernel(
    x: &[f32],
    w: &[u32],
    out: &mut [f32],
    n: usize,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    #[comptime] kind: u32,
    #[comptime] rows_per_cube: u32,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
) {
    let lane = UNIT_POS_X as usize;
    let r = CUBE_POS_X as usize * comptime!(rows_per_cube as usize) + UNIT_POS_Y as usize;
    let t0 = CUBE_POS_Y as usize * tokens;
    let mut acc = Array::<f32>::new(tokens);
    #[unroll]
    for t in 0..tokens {
        acc[t] = 0.0;
    }
    if r < rows {
        let units = cols / 32;
        let row = r * row_bytes;
        let mut u = lane;
        while u < units {
            let mut vals = Array::<f32>::new(32usize);
            decode_unit(w, row, u, &mut vals, kind);
            #[unroll]
            for t in 0..tokens {
                // Tokens past `n` read token 0's row (in bounds) and are never written.
                let xo = select(t0 + t < n, (t0 + t) * cols, 0);
                let mut s = 0.0f32;
                #[unroll]
                for i in 0..32 {
                    s += vals[i] * x[xo + unit_col(u, i, kind)];
                }
                acc[t] += s;
            }
            u += comptime!(LANES as usize);
        }
    }
    if plane {
        #[unroll]
        for t in 0..tokens {
            let total = plane_sum(acc[t]);
            if lane == 0 && r < rows && t0 + t < n {
                out[(t0 + t) * rows + r] = total;
            }
        }
    } else {
        // Planes of another width: the partial sums meet in shared memory, lane 0 adds them.
        let width = comptime!(LANES as usize * tokens);
        let mut sums = Shared::<[f32]>::new_slice(comptime!(width * rows_per_cube as usize));
        let slot = UNIT_POS_Y as usize * width;
        #[unroll]
        for t in 0..tokens {
            sums[slot + t * 32 + lane] = acc[t];
        }
        sync_cube();
        if lane == 0 && r < rows {
            #[unroll]
            for t in 0..tokens {
                let mut total = 0.0f32;
                for i in 0..32 {
                    total += sums[slot + t * 32 + i];
                }
                if t0 + t < n {
                    out[(t0 + t) * rows + r] = total;
                }
            }
        }
    }
}

/// `out[r − row0, c] = W[r, c]` as f32 for rows `row0..row0 + rows`: one unit per 32 values.
#[cube(launch)]
pub(super) fn dequantize_kernel(
    w: &[u32],
    out: &mut [f32],
    row0: usize,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    #[comptime] kind: u32,
) {
    let units = cols / 32;
    let pos = ABSOLUTE_POS;
    if pos >= rows * units {
        terminate!();
    }
    let r = pos / units;
    let u = pos % units;
    let mut vals = Array::<f32>::new(32usize);
    decode_unit(w, (row0 + r) * row_bytes, u, &mut vals, kind);
    #[unroll]
    for i in 0..32 {
        out[r * cols + unit_col(u, i, kind)] = vals[i];
    }
}

/// `out[i] = x[i]` rounded to the nearest f16 (ties to even), kept f32: integer arithmetic on
/// the f32 bits, so it needs no f16 support from the device. Bit for bit `half`'s conversion:
/// normals, subnormals, ties, overflow to infinity (NaN stays a NaN).
#[cube(launch)]
pub(super) fn round_f16_kernel(x: &[f32], out: &mut [f32], len: usize) {
    let i = ABSOLUTE_POS;
    if i >= len {
        terminate!();
    }
    let bits = u32::reinterpret(x[i]);
    let sign = bits & 0x8000_0000u32;
    let e = (bits >> 23u32) & 0xFFu32;
    // Below 2⁻²⁵ (half the smallest f16 subnormal, 2⁻²⁴): ±0.
    let mut r = sign;
    if e == 102u32 {
        // [2⁻²⁵, 2⁻²⁴): 2⁻²⁴ unless exactly the tie 2⁻²⁵ (even: 0).
        if (bits & 0x7F_FFFFu32) != 0u32 {
            r = sign | (103u32 << 23u32);
        }
    } else if e > 102u32 {
        // Drop the mantissa bits f16 lacks: 13 for normals (exponent ≥ 2⁻¹⁴, biased 113),
        // one more per binade below, up to 23 at 2⁻²⁴. Rounding the bit pattern is rounding
        // the value within a binade, and a carry into the exponent is the next binade.
        let drop = 13u32 + select(e < 113u32, 113u32 - e, 0u32);
        let half = 1u32 << (drop - 1u32);
        let lsb = (bits >> drop) & 1u32;
        let mask = 0xFFFF_FFFFu32 - ((1u32 << drop) - 1u32);
        r = (bits + half - 1u32 + lsb) & mask;
        // Past f16's largest finite value (65 504; biased exponent 142 is 2¹⁵): infinity.
        if e == 255u32 {
            r = bits;
        } else if ((r >> 23u32) & 0xFFu32) > 142u32 {
            r = sign | 0x7F80_0000u32;
        }
    }
    out[i] = f32::reinterpret(r);
}
