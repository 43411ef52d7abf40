//! One malformed file per error, made with the writer and byte surgery at the offsets its
//! `Layout` reports; each test asserts the specific `GgufError` variant and its context.

use airlock_gguf::write::{GgufWriter, Layout};
use airlock_gguf::{GgmlType, GgufError, GgufFile};

use crate::common::small_writer;

fn open(bytes: Vec<u8>) -> GgufError {
    GgufFile::from_bytes(bytes).expect_err("malformed file was accepted")
}

fn valid() -> (Vec<u8>, Layout) {
    let (bytes, layout) = small_writer().to_bytes_with_layout();
    GgufFile::from_bytes(bytes.clone()).expect("fixture is valid");
    (bytes, layout)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_magic() {
    let (mut b, _) = valid();
    b[0..4].copy_from_slice(b"GGML");
    assert!(matches!(open(b), GgufError::BadMagic { found } if &found == b"GGML"));
}

#[test]
fn version_1_and_4_unsupported() {
    for v in [0, 1, 4, 0xffff_ffff] {
        let (mut b, _) = valid();
        put_u32(&mut b, 4, v);
        assert!(
            matches!(open(b), GgufError::UnsupportedVersion { version } if version == v),
            "version {v}"
        );
    }
}

#[test]
fn big_endian_rejected_by_name() {
    let (mut b, _) = valid();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(open(b), GgufError::BigEndian { version: 3 }));
}

#[test]
fn version_2_accepted() {
    let mut w = small_writer();
    w.version(2);
    assert_eq!(GgufFile::from_bytes(w.to_bytes()).unwrap().version(), 2);
}

#[test]
fn truncated_at_every_structural_point() {
    let (b, l) = valid();
    // Cut exactly at each field: the error names that field and its offset.
    let mut points: Vec<(usize, &str)> = vec![
        (0, "magic"),
        (4, "version"),
        (l.tensor_count_at, "tensor count"),
        (l.kv_count_at, "metadata count"),
    ];
    for kv in &l.kvs {
        points.push((kv.key_at, "metadata key"));
        points.push((kv.type_at, "metadata value type"));
    }
    for t in &l.tensors {
        points.push((t.name_at, "tensor name"));
        points.push((t.n_dims_at, "tensor dimension count"));
        points.push((t.dims_at, "tensor dimension"));
        points.push((t.type_at, "tensor type"));
        points.push((t.offset_at, "tensor offset"));
    }
    for (cut, field) in points {
        match open(b[..cut].to_vec()) {
            GgufError::Truncated { what, offset, .. } => {
                assert_eq!((what, offset), (field, cut as u64), "cut at {cut}");
            }
            // Counts are bounded by the bytes left before anything is read after them.
            GgufError::LengthBeyondFile { what, .. } => {
                assert!(what.ends_with("count"), "cut at {cut} ({field}): {what}");
            }
            e => panic!("cut at {cut} ({field}): unexpected {e:?}"),
        }
    }
    // Every other prefix (up to the end of the last tensor's data) fails too, with one of the
    // truncation errors.
    let f = GgufFile::from_bytes(b.clone()).unwrap();
    let data_end = f.tensors().iter().map(|t| t.range().end).max().unwrap();
    for cut in 0..data_end {
        match open(b[..cut].to_vec()) {
            GgufError::Truncated { .. }
            | GgufError::LengthBeyondFile { .. }
            | GgufError::TensorOutOfBounds { .. } => {}
            e => panic!("cut at {cut}: unexpected {e:?}"),
        }
    }
    // Cutting inside the data names the tensor whose bytes are missing.
    let last = l.tensors.last().unwrap();
    assert!(matches!(
        open(b[..last.data_at + 1].to_vec()),
        GgufError::TensorOutOfBounds { tensor, .. } if tensor == last.name
    ));
    assert!(matches!(
        open(b[..l.header_end + 1].to_vec()),
        GgufError::Truncated {
            what: "padding before tensor data",
            ..
        }
    ));
}

#[test]
fn offset_beyond_file() {
    let (mut b, l) = valid();
    put_u64(&mut b, l.tensors[0].offset_at, 1 << 40);
    assert!(matches!(
        open(b),
        GgufError::TensorOutOfBounds { tensor, .. } if tensor == "a.weight"
    ));
    // An offset that overflows when added to the data start.
    let (mut b, l) = valid();
    put_u64(&mut b, l.tensors[0].offset_at, u64::MAX - 31);
    assert!(matches!(open(b), GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn size_beyond_file() {
    let (mut b, l) = valid();
    // a.weight: [64, 2] → [64, 2000]: 40 bytes per row, far beyond the file.
    put_u64(&mut b, l.tensors[0].dims_at + 8, 2000);
    assert!(matches!(
        open(b),
        GgufError::TensorOutOfBounds { tensor, n_bytes: 80_000, .. } if tensor == "a.weight"
    ));
}

#[test]
fn overflowing_dims() {
    let mut w = GgufWriter::new();
    w.raw_tensor("big", &[1 << 32, 1 << 32], GgmlType::F32.id(), vec![]);
    assert!(matches!(
        open(w.to_bytes()),
        GgufError::DimsOverflow { tensor, dims } if tensor == "big" && dims == [1 << 32, 1 << 32]
    ));
    // Element count fits, byte size does not (F32: 4 bytes each).
    let mut w = GgufWriter::new();
    w.raw_tensor("big", &[1 << 62], GgmlType::F32.id(), vec![]);
    assert!(matches!(open(w.to_bytes()), GgufError::DimsOverflow { .. }));
    // A dimension above i64::MAX (ggml's int64_t).
    let mut w = GgufWriter::new();
    w.raw_tensor("neg", &[u64::MAX], GgmlType::F32.id(), vec![]);
    assert!(matches!(open(w.to_bytes()), GgufError::DimsOverflow { .. }));
}

#[test]
fn too_many_dims() {
    let mut w = GgufWriter::new();
    w.raw_tensor("t", &[1, 1, 1, 1, 1], GgmlType::F32.id(), vec![0; 4]);
    assert!(matches!(
        open(w.to_bytes()),
        GgufError::TooManyDims {
            n_dims: 5,
            max: 4,
            ..
        }
    ));
    // A hostile dimension count is rejected before any dims are read or allocated.
    let (mut b, l) = valid();
    put_u32(&mut b, l.tensors[0].n_dims_at, u32::MAX);
    assert!(matches!(open(b), GgufError::TooManyDims { .. }));
}

#[test]
fn unknown_and_unsupported_tensor_types() {
    let (mut b, l) = valid();
    put_u32(&mut b, l.tensors[1].type_at, 99);
    assert!(matches!(
        open(b),
        GgufError::UnknownTensorType { tensor, type_id: 99 } if tensor == "b.weight"
    ));
    let (mut b, l) = valid();
    put_u32(&mut b, l.tensors[1].type_at, 10);
    let e = open(b);
    assert!(matches!(
        &e,
        GgufError::UnsupportedTensorType { tensor, ty: "Q2_K", type_id: 10 } if tensor == "b.weight"
    ));
    assert!(e.to_string().contains("Q2_K"), "{e}");
}

#[test]
fn partial_block() {
    let mut w = GgufWriter::new();
    w.raw_tensor("t", &[16, 2], GgmlType::Q4_0.id(), vec![0; 18]);
    assert!(matches!(
        open(w.to_bytes()),
        GgufError::PartialBlock {
            dim0: 16,
            block_size: 32,
            ty: "Q4_0",
            ..
        }
    ));
}

#[test]
fn duplicate_tensor() {
    let mut w = small_writer();
    w.tensor("a.weight", &[4], GgmlType::F32, vec![0; 16])
        .unwrap();
    assert!(matches!(
        open(w.to_bytes()),
        GgufError::DuplicateTensor { name } if name == "a.weight"
    ));
}

#[test]
fn duplicate_key() {
    let mut w = small_writer();
    w.metadata("general.name", "again");
    assert!(matches!(
        open(w.to_bytes()),
        GgufError::DuplicateKey { key } if key == "general.name"
    ));
}

#[test]
fn misaligned_offset() {
    let (mut b, l) = valid();
    let t = &l.tensors[1];
    let rel = (t.data_at - l.data_start) as u64;
    put_u64(&mut b, t.offset_at, rel + 4);
    assert!(matches!(
        open(b),
        GgufError::MisalignedTensor { tensor, alignment: 32, .. } if tensor == "b.weight"
    ));
}

#[test]
fn custom_alignment_is_honoured_and_checked() {
    let mut w = small_writer();
    w.alignment(64);
    let (b, l) = w.to_bytes_with_layout();
    let f = GgufFile::from_bytes(b.clone()).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_start() % 64, 0);
    assert!(f.tensors().iter().all(|t| t.offset() % 64 == 0));
    // 32-aligned but not 64-aligned.
    let mut b = b;
    let t = &l.tensors[1];
    put_u64(&mut b, t.offset_at, (t.data_at - l.data_start) as u64 + 32);
    assert!(matches!(
        open(b),
        GgufError::MisalignedTensor { alignment: 64, .. }
    ));
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48] {
        let mut w = small_writer();
        w.alignment(a);
        assert!(
            matches!(open(w.to_bytes()), GgufError::BadAlignment { value } if value == u64::from(a)),
            "alignment {a}"
        );
    }
    let mut w = small_writer();
    w.metadata("general.alignment", "32");
    assert!(matches!(open(w.to_bytes()), GgufError::WrongType { .. }));
}

#[test]
fn overlapping_tensors() {
    let (mut b, l) = valid();
    put_u64(&mut b, l.tensors[2].offset_at, 0); // c.weight now starts where a.weight does
    assert!(matches!(open(b), GgufError::TensorOverlap { .. }));
}

#[test]
fn huge_string_length() {
    let (mut b, l) = valid();
    put_u64(&mut b, l.kvs[1].key_at, u64::MAX);
    assert!(matches!(
        open(b),
        GgufError::LengthBeyondFile {
            what: "metadata key",
            declared: u64::MAX,
            ..
        }
    ));
    // A string value (general.architecture's value) and a tensor name.
    let (mut b, l) = valid();
    put_u64(&mut b, l.kvs[0].value_at, 1 << 50);
    assert!(matches!(
        open(b),
        GgufError::LengthBeyondFile {
            what: "string value",
            ..
        }
    ));
    let (mut b, l) = valid();
    put_u64(&mut b, l.tensors[0].name_at, 1 << 50);
    assert!(matches!(
        open(b),
        GgufError::LengthBeyondFile {
            what: "tensor name",
            ..
        }
    ));
}

#[test]
fn huge_array_and_header_counts() {
    // tokenizer.ggml.tokens: value is u32 item type then u64 count.
    let (mut b, l) = valid();
    let kv = l
        .kvs
        .iter()
        .find(|k| k.key == "tokenizer.ggml.tokens")
        .unwrap();
    put_u64(&mut b, kv.value_at + 4, u64::MAX / 2);
    assert!(matches!(
        open(b),
        GgufError::LengthBeyondFile {
            what: "array count",
            ..
        }
    ));
    let (mut b, l) = valid();
    put_u64(&mut b, l.tensor_count_at, u64::MAX);
    assert!(matches!(
        open(b),
        GgufError::LengthBeyondFile {
            what: "tensor count",
            ..
        }
    ));
    let (mut b, l) = valid();
    put_u64(&mut b, l.kv_count_at, 1 << 40);
    assert!(matches!(
        open(b),
        GgufError::LengthBeyondFile {
            what: "metadata count",
            ..
        }
    ));
}

#[test]
fn unknown_value_type() {
    let (mut b, l) = valid();
    put_u32(&mut b, l.kvs[2].type_at, 13);
    assert!(matches!(
        open(b),
        GgufError::UnknownValueType { key, type_id: 13, .. } if key == "llama.block_count"
    ));
    // Inside an array.
    let (mut b, l) = valid();
    let kv = l
        .kvs
        .iter()
        .find(|k| k.key == "tokenizer.ggml.token_type")
        .unwrap();
    put_u32(&mut b, kv.value_at, 77);
    assert!(matches!(
        open(b),
        GgufError::UnknownValueType { type_id: 77, .. }
    ));
}

#[test]
fn invalid_utf8() {
    let (mut b, l) = valid();
    b[l.kvs[0].key_at + 8] = 0xff;
    assert!(matches!(
        open(b),
        GgufError::InvalidUtf8 {
            what: "metadata key",
            ..
        }
    ));
}

#[test]
fn invalid_bool() {
    let mut w = GgufWriter::new();
    w.raw_metadata("flag", 7, vec![2]);
    assert!(matches!(
        open(w.to_bytes()),
        GgufError::InvalidBool { key, value: 2, .. } if key == "flag"
    ));
}

#[test]
fn arrays_nested_too_deep() {
    use airlock_gguf::Array;
    let mut a = Array::U8(vec![1]);
    for _ in 0..airlock_gguf::MAX_ARRAY_DEPTH {
        a = Array::Array(vec![a]);
    }
    let mut w = GgufWriter::new();
    w.metadata("deep", a);
    assert!(matches!(
        open(w.to_bytes()),
        GgufError::ArrayTooDeep { key, .. } if key == "deep"
    ));
}

#[test]
fn errors_read_well() {
    let (mut b, l) = valid();
    put_u64(&mut b, l.tensors[0].offset_at, 1 << 40);
    let msg = open(b).to_string();
    assert!(
        msg.contains("a.weight") && msg.contains("beyond the end"),
        "{msg}"
    );
}
