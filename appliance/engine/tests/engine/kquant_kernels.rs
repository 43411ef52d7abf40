//! K-quant kernels with 8-bit super-block activations: every SIMD kernel bitwise against the
//! scalar twin of ggml's arithmetic, the twin against an f64 reference, and the refusals.

use airlock_engine::kernels::q8k::{BSUMS, Q8KRow};
use airlock_engine::kernels::{Isa, row_dot_q8k};
use airlock_gguf::GgmlType;
use airlock_gguf::blocks::QK_K;
use airlock_gguf::write::quantize;

use crate::common::Rng;

const TYPES: [GgmlType; 3] = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K];

fn simd_isas() -> Vec<Isa> {
    [Isa::Avx2, Isa::Avx512Vnni]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect()
}

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// Offset of the f16 scale `d` in a block, and of `dmin` (Q4_K/Q5_K only).
fn d_offset(ty: GgmlType) -> usize {
    if ty == GgmlType::Q6_K {
        ty.block_bytes() - 2
    } else {
        0
    }
}

/// `blocks` blocks of random bytes (every code, scale and high-bit pattern) with the f16
/// scales set to `d` (and `dmin` to `dmin`): no NaN or infinity from the header.
fn raw_row(rng: &mut Rng, ty: GgmlType, blocks: usize, d: f32, dmin: f32) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut row: Vec<u8> = (0..blocks * bb).map(|_| rng.next_u64() as u8).collect();
    for b in row.chunks_exact_mut(bb) {
        let o = d_offset(ty);
        b[o..o + 2].copy_from_slice(&f16_bytes(d));
        if ty != GgmlType::Q6_K {
            b[2..4].copy_from_slice(&f16_bytes(dmin));
        }
    }
    row
}

/// An activation with arbitrary codes (−128 included, which quantization never makes) and
/// consistent `bsums`, scale `d` per super-block.
fn raw_act(rng: &mut Rng, blocks: usize, d: f32) -> Q8KRow {
    let qs: Vec<i8> = (0..blocks * QK_K).map(|_| rng.next_u64() as i8).collect();
    let bsums = qs
        .chunks_exact(16)
        .map(|c| c.iter().map(|&q| i16::from(q)).sum())
        .collect();
    Q8KRow {
        qs,
        d: vec![d; blocks],
        bsums,
    }
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Every SIMD kernel equals the scalar twin bit for bit: random raw blocks (all code and scale
/// patterns), quantized random rows, extreme scales (f16 max and subnormal weights, huge and
/// tiny activations), all-zero activations, 1 to 17 super-blocks.
#[test]
fn simd_kernels_equal_the_scalar_twin_bitwise() {
    let isas = simd_isas();
    eprintln!("K-quant kernels tested: {isas:?}");
    let mut rng = Rng::new(21);
    let scales: [(f32, f32, f32); 6] = [
        (0.01, 0.003, 0.02),
        (1.0, 0.5, 1.0),
        (65504.0, 65504.0, 1e30),
        (6e-8, 6e-8, 1e-30),
        (-3.0, -0.25, 0.5),
        (0.1, 0.0, 3e-3),
    ];
    let mut checked = 0;
    for ty in TYPES {
        for &blocks in &[1usize, 2, 3, 8, 17] {
            for &(d, dmin, da) in &scales {
                for _ in 0..6 {
                    let row = raw_row(&mut rng, ty, blocks, d, dmin);
                    let mut acts = vec![raw_act(&mut rng, blocks, da)];
                    acts.push(Q8KRow::quantize(&rng.vec(blocks * QK_K, da.min(1e3))));
                    acts.push(Q8KRow::quantize(&vec![0.0; blocks * QK_K]));
                    let w = rng.vec(blocks * QK_K, d.abs().min(1e3));
                    let qrow = quantize(ty, &w).unwrap();
                    for a in &acts {
                        for r in [&row, &qrow] {
                            let twin = row_dot_q8k(Isa::Portable, ty, r, a).unwrap();
                            for &isa in &isas {
                                let got = row_dot_q8k(isa, ty, r, a).unwrap();
                                assert!(
                                    same(got, twin),
                                    "{ty:?} {blocks} blocks d {d} dmin {dmin} da {da} {isa:?}: \
                                     {got} vs twin {twin}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("{checked} SIMD products compared");
}

fn reference(ty: GgmlType, row: &[u8], x: &[f32]) -> f64 {
    let mut w = vec![0f32; x.len()];
    airlock_gguf::dequantize(ty, row, &mut w).unwrap();
    w.iter()
        .zip(x)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

/// The twin computes the product of the decoded weights with the activations up to their
/// 8-bit rounding (≤ 1/254 of the block's largest value per term).
#[test]
fn scalar_twin_matches_the_exact_product() {
    let mut rng = Rng::new(22);
    for ty in TYPES {
        for &len in &[256usize, 512, 2048] {
            for _ in 0..20 {
                let w = rng.vec(len, 2.0);
                let row = quantize(ty, &w).unwrap();
                let x = rng.vec(len, 3.0);
                let a = Q8KRow::quantize(&x);
                let got = row_dot_q8k(Isa::Portable, ty, &row, &a).unwrap();
                let want = reference(ty, &row, &x);
                let scale: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from((a * b).abs()))
                    .sum::<f64>()
                    .max(1.0);
                let err = (f64::from(got) - want).abs() / scale;
                assert!(err < 1e-2, "{ty:?} {len}: {got} vs {want} (rel {err:e})");
            }
        }
    }
}

/// Activation quantization: codes within ±127, `d · q` within half a step of `x`, `bsums` the
/// sums of sixteen codes.
#[test]
fn q8k_quantization_is_consistent() {
    let mut rng = Rng::new(23);
    let x = rng.vec(3 * QK_K, 5.0);
    let a = Q8KRow::quantize(&x);
    assert!(a.is_well_formed());
    assert_eq!((a.qs.len(), a.d.len(), a.bsums.len()), (768, 3, 3 * BSUMS));
    for (b, xb) in x.chunks_exact(QK_K).enumerate() {
        let d = a.d[b];
        for (j, &v) in xb.iter().enumerate() {
            let q = a.qs[b * QK_K + j];
            assert!((-127..=127).contains(&q));
            assert!(
                (f32::from(q) * d - v).abs() <= d.abs() * 0.5001,
                "{v} vs {q} · {d}"
            );
        }
    }
    for (s, c) in a.bsums.iter().zip(a.qs.chunks_exact(16)) {
        assert_eq!(*s, c.iter().map(|&q| i16::from(q)).sum::<i16>());
    }
}

/// Wrong types, lengths and malformed activations are refused, not read out of bounds.
#[test]
fn k_kernels_refuse_mismatched_inputs() {
    let mut rng = Rng::new(24);
    let a = Q8KRow::quantize(&rng.vec(512, 1.0));
    let mut bad = a.clone();
    bad.bsums.pop();
    for ty in TYPES {
        let row = quantize(ty, &rng.vec(512, 1.0)).unwrap();
        for isa in [Isa::Portable].into_iter().chain(simd_isas()) {
            assert!(row_dot_q8k(isa, ty, &row, &a).is_some());
            assert_eq!(row_dot_q8k(isa, ty, &row[1..], &a), None);
            assert_eq!(row_dot_q8k(isa, ty, &row, &bad), None);
            let half = Q8KRow::quantize(&rng.vec(256, 1.0));
            assert_eq!(row_dot_q8k(isa, ty, &row, &half), None);
        }
        assert_eq!(row_dot_q8k(Isa::Portable, GgmlType::Q8_0, &row, &a), None);
    }
}

/// The multi-token kernel (prompt chunks, batched decode) gives every token bitwise the
/// one-token result, whatever the number of tokens (groups of four and tails), on random raw
/// blocks and quantized rows, including an all-zero activation.
#[test]
fn multi_token_kernel_equals_one_token_kernel_bitwise() {
    use airlock_engine::kernels::{row_dot_q8k_tokens, row_pair_dot_q8k_tokens};
    let mut rng = Rng::new(25);
    for ty in TYPES {
        for &blocks in &[1usize, 3, 8] {
            let len = blocks * QK_K;
            let rows = [
                raw_row(&mut rng, ty, blocks, 0.02, 0.01),
                raw_row(&mut rng, ty, blocks, 65504.0, -3.0),
                quantize(ty, &rng.vec(len, 2.0)).unwrap(),
            ];
            let mut acts: Vec<Q8KRow> = (0..6)
                .map(|_| Q8KRow::quantize(&rng.vec(len, 3.0)))
                .collect();
            acts.push(raw_act(&mut rng, blocks, 0.7));
            acts.push(Q8KRow::quantize(&vec![0.0; len]));
            acts.push(raw_act(&mut rng, blocks, 1e30));
            for row in &rows {
                for isa in [Isa::Portable].into_iter().chain(simd_isas()) {
                    for n in 1..=acts.len() {
                        let a: Vec<&Q8KRow> = acts[..n].iter().collect();
                        let mut out = vec![0f32; n];
                        row_dot_q8k_tokens(isa, ty, row, &a, &mut out).unwrap();
                        // The same row paired with another (the prompt path's two-row pass):
                        // both rows' results are still the one-token kernel's.
                        let other = &rows[(rows.iter().position(|r| r == row).unwrap() + 1) % 3];
                        let (mut p0, mut p1) = (vec![0f32; n], vec![0f32; n]);
                        row_pair_dot_q8k_tokens(isa, ty, [row, other], &a, [&mut p0, &mut p1])
                            .unwrap();
                        for (t, (&got, act)) in out.iter().zip(&a).enumerate() {
                            let one = row_dot_q8k(isa, ty, row, act).unwrap();
                            assert!(
                                same(got, one),
                                "{ty:?} {blocks} blocks {isa:?} {n} tokens, token {t}: {got} vs \
                                 one token {one}"
                            );
                            let one_other = row_dot_q8k(isa, ty, other, act).unwrap();
                            assert!(
                                same(p0[t], one) && same(p1[t], one_other),
                                "{ty:?} {blocks} blocks {isa:?} {n} tokens, token {t}, pair: \
                                 {} {} vs one token {one} {one_other}",
                                p0[t],
                                p1[t]
                            );
                        }
                    }
                    let mut out = vec![0f32; 2];
                    let short = Q8KRow::quantize(&vec![1.0; QK_K * (blocks + 1)]);
                    assert_eq!(
                        row_dot_q8k_tokens(isa, ty, row, &[&acts[0], &short], &mut out),
                        None
                    );
                }
            }
        }
    }
}
