//! Every kernel against an f64 reference (the GGUF reader's block decoders + a plain sum), on
//! random rows of every type, and the run-time-selected SIMD path against the portable one.

use airlock_engine::kernels::q8::Q8Row;
use airlock_engine::kernels::{Isa, row_dot, row_dot_q8};
use airlock_gguf::GgmlType;
use airlock_gguf::write::quantize;

use crate::common::Rng;

/// Every instruction set this CPU runs (the SIMD ones are skipped, and named, elsewhere).
fn isas() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect()
}

fn reference(ty: GgmlType, row: &[u8], x: &[f32]) -> f64 {
    let mut w = vec![0f32; x.len()];
    airlock_gguf::dequantize(ty, row, &mut w).unwrap();
    w.iter()
        .zip(x)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

#[test]
fn every_type_matches_the_reference_on_every_isa() {
    let isas = isas();
    let mut rng = Rng::new(42);
    for ty in GgmlType::ALL {
        for &len in &[256usize, 512, 1536] {
            for _ in 0..20 {
                let w = rng.vec(len, 2.0);
                let row = quantize(ty, &w).unwrap();
                let x = rng.vec(len, 3.0);
                let want = reference(ty, &row, &x);
                let scale: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from((a * b).abs()))
                    .sum::<f64>()
                    .max(1.0);
                for &isa in &isas {
                    let got = row_dot(isa, ty, &row, &x).unwrap();
                    let err = (f64::from(got) - want).abs() / scale;
                    assert!(
                        err < 1e-5,
                        "{ty:?} len {len} {isa:?}: got {got}, want {want} (rel {err:e})"
                    );
                }
            }
        }
    }
}

#[test]
fn odd_lengths_of_dense_types_use_the_tail_path() {
    let mut rng = Rng::new(7);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        for len in [1usize, 7, 9, 33] {
            let w = rng.vec(len, 1.0);
            let row = quantize(ty, &w).unwrap();
            let x = rng.vec(len, 1.0);
            let want = reference(ty, &row, &x);
            for isa in isas() {
                let got = row_dot(isa, ty, &row, &x).unwrap();
                assert!(
                    (f64::from(got) - want).abs() < 1e-5,
                    "{ty:?} {len} {isa:?}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn mismatched_lengths_are_refused_not_read_out_of_bounds() {
    let row = quantize(GgmlType::Q4_1, &[0.5; 64]).unwrap();
    for isa in isas() {
        assert_eq!(row_dot(isa, GgmlType::Q4_1, &row, &[1.0; 96]), None);
        assert_eq!(row_dot(isa, GgmlType::Q4_1, &row[..30], &[1.0; 64]), None);
        assert_eq!(row_dot(isa, GgmlType::Q4_1, &row, &[1.0; 33]), None);
    }
}

#[test]
fn simd_paths_covered_on_this_machine_are_reported() {
    // Not an assertion about the machine: documents which paths the other tests covered.
    eprintln!("kernels tested: {:?}", isas());
}

/// The 8-bit activation path: the SIMD code equals the portable integer code (up to f32
/// summation order) and both stay within the activation rounding of the exact f64 product.
#[test]
fn q8_activation_kernels_match_the_portable_code_and_the_reference() {
    let mut rng = Rng::new(11);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        for &len in &[32usize, 576, 1536] {
            for _ in 0..20 {
                let w = rng.vec(len, 2.0);
                let row = quantize(ty, &w).unwrap();
                let x = rng.vec(len, 3.0);
                let a = Q8Row::quantize(&x);
                let portable = row_dot_q8(Isa::Portable, ty, &row, &a).unwrap();
                let scale: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from((a * b).abs()))
                    .sum::<f64>()
                    .max(1.0);
                for isa in isas() {
                    let simd = row_dot_q8(isa, ty, &row, &a).unwrap();
                    assert!(
                        (f64::from(simd - portable)).abs() / scale < 1e-6,
                        "{ty:?} {len} {isa:?}: {simd} vs portable {portable}"
                    );
                }
                let exact = reference(ty, &row, &x);
                assert!(
                    (f64::from(portable) - exact).abs() / scale < 1e-2,
                    "{ty:?} {len}: {portable} vs exact {exact}"
                );
            }
        }
    }
    let a = Q8Row::quantize(&[1.0; 64]);
    for isa in isas() {
        assert_eq!(row_dot_q8(isa, GgmlType::Q4_K, &[0; 144], &a), None);
        assert_eq!(row_dot_q8(isa, GgmlType::Q4_1, &[0; 20], &a), None);
    }
}

/// Quantizing activations follows llama.cpp: d = max|x| / 127, codes rounded half to even.
#[test]
fn q8_activation_quantization_follows_llama_cpp() {
    let mut x = vec![0f32; 32];
    x[0] = -4.0;
    x[1] = 2.0;
    x[2] = 0.01;
    let a = Q8Row::quantize(&x);
    assert_eq!(a.qs[0], -127);
    assert_eq!(a.qs[1], 64, "2 * 127 / 4 = 63.5 rounds to even");
    assert_eq!(a.qs[2], 0);
    assert_eq!(a.isum[0], -63);
    assert!((a.d[0] - 4.0 / 127.0).abs() < 1e-5);
    assert!(Q8Row::quantize(&[0.0; 32]).qs.iter().all(|&q| q == 0));
}

/// The four-row kernel gives exactly the single-row results.
#[test]
fn four_row_q8_kernel_equals_single_rows() {
    use airlock_engine::kernels::row_dot_q8_x4;
    let mut rng = Rng::new(12);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        let w = rng.vec(576, 2.0);
        let row = quantize(ty, &w).unwrap();
        let acts: Vec<Q8Row> = (0..4)
            .map(|_| Q8Row::quantize(&rng.vec(576, 3.0)))
            .collect();
        for isa in isas() {
            let four =
                row_dot_q8_x4(isa, ty, &row, [&acts[0], &acts[1], &acts[2], &acts[3]]).unwrap();
            for (k, a) in acts.iter().enumerate() {
                assert_eq!(
                    four[k],
                    row_dot_q8(isa, ty, &row, a).unwrap(),
                    "{ty:?} {isa:?} row {k}"
                );
            }
        }
        let short = Q8Row::quantize(&[1.0; 32]);
        for isa in isas() {
            assert_eq!(
                row_dot_q8_x4(isa, ty, &row, [&acts[0], &acts[1], &acts[2], &short]),
                None
            );
        }
    }
}

/// The register-tiled prompt kernel against the scalar reference (`Isa::Portable`), on random
/// blocks: every type, odd block counts, every short tile shape (tails repeat a row or token).
#[test]
fn tile_q8_kernel_matches_the_scalar_reference() {
    use airlock_engine::kernels::{TILE, tile_dot_q8};
    let mut rng = Rng::new(13);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        for &blocks in &[1usize, 3, 17, 18, 48] {
            let len = blocks * 32;
            let rows: Vec<Vec<u8>> = (0..TILE)
                .map(|_| quantize(ty, &rng.vec(len, 2.0)).unwrap())
                .collect();
            let acts: Vec<Q8Row> = (0..TILE)
                .map(|_| Q8Row::quantize(&rng.vec(len, 3.0)))
                .collect();
            for nr in 1..=TILE {
                for nt in 1..=TILE {
                    let rs: Vec<&[u8]> = rows[..nr].iter().map(Vec::as_slice).collect();
                    let a: Vec<&Q8Row> = acts[..nt].iter().collect();
                    for isa in isas() {
                        let mut out = vec![0f32; nr * nt];
                        tile_dot_q8(isa, ty, &rs, &a, &mut out).unwrap();
                        for r in 0..nr {
                            for t in 0..nt {
                                let want = row_dot_q8(Isa::Portable, ty, rs[r], a[t]).unwrap();
                                let got = out[r * nt + t];
                                // Token invariance: a tile computes each pair exactly as the
                                // one-token kernel of the same instruction set.
                                let single = row_dot_q8(isa, ty, rs[r], a[t]).unwrap();
                                assert_eq!(
                                    got.to_bits(),
                                    single.to_bits(),
                                    "{ty:?} {blocks} blocks {isa:?} tile {nr}x{nt} ({r},{t}): tile {got} vs one token {single}"
                                );
                                // |w| <= 2, |x| <= 3: Σ|terms| <= 6 len bounds the f32 error.
                                let tol = 1e-6 * 6.0 * len as f32;
                                assert!(
                                    (got - want).abs() <= tol,
                                    "{ty:?} {blocks} blocks {isa:?} tile {nr}x{nt} ({r},{t}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
        // Mismatched lengths and oversized tiles are refused.
        let row = quantize(ty, &rng.vec(64, 1.0)).unwrap();
        let a64 = Q8Row::quantize(&rng.vec(64, 1.0));
        let a32 = Q8Row::quantize(&rng.vec(32, 1.0));
        for isa in isas() {
            let mut out = [0f32; 2];
            assert_eq!(tile_dot_q8(isa, ty, &[&row], &[&a64, &a32], &mut out), None);
            assert_eq!(
                tile_dot_q8(isa, ty, &[&row[..20]], &[&a64], &mut out[..1]),
                None
            );
            let mut big = [0f32; 5];
            assert_eq!(
                tile_dot_q8(isa, ty, &[row.as_slice(); 5], &[&a64], &mut big),
                None
            );
        }
    }
}

/// A token's result does not depend on the kernel that computes it: the four-row decode
/// kernel, single rows and the prompt tiles (any tile shape, the token in any lane) agree
/// bit for bit on every instruction set, so a position computed inside a prompt chunk equals
/// the same position decoded alone.
#[test]
fn decode_rows_single_rows_and_prompt_tiles_agree_bitwise() {
    use airlock_engine::kernels::{TILE, rows4_dot_q8, tile_dot_q8};
    let mut rng = Rng::new(15);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        for &blocks in &[1usize, 3, 17, 18, 48] {
            let len = blocks * 32;
            let rows: Vec<Vec<u8>> = (0..TILE)
                .map(|_| quantize(ty, &rng.vec(len, 2.0)).unwrap())
                .collect();
            let mut xs: Vec<Vec<f32>> = (0..TILE).map(|_| rng.vec(len, 3.0)).collect();
            // A token whose products cancel to a signed zero.
            xs[3] = vec![0.0; len];
            let acts: Vec<Q8Row> = xs.iter().map(|x| Q8Row::quantize(x)).collect();
            let rs: [&[u8]; 4] = std::array::from_fn(|r| rows[r].as_slice());
            for isa in isas() {
                let all: Vec<&Q8Row> = acts.iter().collect();
                let mut tile = vec![0f32; TILE * TILE];
                tile_dot_q8(isa, ty, &rs, &all, &mut tile).unwrap();
                for (t, a) in acts.iter().enumerate() {
                    let four = rows4_dot_q8(isa, ty, &rs, a).unwrap();
                    let mut alone = [0f32; TILE];
                    tile_dot_q8(isa, ty, &rs, &[a], &mut alone).unwrap();
                    for r in 0..TILE {
                        let single = row_dot_q8(isa, ty, rs[r], a).unwrap();
                        let what = format!("{ty:?} {blocks} blocks {isa:?} row {r} token {t}");
                        assert_eq!(
                            four[r].to_bits(),
                            single.to_bits(),
                            "{what}: rows4 vs single"
                        );
                        assert_eq!(
                            four[r].to_bits(),
                            tile[r * TILE + t].to_bits(),
                            "{what}: rows4 vs 4x4 tile"
                        );
                        assert_eq!(
                            four[r].to_bits(),
                            alone[r].to_bits(),
                            "{what}: rows4 vs 4x1 tile"
                        );
                    }
                }
            }
        }
    }
    let a = Q8Row::quantize(&[1.0; 64]);
    let row = quantize(GgmlType::Q4_1, &[0.5; 64]).unwrap();
    for isa in isas() {
        let short: [&[u8]; 4] = [&row, &row, &row, &row[..20]];
        assert_eq!(rows4_dot_q8(isa, GgmlType::Q4_1, &short, &a), None);
        assert_eq!(
            rows4_dot_q8(isa, GgmlType::Q4_K, &[&row, &row, &row, &row], &a),
            None
        );
    }
}

/// The vector f16 rounding equals `half`'s, value for value (ties, overflow to infinity,
/// subnormals, a tail shorter than a vector).
#[test]
fn round_f16_matches_half() {
    let mut rng = Rng::new(14);
    let mut x = rng.vec(1001, 70000.0);
    x.extend([
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        65520.0,
        1e-7,
        -3e-6,
        0.0,
        -0.0,
    ]);
    let mut got = x.clone();
    airlock_engine::kernels::round_f16(&mut got);
    for (g, v) in got.iter().zip(&x) {
        assert_eq!(
            g.to_bits(),
            half::f16::from_f32(*v).to_f32().to_bits(),
            "{v}"
        );
    }
}
