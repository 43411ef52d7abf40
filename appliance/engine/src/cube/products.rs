//! The launchable kernels: a quantized matrix-vector product for decode and small batches, and
//! a dequantizer that feeds the backend's matmul for prompts.
#![allow(
    clippy::too_many_arguments,
    reason = "a kernel's arguments are its launch ABI (the macro's launch fn repeats them)"
)]

use cubecl::prelude::*;

use super::decode::{decode_unit, unit_col};
use super::fused::round_to_f16;
use super::q8::{is_q8_kind, unit_dot_q8, unit_q8};

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
    xq: &[u32],
    xd: &[f32],
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
    #[comptime] q8: bool,
) {
    let lane = UNIT_POS_X as usize;
    // Cubes of one row group and successive token slices are launched next to each other,
    // so a prompt's slices find the group's weights in L2.
    let r = CUBE_POS_Y as usize * comptime!(rows_per_cube as usize) + UNIT_POS_Y as usize;
    let t0 = CUBE_POS_X as usize * tokens;
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
            if comptime!(q8 && is_q8_kind(kind)) {
                let mut qv = Array::<u32>::new(8usize);
                let mut dw = Array::<f32>::new(4usize);
                let mut mw = Array::<f32>::new(4usize);
                unit_q8(w, row, u, &mut qv, &mut dw, &mut mw, kind);
                #[unroll]
                for t in 0..tokens {
                    // Tokens past `n` read token 0's blocks (in bounds) and are never written.
                    let xb = select(t0 + t < n, (t0 + t) * units, 0);
                    acc[t] += unit_dot_q8(xq, xd, xb, u, &qv, &dw, &mw, kind);
                }
            } else {
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

/// One lane's share of `x · W[row]` for one token: units `lane, lane + LANES, …` of the row
/// starting at byte `row`, each a sum of 32 products added in turn. The same operations in
/// the same order as [`q_matvec_kernel`] for its first token, so the products built on it
/// ([`q_matvec3_kernel`], [`q_swiglu_kernel`]) give its results bit for bit.
#[cube]
fn lane_dot(
    x: &[f32],
    xq: &[u32],
    xd: &[f32],
    w: &[u32],
    row: usize,
    units: usize,
    #[comptime] kind: u32,
    #[comptime] q8: bool,
) -> f32 {
    let lane = UNIT_POS_X as usize;
    let mut acc = 0.0f32;
    let mut u = lane;
    while u < units {
        if comptime!(q8 && is_q8_kind(kind)) {
            let mut qv = Array::<u32>::new(8usize);
            let mut dw = Array::<f32>::new(4usize);
            let mut mw = Array::<f32>::new(4usize);
            unit_q8(w, row, u, &mut qv, &mut dw, &mut mw, kind);
            acc += unit_dot_q8(xq, xd, 0, u, &qv, &dw, &mw, kind);
        } else {
            let mut vals = Array::<f32>::new(32usize);
            decode_unit(w, row, u, &mut vals, kind);
            let mut s = 0.0f32;
            #[unroll]
            for i in 0..32 {
                s += vals[i] * x[unit_col(u, i, kind)];
            }
            acc += s;
        }
        u += comptime!(LANES as usize);
    }
    acc
}

/// The sum of `v` over the `LANES` lanes of this unit's row group (`UNIT_POS_Y`), valid in
/// lane 0: a plane sum (`plane`), else through shared memory added in lane order, as
/// [`q_matvec_kernel`] adds them.
#[cube]
fn lanes_sum(v: f32, #[comptime] rows_per_cube: u32, #[comptime] plane: bool) -> f32 {
    let mut total = 0.0f32;
    if plane {
        total = plane_sum(v);
    } else {
        let lanes = comptime!(LANES as usize);
        let mut sums = Shared::<[f32]>::new_slice(comptime!(lanes * rows_per_cube as usize));
        let base = UNIT_POS_Y as usize * lanes;
        let lane = UNIT_POS_X as usize;
        sums[base + lane] = v;
        sync_cube();
        if lane == 0 {
            for i in 0..lanes {
                total += sums[base + i];
            }
        }
        sync_cube();
    }
    total
}

/// `out[r] = x · W[r]` (`+ bias[r]` with `has_bias`) for one token over three matrices side
/// by side (rows `0..r0` of `wa`, then `r1` of `wb`, then `r2` of `wc`, each of its own type):
/// the query, key and value products (and `qwen2`'s biases) in one launch. Cube
/// `(LANES, rows_per_cube)` as [`q_matvec_kernel`].
#[cube(launch)]
pub(super) fn q_matvec3_kernel(
    x: &[f32],
    xq: &[u32],
    xd: &[f32],
    wa: &[u32],
    wb: &[u32],
    wc: &[u32],
    bias: &[f32],
    out: &mut [f32],
    cols: usize,
    r0: usize,
    r1: usize,
    r2: usize,
    row_bytes_a: usize,
    row_bytes_b: usize,
    row_bytes_c: usize,
    #[comptime] kind_a: u32,
    #[comptime] kind_b: u32,
    #[comptime] kind_c: u32,
    #[comptime] rows_per_cube: u32,
    #[comptime] plane: bool,
    #[comptime] has_bias: bool,
    #[comptime] q8: bool,
) {
    let r = CUBE_POS_X as usize * comptime!(rows_per_cube as usize) + UNIT_POS_Y as usize;
    let units = cols / 32;
    let mut acc = 0.0f32;
    if r < r0 {
        acc = lane_dot(x, xq, xd, wa, r * row_bytes_a, units, kind_a, q8);
    } else if r < r0 + r1 {
        acc = lane_dot(x, xq, xd, wb, (r - r0) * row_bytes_b, units, kind_b, q8);
    } else if r < r0 + r1 + r2 {
        acc = lane_dot(
            x,
            xq,
            xd,
            wc,
            (r - r0 - r1) * row_bytes_c,
            units,
            kind_c,
            q8,
        );
    }
    let mut total = lanes_sum(acc, rows_per_cube, plane);
    if UNIT_POS_X == 0 && r < r0 + r1 + r2 {
        if has_bias {
            total += bias[r];
        }
        out[r] = total;
    }
}

/// `out[r] = silu(x · G[r]) · (x · U[r])` for one token: the gate and up products and SwiGLU
/// in one launch (ggml's `silu`: `g / (1 + e^-g)`, as [`super::fused::swiglu_kernel`]).
#[cube(launch)]
pub(super) fn q_swiglu_kernel(
    x: &[f32],
    xq: &[u32],
    xd: &[f32],
    wg: &[u32],
    wu: &[u32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    row_bytes_g: usize,
    row_bytes_u: usize,
    #[comptime] kind_g: u32,
    #[comptime] kind_u: u32,
    #[comptime] rows_per_cube: u32,
    #[comptime] plane: bool,
    #[comptime] q8: bool,
) {
    let r = CUBE_POS_X as usize * comptime!(rows_per_cube as usize) + UNIT_POS_Y as usize;
    let units = cols / 32;
    let mut ag = 0.0f32;
    let mut au = 0.0f32;
    if r < rows {
        ag = lane_dot(x, xq, xd, wg, r * row_bytes_g, units, kind_g, q8);
        au = lane_dot(x, xq, xd, wu, r * row_bytes_u, units, kind_u, q8);
    }
    let g = lanes_sum(ag, rows_per_cube, plane);
    let u = lanes_sum(au, rows_per_cube, plane);
    if UNIT_POS_X == 0 && r < rows {
        out[r] = g / (1.0f32 + f32::exp(-g)) * u;
    }
}
