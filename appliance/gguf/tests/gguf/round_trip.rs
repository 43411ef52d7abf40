//! Writer → reader: every metadata value type, every tensor type, versions 2 and 3.

use airlock_gguf::write::GgufWriter;
use airlock_gguf::{Array, GgmlType, GgufFile, Value, dequantize};

use crate::common::Rng;

#[test]
fn every_metadata_value_type_round_trips() {
    let values: Vec<(&str, Value)> = vec![
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60_000)),
        ("t.i16", Value::I16(-30_000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f32", Value::F32(1e-5)),
        ("t.f64", Value::F64(-2.5e300)),
        ("t.bool", Value::Bool(true)),
        ("t.str", Value::String("héllo ✓".into())),
        ("t.empty", Value::String(String::new())),
        ("t.a.u8", Array::U8(vec![1, 2, 3]).into()),
        ("t.a.i8", Array::I8(vec![-1]).into()),
        ("t.a.u16", Array::U16(vec![7, 8]).into()),
        ("t.a.i16", Array::I16(vec![-7]).into()),
        ("t.a.u32", Array::U32(vec![]).into()),
        ("t.a.i32", Array::I32(vec![3, 1, 1, 6]).into()),
        ("t.a.u64", Array::U64(vec![u64::MAX]).into()),
        ("t.a.i64", Array::I64(vec![-1, 1]).into()),
        ("t.a.f32", Array::F32(vec![0.5, -0.25]).into()),
        ("t.a.f64", Array::F64(vec![1e-300]).into()),
        ("t.a.bool", Array::Bool(vec![true, false]).into()),
        (
            "t.a.str",
            Array::String(vec!["Ġa".into(), "<|im_end|>".into(), "".into()]).into(),
        ),
        (
            "t.a.nested",
            Array::Array(vec![Array::U8(vec![1]), Array::String(vec!["x".into()])]).into(),
        ),
    ];
    for version in [2, 3] {
        let mut w = GgufWriter::new();
        w.version(version);
        for (k, v) in &values {
            w.metadata(k, v.clone());
        }
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(f.version(), version);
        let got: Vec<(&str, &Value)> = f.metadata().iter().collect();
        assert_eq!(got.len(), values.len());
        for ((gk, gv), (k, v)) in got.iter().zip(&values) {
            assert_eq!((gk, *gv), (k, v));
        }
        let m = f.metadata();
        assert_eq!(m.get_u64("t.u32").unwrap(), 4_000_000_000);
        assert_eq!(m.get_array_i32("t.a.i32").unwrap(), [3, 1, 1, 6]);
        assert_eq!(m.get_array_str("t.a.str").unwrap()[1], "<|im_end|>");
        assert!(m.get_bool("t.bool").unwrap());
        assert_eq!(m.get_str("t.str").unwrap(), "héllo ✓");
        assert!(f.tensors().is_empty());
    }
}

#[test]
fn every_tensor_type_round_trips() {
    let mut rng = Rng::new(11);
    let mut w = GgufWriter::new();
    let mut originals = Vec::new();
    for ty in GgmlType::ALL {
        let dims = [ty.block_size().max(2) as u64 * 2, 3];
        let n = (dims[0] * dims[1]) as usize;
        let x: Vec<f32> = (0..n).map(|_| rng.f32_in(-1.0, 1.0)).collect();
        let bytes = airlock_gguf::write::quantize(ty, &x).unwrap();
        w.tensor(&format!("t.{ty}"), &dims, ty, bytes.clone())
            .unwrap();
        originals.push((ty, dims, bytes));
    }
    // A scalar (no dims) and an empty tensor.
    w.tensor("scalar", &[], GgmlType::F32, 7f32.to_le_bytes().to_vec())
        .unwrap();
    w.tensor("empty", &[0, 4], GgmlType::Q8_0, vec![]).unwrap();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    for (ty, dims, bytes) in &originals {
        let t = f.tensor(&format!("t.{ty}")).unwrap();
        assert_eq!(t.ggml_type(), *ty);
        assert_eq!(t.dims(), dims);
        assert_eq!(t.n_elements(), dims[0] * dims[1]);
        assert_eq!(t.n_rows(), 3);
        assert_eq!(f.tensor_bytes(t), bytes.as_slice());
        assert_eq!(t.offset() % 32, 0);
        let mut want = vec![0f32; t.n_elements() as usize];
        dequantize(*ty, bytes, &mut want).unwrap();
        assert_eq!(f.dequantize_tensor(t).unwrap(), want);
    }
    let s = f.tensor("scalar").unwrap();
    assert_eq!((s.n_elements(), s.row_len()), (1, 1));
    assert_eq!(f.dequantize_tensor(s).unwrap(), [7.0]);
    let e = f.tensor("empty").unwrap();
    assert_eq!((e.n_elements(), e.n_bytes(), e.n_rows()), (0, 0, 0));
    assert!(f.tensor("missing").is_none());
    assert!(matches!(
        f.require_tensor("missing"),
        Err(airlock_gguf::GgufError::TensorNotFound { .. })
    ));
}

#[test]
fn open_maps_a_file_from_disk() {
    let dir = std::env::temp_dir().join(format!("airlock-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("small.gguf");
    crate::common::small_writer().write_to(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert!(f.is_mapped());
    assert_eq!(f.tensors().len(), 3);
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        GgufFile::open(&empty),
        Err(airlock_gguf::GgufError::Truncated { what: "magic", .. })
    ));
    assert!(matches!(
        GgufFile::open(dir.join("absent.gguf")),
        Err(airlock_gguf::GgufError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[should_panic(expected = "belongs to another GgufFile")]
fn tensor_info_from_another_file_is_refused() {
    let a = GgufFile::from_bytes(crate::common::small_writer().to_bytes()).unwrap();
    let b = GgufFile::from_bytes(crate::common::small_writer().to_bytes()).unwrap();
    let _ = b.tensor_bytes(&a.tensors()[0]);
}
