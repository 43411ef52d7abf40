//! A file written by an independent implementation (llama.cpp's gguf-py; see
//! `testdata/gen-ggufpy-blocks.py`): our reader parses its metadata and layout, and our
//! dequantization of random blocks of every type equals gguf-py's numpy decoders.

use airlock_gguf::{GgmlType, GgufFile};

fn fixture() -> GgufFile {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ggufpy-blocks.gguf");
    GgufFile::open(path).unwrap()
}

#[test]
fn ggufpy_metadata_parses() {
    let f = fixture();
    let m = f.metadata();
    assert_eq!(f.alignment(), 64);
    assert_eq!(m.get_str("general.architecture").unwrap(), "crosscheck");
    assert_eq!(m.get_as::<u8>("x.u8").unwrap(), 200);
    assert_eq!(m.get_as::<i8>("x.i8").unwrap(), -100);
    assert_eq!(m.get_as::<u16>("x.u16").unwrap(), 60000);
    assert_eq!(m.get_as::<i16>("x.i16").unwrap(), -30000);
    assert_eq!(m.get_u32("x.u32").unwrap(), 4_000_000_000);
    assert_eq!(m.get_as::<i32>("x.i32").unwrap(), -2_000_000_000);
    assert_eq!(m.get_u64("x.u64").unwrap(), u64::MAX);
    assert_eq!(m.get_i64("x.i64").unwrap(), i64::MIN);
    assert_eq!(m.get_f32("x.f32").unwrap(), 0.125);
    assert_eq!(m.get_as::<f64>("x.f64").unwrap(), -2.5e300);
    assert!(m.get_bool("x.bool").unwrap());
    assert_eq!(m.get_str("x.str").unwrap(), "héllo ✓");
    assert_eq!(
        m.get_array_str("x.tokens").unwrap(),
        ["<|im_start|>", "Ġa", ""]
    );
    assert_eq!(m.get_array_i32("x.ints").unwrap(), [3, 1, -1]);
    assert_eq!(m.get_array_f32("x.floats").unwrap(), [0.5, -0.25]);
}

#[test]
fn dequantization_equals_ggufpy() {
    let f = fixture();
    for ty in GgmlType::ALL {
        let q = f.require_tensor(&format!("q.{ty}")).unwrap();
        let r = f.require_tensor(&format!("ref.{ty}")).unwrap();
        assert_eq!(q.ggml_type(), ty);
        assert_eq!(r.ggml_type(), GgmlType::F32);
        assert_eq!(q.dims(), r.dims());
        assert_eq!(q.offset() % 64, 0);
        let ours = f.dequantize_tensor(q).unwrap();
        let theirs = f.dequantize_tensor(r).unwrap();
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max);
        eprintln!(
            "{ty}: {} values, max relative difference to gguf-py {worst:e}",
            ours.len()
        );
        // Both compute the same IEEE single-precision operations in the same order: bit-exact.
        assert!(
            ours.iter()
                .zip(&theirs)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{ty}: differs from gguf-py by up to {worst}"
        );
    }
}
