//! llama.cpp's arithmetic for the operations between the quantized matrix products: one
//! query row of attention, the rotary embedding's rotation, SwiGLU. Op for op, bit for bit.
//!
//! llama.cpp (CPU, without flash attention, with its default f16 KV cache) computes a prompt's
//! attention with `ggml_mul_mat` on the f16 caches, which converts the queries and the softmax
//! weights to f16 and runs llamafile's `tinyBLAS` (AVX-512: sixteen f32 lanes, lane `l % 16`
//! accumulating `a[l] · b[l]` by FMA, then `_mm512_reduce_add_ps`); in between,
//! `ggml_compute_forward_soft_max_f32` scales, takes the maximum, exponentiates with
//! `ggml_v_expf` (a polynomial, not libm's `expf`), sums each 16 values in f32 then in f64,
//! and multiplies by the f32 reciprocal of the sum. We reproduce each step exactly (the
//! fidelity test checks the result against llama.cpp's logits): the 8-bit activation codes of
//! the next layers amplify any last-bit difference, so "close" attention is not close enough.
//!
//! Each row is computed on its own (no dependence on the other rows of the step), so a token's
//! output does not depend on how many tokens share the step. `f32::mul_add` is an exact fused
//! multiply-add on every path; the FMA build ([`attend`] on x86-64 with FMA) only makes it one
//! instruction, bit for bit the same as the portable build.

/// Lanes of llama.cpp's vector accumulators (`__m512`).
pub const LANES: usize = 16;

/// GCC's `_mm512_reduce_add_ps`: halves, then quarters, then pairs.
#[inline(always)]
fn reduce(a: &[f32; LANES]) -> f32 {
    // No closures here or in the kernels below: a closure is its own function, compiled
    // without the caller's FMA feature (a libm call per `mul_add`).
    let mut t3 = [0f32; 8];
    for k in 0..8 {
        t3[k] = a[k + 8] + a[k];
    }
    let t6 = [t3[4] + t3[0], t3[5] + t3[1], t3[6] + t3[2], t3[7] + t3[3]];
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// `a · b` as tinyBLAS accumulates it (missing lanes of a short last chunk add nothing).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        fma16(&mut acc, lanes(x), lanes(y));
    }
    for (k, (x, y)) in ar.iter().zip(br).enumerate() {
        acc[k] = x.mul_add(*y, acc[k]);
    }
    reduce(&acc)
}

/// `acc[k] += x[k] · y[k]` (fused) on all sixteen lanes.
#[inline(always)]
fn fma16(acc: &mut [f32; LANES], x: &[f32; LANES], y: &[f32; LANES]) {
    for k in 0..LANES {
        acc[k] = x[k].mul_add(y[k], acc[k]);
    }
}

/// A `chunks_exact(LANES)` piece as an array.
#[inline(always)]
fn lanes(x: &[f32]) -> &[f32; LANES] {
    // INVARIANT: only called on `chunks_exact(LANES)` pieces.
    x.try_into().unwrap_or(&[0.0; LANES])
}

/// `ggml_v_expf` (ggml-cpu/vec.h), one lane: `exp(x)` to about 1.5 ulp.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // `_mm512_scalef_ps(j, n)`: j · 2^n with one rounding. 2^n comes from the low bits of `z`
    // (ggml's AVX2 trick: they hold `n`), split as 2^(n - o) · 2^o where 2^n alone is not a
    // normal float; no float-to-int conversion, so that loops over it vectorize.
    let o: i32 = if n < -126.0 {
        -66
    } else if n > 127.0 {
        66
    } else {
        0
    };
    let a = f32::from_bits(
        ((z.to_bits() as i32).wrapping_sub(o) << 23).wrapping_add(0x3f80_0000) as u32,
    );
    let scaled = j * a * f32::from_bits(((o + 127) << 23) as u32);
    let alt = if n <= 0.0 { 0.0 } else { f32::INFINITY };
    if n.abs() > 192.0 { alt } else { scaled }
}

/// Scratch space reused across rows.
#[derive(Debug, Default)]
pub struct Scratch {
    weights: Vec<f32>,
    acc: Vec<f32>,
}

/// Attention of one query `q` (`hd` values, f16-rounded by the caller where llama.cpp rounds)
/// over `len` positions: key `j` is `keys[j * k_stride..][..hd]`, value `j` likewise in
/// `values`. `scale` multiplies the scores; with `f16_weights` the softmax weights are rounded
/// to f16 before they multiply the values. Writes `out` (`hd` values).
///
/// # Panics
/// If a key or value row lies outside its slice, or `out.len() != q.len()` (caller bugs).
#[allow(
    clippy::too_many_arguments,
    reason = "one row of a strided attention op"
)]
#[allow(unsafe_code)]
pub fn attend(
    q: &[f32],
    (keys, k_stride): (&[f32], usize),
    (values, v_stride): (&[f32], usize),
    len: usize,
    scale: f32,
    f16_weights: bool,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::detect() != super::Isa::Portable {
        // SAFETY: AVX2 and FMA are present (every non-portable isa has them).
        unsafe {
            return attend_fma(
                q,
                (keys, k_stride),
                (values, v_stride),
                len,
                scale,
                f16_weights,
                scratch,
                out,
            );
        }
    }
    attend_impl(
        q,
        (keys, k_stride),
        (values, v_stride),
        len,
        scale,
        f16_weights,
        scratch,
        out,
    );
}

/// [`attend_impl`] compiled with FMA and AVX2 (same results; `mul_add` becomes one
/// instruction instead of a libm call).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments, reason = "see attend")]
fn attend_fma(
    q: &[f32],
    k: (&[f32], usize),
    v: (&[f32], usize),
    len: usize,
    scale: f32,
    f16_weights: bool,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    attend_impl(q, k, v, len, scale, f16_weights, scratch, out);
}

/// The portable computation behind [`attend`] (public for the kernel tests).
#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "see attend")]
pub fn attend_impl(
    q: &[f32],
    (keys, k_stride): (&[f32], usize),
    (values, v_stride): (&[f32], usize),
    len: usize,
    scale: f32,
    f16_weights: bool,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let hd = q.len();
    assert_eq!(out.len(), hd, "attend: output width");
    let w = &mut scratch.weights;
    w.clear();
    // KQ (tinyBLAS), then `ggml_vec_scale_f32` by `scale` (the causal mask adds 0 here).
    let mut max = f32::NEG_INFINITY;
    for j in 0..len {
        let v = dot(q, &keys[j * k_stride..][..hd]) * scale;
        max = max.max(v);
        w.push(v);
    }
    // ggml_compute_forward_soft_max_f32 / ggml_vec_soft_max_f32, on whole blocks of 16: the
    // padding holds masked positions (-inf, weight 0), as llama.cpp's KV cache does.
    w.resize(len.div_ceil(LANES) * LANES, f32::NEG_INFINITY);
    let mut sum = 0f64;
    for chunk in w.chunks_exact_mut(LANES) {
        let mut e = [0f32; LANES];
        for (k, ek) in e.iter_mut().enumerate() {
            *ek = expf(chunk[k] - max);
        }
        chunk.copy_from_slice(&e);
        sum += f64::from(reduce(&e));
    }
    w.truncate(len);
    let inv = (1.0 / sum) as f32;
    for v in w.iter_mut() {
        *v *= inv;
    }
    if f16_weights {
        super::round_f16(w);
    }
    // KQV (tinyBLAS over positions): lane j % 16 of each output accumulates p_j · v_j.
    let acc = &mut scratch.acc;
    acc.clear();
    acc.resize(LANES * hd, 0.0);
    for (j, &p) in w.iter().enumerate() {
        let lane = &mut acc[(j % LANES) * hd..][..hd];
        for (a, &x) in lane.iter_mut().zip(&values[j * v_stride..][..hd]) {
            *a = p.mul_add(x, *a);
        }
    }
    // `reduce` on every output at once: lane rows added pairwise in its order.
    let mut add_rows = |dst: usize, src: usize| {
        let (lo, hi) = acc.split_at_mut(src * hd);
        for (a, &b) in lo[dst * hd..][..hd].iter_mut().zip(&hi[..hd]) {
            *a += b; // commutative: the same bits as b + a
        }
    };
    for k in 0..8 {
        add_rows(k, k + 8);
    }
    for k in 0..4 {
        add_rows(k, k + 4);
    }
    add_rows(0, 2);
    add_rows(1, 3);
    add_rows(0, 1);
    out.copy_from_slice(&acc[..hd]);
}

/// Rotates the pairs `(x[2i], x[2i+1])` of one row by the angles `cs` into `out`, as ggml's
/// `rotate_pairs` compiled with FMA contraction: `x0·c − x1·s` with one rounding of `x0·c`.
#[allow(unsafe_code)]
pub fn rotate_pairs(x: &[f32], cs: &[(f32, f32)], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::detect() != super::Isa::Portable {
        // SAFETY: AVX2 and FMA are present (every non-portable isa has them).
        unsafe {
            return rotate_pairs_fma(x, cs, out);
        }
    }
    rotate_pairs_impl(x, cs, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rotate_pairs_fma(x: &[f32], cs: &[(f32, f32)], out: &mut [f32]) {
    rotate_pairs_impl(x, cs, out);
}

/// The portable computation behind [`rotate_pairs`].
#[inline(always)]
pub fn rotate_pairs_impl(x: &[f32], cs: &[(f32, f32)], out: &mut [f32]) {
    for (&(c, s), (o, v)) in cs
        .iter()
        .zip(out.chunks_exact_mut(2).zip(x.chunks_exact(2)))
    {
        o[0] = v[0].mul_add(c, -(v[1] * s));
        o[1] = v[0].mul_add(s, v[1] * c);
    }
}

/// `silu(gate) · up` as `ggml_vec_swiglu_f32`: `x / (1 + ggml_v_expf(−x)) · g` in blocks of 16,
/// libm's `expf` for a shorter tail.
#[allow(unsafe_code)]
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::detect() != super::Isa::Portable {
        // SAFETY: AVX2 and FMA are present (every non-portable isa has them).
        unsafe {
            return swiglu_fma(gate, up, out);
        }
    }
    swiglu_impl(gate, up, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn swiglu_fma(gate: &[f32], up: &[f32], out: &mut [f32]) {
    swiglu_impl(gate, up, out);
}

/// The portable computation behind [`swiglu`].
#[inline(always)]
pub fn swiglu_impl(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let (mut o16, mut x16, mut g16) = (
        out.chunks_exact_mut(LANES),
        gate.chunks_exact(LANES),
        up.chunks_exact(LANES),
    );
    for ((o, x), g) in (&mut o16).zip(&mut x16).zip(&mut g16) {
        let (x, g) = (lanes(x), lanes(g));
        let mut e = [0f32; LANES];
        for k in 0..LANES {
            e[k] = expf(-x[k]);
        }
        for k in 0..LANES {
            o[k] = x[k] / (1.0 + e[k]) * g[k];
        }
    }
    let tail = o16.into_remainder().iter_mut();
    for ((o, &x), &g) in tail.zip(x16.remainder()).zip(g16.remainder()) {
        *o = x / (1.0 + (-x).exp()) * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// The FMA build computes exactly what the portable code computes (both fuse every
    /// `mul_add`; only the instruction differs), on lengths with and without a short chunk.
    #[test]
    fn fma_paths_equal_the_portable_code_bit_for_bit() {
        let hd = 64;
        for (len, seed) in [(1, 1), (15, 2), (16, 3), (37, 4), (100, 5)] {
            let q: Vec<f32> = random(hd, seed)
                .iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect();
            let (k, v) = (random(len * 80, seed + 10), random(len * 72, seed + 20));
            for f16_weights in [false, true] {
                let (mut a, mut b) = (vec![0f32; hd], vec![0f32; hd]);
                let mut s = Scratch::default();
                attend(
                    &q,
                    (&k, 80),
                    (&v, 72),
                    len,
                    0.125,
                    f16_weights,
                    &mut s,
                    &mut a,
                );
                attend_impl(
                    &q,
                    (&k, 80),
                    (&v, 72),
                    len,
                    0.125,
                    f16_weights,
                    &mut s,
                    &mut b,
                );
                assert_eq!(a, b, "len {len}");
            }
        }
        let (x, cs) = (random(64, 7), random(64, 8));
        let cs: Vec<(f32, f32)> = cs.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        let (mut a, mut b) = (vec![0f32; 64], vec![0f32; 64]);
        rotate_pairs(&x, &cs, &mut a);
        rotate_pairs_impl(&x, &cs, &mut b);
        assert_eq!(a, b);
        let (g, u) = (random(50, 9), random(50, 10));
        let (mut a, mut b) = (vec![0f32; 50], vec![0f32; 50]);
        swiglu(&g, &u, &mut a);
        swiglu_impl(&g, &u, &mut b);
        assert_eq!(a, b);
    }

    /// `ggml_v_expf` is within 2 ulp of the exact exponential over softmax's range, and 0 or
    /// infinity outside the representable range.
    #[test]
    fn expf_is_accurate_and_saturates() {
        for i in 0..20_000 {
            let x = -87.0 + i as f32 * 0.00437;
            let want = f64::from(x).exp();
            let got = f64::from(expf(x));
            assert!(
                (got - want).abs() <= 2.0 * want * f64::from(f32::EPSILON),
                "{x}: {got} vs {want}"
            );
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        assert_eq!(expf(0.0), 1.0);
    }

    /// The bit-level power of two equals `_mm512_scalef_ps`'s definition (j · 2^n rounded
    /// once, here through f64) everywhere, subnormal and overflowing results included.
    #[test]
    fn expf_scaling_is_scalef() {
        let c = f32::from_bits;
        for i in -2_000_000..2_000_000 {
            let x = i as f32 * 1e-4;
            let z = x.mul_add(c(0x3fb8_aa3b), c(0x4b40_0000));
            let n = z - c(0x4b40_0000);
            let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
            let u = b * b;
            let j = c(0x3c07_2010)
                .mul_add(b, c(0x3d2b_9f17))
                .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
                .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
            let want = if n.abs() > 192.0 {
                if n <= 0.0 { 0.0 } else { f32::INFINITY }
            } else {
                (f64::from(j) * 2f64.powi(n as i32)) as f32
            };
            assert_eq!(expf(x).to_bits(), want.to_bits(), "{x}");
        }
    }

    /// One row of attention equals softmax attention computed plainly in f64 (up to f32
    /// rounding), and the 16-lane sums follow `_mm512_reduce_add_ps`'s pairing.
    #[test]
    fn attention_row_matches_a_plain_f64_softmax() {
        let (hd, len) = (64, 45);
        let (q, k, v) = (random(hd, 1), random(len * hd, 2), random(len * hd, 3));
        let mut out = vec![0f32; hd];
        attend(
            &q,
            (&k, hd),
            (&v, hd),
            len,
            0.125,
            false,
            &mut Scratch::default(),
            &mut out,
        );
        let s: Vec<f64> = (0..len)
            .map(|j| {
                (0..hd)
                    .map(|c| f64::from(q[c]) * f64::from(k[j * hd + c]))
                    .sum::<f64>()
                    * 0.125
            })
            .collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
        for (c, &o) in out.iter().enumerate() {
            let want: f64 = (0..len)
                .map(|j| (s[j] - m).exp() / z * f64::from(v[j * hd + c]))
                .sum();
            assert!((f64::from(o) - want).abs() < 1e-5, "{c}: {o} vs {want}");
        }
        // ±1e8 in lanes 0 and 8 cancel in the first step of GCC's order, leaving the 14 ones
        // exactly; a sequential sum would absorb ones into 1e8 (its ulp is 8) and give 7.
        let mut a = [1.0f32; LANES];
        a[0] = 1e8;
        a[8] = -1e8;
        assert_eq!(reduce(&a), 14.0);
    }
}
