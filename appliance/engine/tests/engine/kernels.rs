//! Every kernel against an f64 reference (the GGUF reader's block decoders + a plain sum), on
//! random rows of every type, and the run-time-selected SIMD path against the portable one.

use airlock_engine::kernels::{Isa, row_dot};
use airlock_gguf::GgmlType;
use airlock_gguf::write::quantize;

use crate::common::Rng;

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
    let isas: Vec<Isa> = [Isa::Portable, Isa::best_supported()].into_iter().collect();
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
            let got = row_dot(Isa::best_supported(), ty, &row, &x).unwrap();
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "{ty:?} {len}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn mismatched_lengths_are_refused_not_read_out_of_bounds() {
    let row = quantize(GgmlType::Q4_1, &[0.5; 64]).unwrap();
    for isa in [Isa::Portable, Isa::best_supported()] {
        assert_eq!(row_dot(isa, GgmlType::Q4_1, &row, &[1.0; 96]), None);
        assert_eq!(row_dot(isa, GgmlType::Q4_1, &row[..30], &[1.0; 64]), None);
        assert_eq!(row_dot(isa, GgmlType::Q4_1, &row, &[1.0; 33]), None);
    }
}

#[test]
fn avx2_is_used_on_this_machine_when_available() {
    // Not an assertion about the machine: documents which path the other tests covered.
    eprintln!("best supported kernels: {}", Isa::best_supported().name());
}
