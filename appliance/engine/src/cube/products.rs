//! The launchable kernels: a quantized matrix-vector product for decode and small batches, and
//! a dequantizer that feeds the backend's matmul for prompts.
#![allow(
    clippy::too_many_arguments,
    reason = "a kernel's arguments are its launch ABI (the macro's launch fn repeats them)"
)]

use cubecl::prelude::*;

use super::decode::{decode_unit, unit_col};
use super::fused::round_to_f16;

/// Lanes that share one weight row in [`q_matvec_kernel`] (a warp on NVIDIA).
pub(super) const LANES: u32 = 32;

/// `out[t, r] = Σ_c x[t, c] · W[r, c]` for `t` in this cube's `tokens`-wide slice of the `n`
/// tokens, `r < rows`, written at column `col0 + r` of `out`'s rows of `out_cols` (several
/// matrices side by side in one output), plus `res[t, r]` with `residual`. Cube
/// `(LANES, rows_per_cube)`: the `LANES` units of a row stride over its
/// 32-value units (adjacent lanes, adjacent bytes: coalesced loads), each decoded once and
/// multiplied with every token of the slice, so a weight byte is read once per `tokens`
/// tokens; the lanes' partial sums are then added with one plane sum (`plane`: planes are
/// exactly `LANES` wide) or through shared memory.
#[cube(launch)]
pub(super) fn q_matvec_kernel(
    x: &[f32],
    w: &[u32],
    res: &[f32],
    out: &mut [f32],
    n: usize,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    out_cols: usize,
    col0: usize,
    #[comptime] kind: u32,
    #[comptime] rows_per_cube: u32,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
    #[comptime] residual: bool,
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
            let mut total = plane_sum(acc[t]);
            if lane == 0 && r < rows && t0 + t < n {
                if residual {
                    total += res[(t0 + t) * rows + r];
                }
                out[(t0 + t) * out_cols + col0 + r] = total;
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
                    if residual {
                        total += res[(t0 + t) * rows + r];
                    }
                    out[(t0 + t) * out_cols + col0 + r] = total;
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

/// `out[i] = x[i]` rounded to the nearest f16 (ties to even), kept f32 ([`round_to_f16`]).
#[cube(launch)]
pub(super) fn round_f16_kernel(x: &[f32], out: &mut [f32], len: usize) {
    let i = ABSOLUTE_POS;
    if i >= len {
        terminate!();
    }
    out[i] = round_to_f16(x[i]);
}
