//! The fused operations of a block as CubeCL kernels, one launch each: RMSNorm (with the
//! residual add before it), RoPE, SwiGLU and causal attention.
//!
//! Written as burn tensor operations each of these is 5–12 kernels and as many allocations
//! (≈ 65 launches per layer, 2 000 per token for a 30-layer model), and a decode step on a
//! GPU is then bound by launch overhead, not by reading the weights. The arithmetic follows
//! the flex versions (`crate::fused`, llama.cpp's order where it matters) in f32; reductions
//! run in another order, which the self-check's tolerance allows for.
#![allow(
    clippy::too_many_arguments,
    reason = "a kernel's arguments are its launch ABI (the macro's launch fn repeats them)"
)]

use cubecl::prelude::*;

/// Threads per cube of the row kernels ([`rms_norm_kernel`], [`attention_kernel`]).
pub(super) const ROW_THREADS: u32 = 128;

/// The sum of every unit's `v` in a cube of `threads` units (a power of two), in every unit.
#[cube]
fn cube_sum(v: f32, #[comptime] threads: u32) -> f32 {
    let mut sums = Shared::<[f32]>::new_slice(comptime!(threads as usize));
    let tid = UNIT_POS as usize;
    sums[tid] = v;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if tid < stride {
            sums[tid] += sums[tid + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let total = sums[0];
    sync_cube();
    total
}

/// The largest of every unit's `v` in a cube of `threads` units (a power of two), in every
/// unit.
#[cube]
fn cube_max(v: f32, #[comptime] threads: u32) -> f32 {
    let mut m = Shared::<[f32]>::new_slice(comptime!(threads as usize));
    let tid = UNIT_POS as usize;
    m[tid] = v;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if tid < stride {
            m[tid] = f32::max(m[tid], m[tid + stride]);
        }
        sync_cube();
        stride /= 2;
    }
    let total = m[0];
    sync_cube();
    total
}

/// `1 / sqrt(mean + eps)` of a row of `d` values whose squares each unit summed in part
/// (`ss`), in every unit.
#[cube]
fn rms_scale(ss: f32, d: usize, eps: f32) -> f32 {
    let total = cube_sum(ss, ROW_THREADS);
    1.0f32 / f32::sqrt(total / f32::cast_from(d) + eps)
}

/// `out[r] = x[r] / sqrt(mean(x[r]²) + eps) · w` for row `r` = the cube's position (rows of
/// `d` values). Every unit runs the same number of steps (`⌈d / ROW_THREADS⌉`, masked past
/// `d`) before the cube-wide sum.
#[cube(launch)]
pub(super) fn rms_norm_kernel(x: &[f32], w: &[f32], out: &mut [f32], d: usize, eps: f32) {
    rms_norm_row(x, w, out, CUBE_POS_X as usize * d, d, eps);
}

/// [`rms_norm_kernel`]'s row starting at `row`, by this cube's units; returns the row's scale
/// (`out[row + i] = x[row + i] · scale · w[i]`), in every unit.
#[cube]
pub(super) fn rms_norm_row(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    row: usize,
    d: usize,
    eps: f32,
) -> f32 {
    let tid = UNIT_POS as usize;
    let threads = comptime!(ROW_THREADS as usize);
    let steps = d.div_ceil(threads);
    let mut ss = 0.0f32;
    for k in 0..steps {
        let i = k * threads + tid;
        if i < d {
            let v = x[row + i];
            ss += v * v;
        }
    }
    let scale = rms_scale(ss, d, eps);
    for k in 0..steps {
        let i = k * threads + tid;
        if i < d {
            out[row + i] = x[row + i] * scale * w[i];
        }
    }
    scale
}

/// `h = x + a` and `out = rms_norm(h) · w`, row `r` = the cube's position.
#[cube(launch)]
pub(super) fn add_rms_norm_kernel(
    x: &[f32],
    a: &[f32],
    w: &[f32],
    h: &mut [f32],
    out: &mut [f32],
    d: usize,
    eps: f32,
) {
    let row = CUBE_POS_X as usize * d;
    let tid = UNIT_POS as usize;
    let threads = comptime!(ROW_THREADS as usize);
    let steps = d.div_ceil(threads);
    let mut ss = 0.0f32;
    for k in 0..steps {
        let i = k * threads + tid;
        if i < d {
            let v = x[row + i] + a[row + i];
            h[row + i] = v;
            ss += v * v;
        }
    }
    let scale = rms_scale(ss, d, eps);
    for k in 0..steps {
        let i = k * threads + tid;
        if i < d {
            // Each unit reads back only what it wrote.
            out[row + i] = h[row + i] * scale * w[i];
        }
    }
}

/// Rotates `x` (`[heads, n, hd]`, contiguous) by the angles `table` (`[n, hd/2]` pairs of
/// `(cos, sin)`): pair `i` is `(2i, 2i + 1)`, or `(i, i + hd/2)` with `neox`. One unit per
/// pair.
#[cube(launch)]
pub(super) fn rope_kernel(
    x: &[f32],
    table: &[f32],
    out: &mut [f32],
    heads: usize,
    n: usize,
    hd: usize,
    #[comptime] neox: bool,
) {
    let half = hd / 2;
    let p = ABSOLUTE_POS;
    if p >= heads * n * half {
        terminate!();
    }
    let i = p % half;
    let row = p / half; // head · n + token
    let t = row % n;
    let a = select(neox, row * hd + i, row * hd + 2 * i);
    let b = select(neox, row * hd + i + half, row * hd + 2 * i + 1);
    let c = table[2 * (t * half + i)];
    let s = table[2 * (t * half + i) + 1];
    let x0 = x[a];
    let x1 = x[b];
    out[a] = x0 * c - x1 * s;
    out[b] = x0 * s + x1 * c;
}

/// `out[r, j] = silu(x[r, j]) · x[r, d + j]` for `x` `[rows, 2d]`: one unit per output.
#[cube(launch)]
pub(super) fn swiglu_kernel(x: &[f32], out: &mut [f32], rows: usize, d: usize) {
    let p = ABSOLUTE_POS;
    if p >= rows * d {
        terminate!();
    }
    let r = p / d;
    let j = p % d;
    let g = x[r * 2 * d + j];
    let u = x[r * 2 * d + d + j];
    // ggml_silu_f32: x / (1 + e^-x).
    out[p] = g / (1.0f32 + f32::exp(-g)) * u;
}

/// Causal grouped-query attention of `n` new tokens at positions `start..start + n`: cube
/// `(head, token)` attends over keys `0..=start + token` of its key/value head
/// `head / (heads / kv_heads)`. `q` is `[heads, n, hd]` contiguous; `k`, `v` are the cache,
/// rows of `hd` values, key/value head `g` at `g · kv_stride`; `out` is `[n, heads · hd]`.
///
/// Two passes over the keys: scores for the running maximum and sum of exponentials (each
/// unit over its own keys, then combined), then the weights `e^(s − max) / sum` (rounded to
/// f16 with `f16_weights`, as llama.cpp's product with its f16 value cache) a tile of
/// `ROW_THREADS` keys at a time in shared memory, unit `d` adding `weight · v[d]`.
#[cube(launch)]
pub(super) fn attention_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    heads: usize,
    kv_heads: usize,
    n: usize,
    hd: usize,
    start: usize,
    kv_stride: usize,
    scale: f32,
    #[comptime] f16_weights: bool,
) {
    attend(
        q,
        k,
        v,
        out,
        heads,
        kv_heads,
        n,
        hd,
        start,
        kv_stride,
        scale,
        f16_weights,
    );
}

/// [`attention_kernel`] for one token at the position `input[1]` (a device value, so a
/// recorded decode step replays at every position: `cube/step.rs`, whose `input` is
/// `[token, pos]`).
#[cube(launch)]
pub(super) fn attention_at_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    input: &[u32],
    out: &mut [f32],
    heads: usize,
    kv_heads: usize,
    hd: usize,
    kv_stride: usize,
    scale: f32,
    #[comptime] f16_weights: bool,
) {
    attend(
        q,
        k,
        v,
        out,
        heads,
        kv_heads,
        1usize,
        hd,
        input[1] as usize,
        kv_stride,
        scale,
        f16_weights,
    );
}

/// The body of [`attention_kernel`], for tokens at positions `start..start + n`.
#[cube]
fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    heads: usize,
    kv_heads: usize,
    n: usize,
    hd: usize,
    start: usize,
    kv_stride: usize,
    scale: f32,
    #[comptime] f16_weights: bool,
) {
    let head = CUBE_POS_X as usize;
    let t = CUBE_POS_Y as usize;
    let tid = UNIT_POS as usize;
    let threads = comptime!(ROW_THREADS as usize);
    let kv = head / (heads / kv_heads);
    let len = start + t + 1;
    let kbase = kv * kv_stride;
    // The query row, shared.
    let mut qs = Shared::<[f32]>::new_slice(comptime!(ROW_THREADS as usize * 2));
    let mut i = tid;
    while i < hd {
        qs[i] = q[(head * n + t) * hd + i];
        i += threads;
    }
    sync_cube();
    // Pass 1: each unit's running maximum and sum over keys tid, tid + threads, …
    let mut m = f32::new(-3.0e38);
    let mut l = 0.0f32;
    let mut j = tid;
    while j < len {
        let mut s = 0.0f32;
        for c in 0..hd {
            s += qs[c] * k[kbase + j * hd + c];
        }
        s *= scale;
        if s > m {
            l = l * f32::exp(m - s) + 1.0;
            m = s;
        } else {
            l += f32::exp(s - m);
        }
        j += threads;
    }
    let mx = cube_max(m, ROW_THREADS);
    // Units that saw no key add nothing (l = 0).
    let sum = cube_sum(l * f32::exp(m - mx), ROW_THREADS);
    let inv = 1.0f32 / sum;
    // Pass 2: weights a tile at a time; unit d accumulates output column d.
    let mut w = Shared::<[f32]>::new_slice(comptime!(ROW_THREADS as usize));
    // Unit d adds columns d and d + ROW_THREADS (head sizes up to 2 · ROW_THREADS).
    let mut acc = 0.0f32;
    let mut acc2 = 0.0f32;
    let mut base = 0usize;
    while base < len {
        let j = base + tid;
        let mut p = 0.0f32;
        if j < len {
            let mut s = 0.0f32;
            for c in 0..hd {
                s += qs[c] * k[kbase + j * hd + c];
            }
            p = f32::exp(s * scale - mx) * inv;
            if f16_weights {
                p = round_to_f16(p);
            }
        }
        w[tid] = p;
        sync_cube();
        let tile = select(len - base < threads, len - base, threads);
        if tid < hd {
            for i in 0..tile {
                acc += w[i] * v[kbase + (base + i) * hd + tid];
            }
        }
        if tid + threads < hd {
            for i in 0..tile {
                acc2 += w[i] * v[kbase + (base + i) * hd + tid + threads];
            }
        }
        sync_cube();
        base += threads;
    }
    let o = t * heads * hd + head * hd;
    if tid < hd {
        out[o + tid] = acc;
    }
    if tid + threads < hd {
        out[o + tid + threads] = acc2;
    }
}

/// `x` rounded to the nearest f16 (ties to even), kept f32: integer arithmetic on the f32 bits,
/// so it needs no f16 support from the device. Bit for bit `half`'s conversion: normals,
/// subnormals, ties, overflow to infinity (NaN stays a NaN).
#[cube]
pub(super) fn round_to_f16(x: f32) -> f32 {
    let bits = u32::reinterpret(x);
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
    f32::reinterpret(r)
}
