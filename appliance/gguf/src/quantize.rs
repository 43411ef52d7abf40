//! Simple round-to-nearest quantizers, the inverse of [`crate::blocks`], for writing synthetic
//! test models of every supported type.
//!
//! They produce valid blocks with reasonable (not ggml-optimal) error: ggml's reference
//! quantizers search scales iteratively (`make_qkx2_quants`), which matters for real models
//! but not for tests that compare an engine against the dequantized weights. Scales are
//! rounded to f16 *before* the weights are quantized against them, so the round trip error is
//! bounded by half a quantization step.

use half::{bf16, f16};

use crate::blocks::{K_SCALE_SIZE, QK, QK_K};
use crate::{GgmlType, GgufError};

/// Encodes `values` (a whole number of blocks) as `ty`.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, GgufError> {
    let bs = ty.block_size();
    if !values.len().is_multiple_of(bs) {
        return Err(GgufError::Write {
            reason: format!("{} values are not whole {ty} blocks of {bs}", values.len()),
        });
    }
    let mut out = Vec::with_capacity(values.len() / bs * ty.block_bytes());
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|&v| out.extend(f16::from_f32(v).to_le_bytes())),
        GgmlType::BF16 => values
            .iter()
            .for_each(|&v| out.extend(bf16::from_f32(v).to_le_bytes())),
        GgmlType::Q4_0 => values.chunks_exact(QK).for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => values.chunks_exact(QK).for_each(|b| q4_1(b, &mut out)),
        GgmlType::Q8_0 => values.chunks_exact(QK).for_each(|b| q8_0(b, &mut out)),
        GgmlType::Q4_K => values
            .chunks_exact(QK_K)
            .for_each(|b| qk_asym(b, 15, &mut out)),
        GgmlType::Q5_K => values
            .chunks_exact(QK_K)
            .for_each(|b| qk_asym(b, 31, &mut out)),
        GgmlType::Q6_K => values.chunks_exact(QK_K).for_each(|b| q6_k(b, &mut out)),
    }
    Ok(out)
}

/// `v` rounded to f16 and back, with its encoding.
fn half(v: f32) -> (f32, [u8; 2]) {
    let h = f16::from_f32(v);
    (h.to_f32(), h.to_le_bytes())
}

fn inv(d: f32) -> f32 {
    if d == 0.0 { 0.0 } else { 1.0 / d }
}

fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    // The value of largest magnitude maps to -8 exactly (as ggml does), the rest round.
    let max = x
        .iter()
        .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let (d, db) = half(max / -8.0);
    let id = inv(d);
    out.extend(db);
    let q = |v: f32| ((v * id).round() + 8.0).clamp(0.0, 15.0) as u8;
    for j in 0..QK / 2 {
        out.push(q(x[j]) | (q(x[j + QK / 2]) << 4));
    }
}

fn q4_1(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (d, db) = half((max - min) / 15.0);
    let (m, mb) = half(min);
    let id = inv(d);
    out.extend(db);
    out.extend(mb);
    let q = |v: f32| ((v - m) * id).round().clamp(0.0, 15.0) as u8;
    for j in 0..QK / 2 {
        out.push(q(x[j]) | (q(x[j + QK / 2]) << 4));
    }
}

fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
    let (d, db) = half(amax / 127.0);
    let id = inv(d);
    out.extend(db);
    out.extend(
        x.iter()
            .map(|&v| (v * id).round().clamp(-128.0, 127.0) as i8 as u8),
    );
}

/// Q4_K (`qmax` 15) and Q5_K (`qmax` 31): 8 sub-blocks of 32 with 6-bit scales and mins.
fn qk_asym(x: &[f32], qmax: u8, out: &mut Vec<u8>) {
    let mut scale = [0f32; 8];
    let mut minv = [0f32; 8];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        // Mins are subtracted (x = d*sc*q - dmin*m, m >= 0): a positive minimum is clamped to 0.
        let mn = sub.iter().copied().fold(0f32, f32::min);
        let mx = sub.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scale[j] = (mx - mn) / f32::from(qmax);
        minv[j] = -mn;
    }
    let (d, db) = half(scale.iter().copied().fold(0f32, f32::max) / 63.0);
    let (dmin, dminb) = half(minv.iter().copied().fold(0f32, f32::max) / 63.0);
    let sc: [u8; 8] = std::array::from_fn(|j| (scale[j] * inv(d)).round().clamp(0.0, 63.0) as u8);
    let mq: [u8; 8] = std::array::from_fn(|j| (minv[j] * inv(dmin)).round().clamp(0.0, 63.0) as u8);

    let mut q = [0u8; QK_K];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        let ds = d * f32::from(sc[j]);
        let dm = dmin * f32::from(mq[j]);
        for (l, &v) in sub.iter().enumerate() {
            q[32 * j + l] = ((v + dm) * inv(ds)).round().clamp(0.0, f32::from(qmax)) as u8;
        }
    }

    out.extend(db);
    out.extend(dminb);
    // Inverse of blocks::scale_min_k4.
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        if j < 4 {
            s[j] |= sc[j] & 63;
            s[j + 4] |= mq[j] & 63;
        } else {
            s[j + 4] = (sc[j] & 0x0f) | ((mq[j] & 0x0f) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (mq[j] >> 4) << 6;
        }
    }
    out.extend(s);
    if qmax == 31 {
        let mut qh = [0u8; 32];
        for c in 0..4 {
            for (l, h) in qh.iter_mut().enumerate() {
                *h |= (q[64 * c + l] >> 4) << (2 * c);
                *h |= (q[64 * c + 32 + l] >> 4) << (2 * c + 1);
            }
        }
        out.extend(qh);
    }
    for c in 0..4 {
        for l in 0..32 {
            out.push((q[64 * c + l] & 0x0f) | ((q[64 * c + 32 + l] & 0x0f) << 4));
        }
    }
}

fn q6_k(x: &[f32], out: &mut Vec<u8>) {
    let scale: [f32; 16] = std::array::from_fn(|i| {
        x[16 * i..16 * i + 16]
            .iter()
            .fold(0f32, |m, &v| m.max(v.abs()))
            / 31.0
    });
    let (d, db) = half(scale.iter().copied().fold(0f32, f32::max) / 127.0);
    let sc: [i8; 16] = std::array::from_fn(|i| (scale[i] * inv(d)).round().clamp(0.0, 127.0) as i8);
    let q: [u8; QK_K] = std::array::from_fn(|i| {
        let s = d * f32::from(sc[i / 16]);
        ((x[i] * inv(s)).round().clamp(-32.0, 31.0) + 32.0) as u8
    });
    let mut ql = [0u8; QK_K / 2];
    let mut qh = [0u8; QK_K / 4];
    for (i, &v) in q.iter().enumerate() {
        let (h, r) = (i / 128, i % 128);
        let (g, l) = (r / 32, r % 32);
        let byte = 64 * h + l + if g % 2 == 1 { 32 } else { 0 };
        ql[byte] |= if g < 2 { v & 0x0f } else { (v & 0x0f) << 4 };
        qh[32 * h + l] |= (v >> 4) << (2 * g);
    }
    out.extend(ql);
    out.extend(qh);
    out.extend(sc.map(|s| s as u8));
    out.extend(db);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;
    use crate::dequantize;

    /// quantize → dequantize stays within about one quantization step of the input.
    #[test]
    fn round_trip_error_is_small() {
        let n = 512;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
            .collect();
        for (ty, tol) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 1e-3),
            (GgmlType::BF16, 4e-3),
            (GgmlType::Q8_0, 0.3 / 127.0),
            (GgmlType::Q4_0, 0.3 / 7.0),
            (GgmlType::Q4_1, 0.6 / 15.0),
            (GgmlType::Q4_K, 0.6 / 15.0 * 1.3),
            (GgmlType::Q5_K, 0.6 / 31.0 * 1.3),
            (GgmlType::Q6_K, 0.3 / 31.0 * 1.3),
        ] {
            let bytes = quantize(ty, &x).unwrap();
            assert_eq!(bytes.len(), ty.bytes_for(n as u64).unwrap() as usize);
            let mut y = vec![0f32; n];
            dequantize(ty, &bytes, &mut y).unwrap();
            let err = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err <= tol, "{ty}: max error {err} > {tol}");
        }
    }

    #[test]
    fn partial_block_rejected() {
        assert!(matches!(
            quantize(GgmlType::Q4_K, &[0.0; 32]),
            Err(GgufError::Write { .. })
        ));
    }
}
