//! The block decoders of `airlock_gguf::blocks` (through `dequantize`) against per-element
//! reference decoders written here from the struct layouts in ggml's `ggml-common.h`: each
//! value is computed on its own from its index, in f64, with our own f16 decoding.

use airlock_gguf::{GgmlType, dequantize, dequantize_row};

use crate::common::Rng;

/// IEEE half → f64, decoded by hand (sign, 5-bit exponent, 10-bit mantissa).
fn f16_ref(lo: u8, hi: u8) -> f64 {
    let bits = u16::from(lo) | (u16::from(hi) << 8);
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let man = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * man * 2f64.powi(-24),
        31 if man == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + man / 1024.0) * 2f64.powi(e - 15),
    }
}

fn bf16_ref(lo: u8, hi: u8) -> f64 {
    f64::from(f32::from_bits(
        (u32::from(lo) << 16) | (u32::from(hi) << 24),
    ))
}

/// 6-bit scale and min of sub-block j of a Q4_K/Q5_K `scales[12]`.
fn k4_scale_min_ref(s: &[u8], j: usize) -> (f64, f64) {
    let (sc, m) = if j < 4 {
        (s[j] & 0x3f, s[j + 4] & 0x3f)
    } else {
        // High two bits live in the top of bytes j-4 (scales) and j (mins).
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] & 0xc0) >> 2),
            (s[j + 4] >> 4) | ((s[j] & 0xc0) >> 2),
        )
    };
    (f64::from(sc), f64::from(m))
}

/// Value `i` of one block of `ty`.
fn reference(ty: GgmlType, b: &[u8], i: usize) -> f64 {
    match ty {
        GgmlType::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => f16_ref(b[0], b[1]),
        GgmlType::BF16 => bf16_ref(b[0], b[1]),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (d, m, qs) = if ty == GgmlType::Q4_0 {
                (f16_ref(b[0], b[1]), None, &b[2..18])
            } else {
                (f16_ref(b[0], b[1]), Some(f16_ref(b[2], b[3])), &b[4..20])
            };
            let q = f64::from(if i < 16 {
                qs[i] & 0x0f
            } else {
                qs[i - 16] >> 4
            });
            match m {
                None => (q - 8.0) * d,
                Some(m) => q * d + m,
            }
        }
        GgmlType::Q8_0 => f64::from(b[2 + i] as i8) * f16_ref(b[0], b[1]),
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let d = f16_ref(b[0], b[1]);
            let dmin = f16_ref(b[2], b[3]);
            let scales = &b[4..16];
            let (qh, qs) = if ty == GgmlType::Q5_K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            let j = i / 32; // sub-block of 32
            let l = i % 32;
            let byte = qs[32 * (j / 2) + l];
            let mut q = if j.is_multiple_of(2) {
                byte & 0x0f
            } else {
                byte >> 4
            };
            if let Some(qh) = qh {
                q += ((qh[l] >> j) & 1) * 16;
            }
            let (sc, m) = k4_scale_min_ref(scales, j);
            d * sc * f64::from(q) - dmin * m
        }
        GgmlType::Q6_K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_ref(b[208], b[209]);
            let (h, r) = (i / 128, i % 128);
            let (g, l) = (r / 32, r % 32);
            let low = match g {
                0 => ql[64 * h + l] & 0x0f,
                1 => ql[64 * h + 32 + l] & 0x0f,
                2 => ql[64 * h + l] >> 4,
                _ => ql[64 * h + 32 + l] >> 4,
            };
            let high = (qh[32 * h + l] >> (2 * g)) & 3;
            let q = i32::from(low | (high << 4)) - 32;
            d * f64::from(scales[i / 16] as i8) * f64::from(q)
        }
    }
}

/// A random block of `ty` whose f16 scale fields hold finite values of moderate size (random
/// bits there would be NaN/Inf now and then, which compares badly and tests nothing more).
fn random_block(ty: GgmlType, rng: &mut Rng) -> Vec<u8> {
    let mut b = rng.bytes(ty.block_bytes());
    let mut put_f16 = |b: &mut Vec<u8>, at: usize| {
        let v = half::f16::from_f32(rng.f32_in(-2.0, 2.0)).to_le_bytes();
        b[at..at + 2].copy_from_slice(&v);
    };
    match ty {
        GgmlType::F32 => b.copy_from_slice(&rng.f32_in(-100.0, 100.0).to_le_bytes()),
        GgmlType::F16 | GgmlType::BF16 => {
            if ty == GgmlType::F16 {
                put_f16(&mut b, 0)
            } else {
                b.copy_from_slice(&half::bf16::from_f32(rng.f32_in(-100.0, 100.0)).to_le_bytes())
            }
        }
        GgmlType::Q4_0 | GgmlType::Q8_0 => put_f16(&mut b, 0),
        GgmlType::Q4_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
            put_f16(&mut b, 0);
            put_f16(&mut b, 2);
        }
        GgmlType::Q6_K => put_f16(&mut b, 208),
    }
    b
}

#[test]
fn every_block_type_matches_reference_on_random_blocks() {
    for ty in GgmlType::ALL {
        let mut rng = Rng::new(0x5eed ^ u64::from(ty.id()));
        let n_blocks = 64;
        let mut bytes = Vec::new();
        for _ in 0..n_blocks {
            bytes.extend(random_block(ty, &mut rng));
        }
        let bs = ty.block_size();
        let mut out = vec![f32::NAN; n_blocks * bs];
        dequantize(ty, &bytes, &mut out).unwrap();
        let mut worst = 0f64;
        for (k, got) in out.iter().enumerate() {
            let block = &bytes[(k / bs) * ty.block_bytes()..][..ty.block_bytes()];
            let want = reference(ty, block, k % bs);
            // f32 arithmetic vs f64: allow a few ulps of the block's scale.
            let tol = 1e-6 * want.abs().max(1.0);
            let diff = (f64::from(*got) - want).abs();
            worst = worst.max(diff);
            assert!(
                diff <= tol,
                "{ty}: value {k} (block {}, index {}) = {got}, reference {want}",
                k / bs,
                k % bs
            );
        }
        eprintln!(
            "{ty}: {} values, max |ours - reference| = {worst:e}",
            out.len()
        );
    }
}

#[test]
fn known_answer_q4_1_block() {
    // d = 0.5 (f16 0x3800), m = -1.0 (0xbc00); qs[0] = 0x21: value 0 = 1*0.5-1, value 16 = 2*0.5-1.
    let mut b = vec![0x00, 0x38, 0x00, 0xbc];
    b.extend([0x21]);
    b.extend([0u8; 15]);
    let mut out = [0f32; 32];
    dequantize(GgmlType::Q4_1, &b, &mut out).unwrap();
    assert_eq!(out[0], -0.5);
    assert_eq!(out[16], 0.0);
    assert_eq!(out[1], -1.0);
}

#[test]
fn dequantize_row_picks_the_right_row() {
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..256 * 3).map(|_| rng.f32_in(-1.0, 1.0)).collect();
    let bytes = airlock_gguf::write::quantize(GgmlType::Q6_K, &x).unwrap();
    let mut all = vec![0f32; x.len()];
    dequantize(GgmlType::Q6_K, &bytes, &mut all).unwrap();
    let row1 = dequantize_row(GgmlType::Q6_K, &bytes, 1, 256).unwrap();
    assert_eq!(row1, all[256..512]);
    assert_eq!(dequantize_row(GgmlType::Q6_K, &bytes, 3, 256), None);
    assert_eq!(dequantize_row(GgmlType::Q6_K, &bytes, 0, 100), None);
}
