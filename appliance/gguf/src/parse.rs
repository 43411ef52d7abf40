//! The GGUF header parser: bytes in, fully validated header out.
//!
//! Layout (GGUF spec, `docs/gguf.md` in ggml, "File Structure"), all little-endian:
//!
//! ```text
//! u32 magic "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
//! metadata_kv_count × { string key | u32 value_type | value }
//! tensor_count × { string name | u32 n_dims | n_dims × u64 dim | u32 ggml_type | u64 offset }
//! padding to general.alignment (default 32)
//! tensor data; each tensor at data_start + offset, offset a multiple of the alignment
//! ```
//!
//! `string` is `u64 len | len bytes of UTF-8`; an array value is `u32 item_type | u64 count |
//! items`. Versions: v1 had 32-bit lengths and counts (rejected); v2 moved them to 64 bits; v3
//! added big-endian files (rejected: we read little-endian only).
//!
//! Bounds discipline: every read goes through [`Cursor`], which checks the bytes left first;
//! every declared length or count is compared against the bytes left (as the minimum encoded
//! size of that many items, in `u128`) before any allocation; all offset/size arithmetic is
//! checked. Nothing here indexes a slice directly.

use std::collections::HashMap;

use crate::types::{GgmlType, ggml_type_name};
use crate::value::{Array, Metadata, Value, ValueType};
use crate::{GgufError, MAX_ARRAY_DEPTH, MAX_DIMS, TensorInfo};

/// `"GGUF"` as the first four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment when `general.alignment` is absent (GGUF spec: `GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Smallest encoded metadata pair: empty key (u64 length) + value type + a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoded tensor info: empty name + n_dims = 0 + type + offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Most items reserved up front for a declared count. Counts are already bounded by the file
/// size, but an in-memory item (a `String`, a tensor info) is larger than its smallest
/// encoding, so beyond this the vectors grow only as items are actually parsed.
const PREALLOC_LIMIT: usize = 1 << 16;

/// The validated header of a GGUF file.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub by_name: HashMap<String, usize>,
    pub alignment: u64,
    pub data_start: u64,
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos.min(self.buf.len())) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let bytes =
            usize::try_from(n)
                .ok()
                .and_then(|n| rest.get(..n))
                .ok_or(GgufError::Truncated {
                    what,
                    offset: self.offset(),
                    needed: n,
                    file_len: self.buf.len() as u64,
                })?;
        self.pos += bytes.len();
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let b = self.take(N as u64, what)?;
        // `take` returned exactly N bytes.
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks that `count` items of at least `min_each` bytes can fit in what is left.
    fn check_count(
        &self,
        count: u64,
        min_each: u64,
        what: &'static str,
        at: u64,
    ) -> Result<usize, GgufError> {
        let min_bytes = u128::from(count) * u128::from(min_each);
        if min_bytes > u128::from(self.remaining()) {
            return Err(GgufError::LengthBeyondFile {
                what,
                offset: at,
                declared: count,
                min_bytes,
                remaining: self.remaining(),
            });
        }
        // Fits in the remaining bytes, so it fits in usize.
        Ok(count as usize)
    }

    /// A GGUF string: u64 length, then that many UTF-8 bytes.
    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let at = self.offset();
        let len = self.u64(what)?;
        self.check_count(len, 1, what, at)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            what,
            offset: at + 8,
        })
    }
}

/// Parses and validates the whole header and every tensor's placement.
pub(crate) fn parse(buf: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { buf, pos: 0 };

    let magic: [u8; 4] = c.array("magic")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        // A big-endian writer stores the version big-endian too: 3 reads as 0x0300_0000.
        v if v & 0xffff == 0 && matches!(v.swap_bytes(), 1..=3) => {
            return Err(GgufError::BigEndian {
                version: v.swap_bytes(),
            });
        }
        v => return Err(GgufError::UnsupportedVersion { version: v }),
    }

    let at = c.offset();
    let tensor_count = c.u64("tensor count")?;
    let kv_at = c.offset();
    let kv_count = c.u64("metadata count")?;
    // Both counts are bounded by the file size before anything is reserved.
    let kv_count = c.check_count(kv_count, MIN_KV_BYTES, "metadata count", kv_at)?;
    let tensor_count = c.check_count(tensor_count, MIN_TENSOR_INFO_BYTES, "tensor count", at)?;

    let mut metadata = Metadata::default();
    for _ in 0..kv_count {
        let key = c.string("metadata key")?;
        let type_at = c.offset();
        let type_id = c.u32("metadata value type")?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            type_id,
            offset: type_at,
        })?;
        let value = read_value(&mut c, &key, ty)?;
        metadata.insert(key, value)?;
    }

    let alignment = alignment(&metadata)?;

    let mut raw = Vec::with_capacity(tensor_count.min(PREALLOC_LIMIT));
    let mut by_name = HashMap::with_capacity(tensor_count.min(PREALLOC_LIMIT));
    for i in 0..tensor_count {
        let info = read_tensor_info(&mut c, alignment)?;
        if by_name.insert(info.0.clone(), i).is_some() {
            return Err(GgufError::DuplicateTensor { name: info.0 });
        }
        raw.push(info);
    }

    let header_end = c.offset();
    let data_start = header_end
        .checked_next_multiple_of(alignment)
        .ok_or(GgufError::BadAlignment { value: alignment })?;
    let file_len = buf.len() as u64;
    if tensor_count > 0 && data_start > file_len {
        return Err(GgufError::Truncated {
            what: "padding before tensor data",
            offset: header_end,
            needed: data_start - header_end,
            file_len,
        });
    }

    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, ggml_type, rel, n_elements, n_bytes) in raw {
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            tensor: name.clone(),
            start: data_start.saturating_add(rel),
            n_bytes,
            file_len,
        };
        let start = data_start.checked_add(rel).ok_or_else(out_of_bounds)?;
        let end = start.checked_add(n_bytes).ok_or_else(out_of_bounds)?;
        if end > file_len {
            return Err(out_of_bounds());
        }
        // end <= file_len, which is a usize: both conversions are lossless.
        let range = start as usize..end as usize;
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset: start,
            n_elements,
            n_bytes,
            range,
            file_id: 0,
        });
    }
    check_overlaps(&tensors)?;

    Ok(Header {
        version,
        metadata,
        tensors,
        by_name,
        alignment,
        data_start,
    })
}

/// `general.alignment`: any integer type (the spec says u32), a power of two, at most 2^31.
fn alignment(md: &Metadata) -> Result<u64, GgufError> {
    let Some(v) = md.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let n = v.as_integer().ok_or_else(|| GgufError::WrongType {
        key: ALIGNMENT_KEY.to_owned(),
        expected: "u32",
        got: v.type_name(),
    })?;
    match u64::try_from(n) {
        Ok(a) if a.is_power_of_two() && a <= 1 << 31 => Ok(a),
        _ => Err(GgufError::BadAlignment {
            value: n.clamp(0, u64::MAX.into()) as u64,
        }),
    }
}

type RawTensor = (String, Vec<u64>, GgmlType, u64, u64, u64);

/// One tensor info; validates everything that does not need the data section's start.
fn read_tensor_info(c: &mut Cursor<'_>, alignment: u64) -> Result<RawTensor, GgufError> {
    let name = c.string("tensor name")?;
    let n_dims = c.u32("tensor dimension count")?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            tensor: name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64("tensor dimension")?);
    }
    let type_id = c.u32("tensor type")?;
    let offset = c.u64("tensor offset")?;

    let ggml_type = match GgmlType::from_id(type_id) {
        Some(t) => t,
        None => {
            return Err(match ggml_type_name(type_id) {
                Some(ty) => GgufError::UnsupportedTensorType {
                    tensor: name,
                    ty,
                    type_id,
                },
                None => GgufError::UnknownTensorType {
                    tensor: name,
                    type_id,
                },
            });
        }
    };

    // ggml stores dimensions as int64_t: anything above i64::MAX is as invalid as an overflow.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| {
            if d > i64::MAX as u64 {
                None
            } else {
                acc.checked_mul(d)
            }
        })
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufError::DimsOverflow { tensor: name, dims });
    };
    // ggml quantizes along rows: the first (contiguous) dimension must be whole blocks.
    let dim0 = dims.first().copied().unwrap_or(1);
    let block_size = ggml_type.block_size() as u64;
    if !dim0.is_multiple_of(block_size) {
        return Err(GgufError::PartialBlock {
            tensor: name,
            ty: ggml_type.name(),
            dim0,
            block_size,
        });
    }
    let Some(n_bytes) = ggml_type.bytes_for(n_elements) else {
        return Err(GgufError::DimsOverflow { tensor: name, dims });
    };
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor {
            tensor: name,
            offset,
            alignment,
        });
    }
    Ok((name, dims, ggml_type, offset, n_elements, n_bytes))
}

/// No two non-empty tensors may share bytes.
fn check_overlaps(tensors: &[TensorInfo]) -> Result<(), GgufError> {
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        if let [a, b] = pair
            && a.range.end > b.range.start
        {
            return Err(GgufError::TensorOverlap {
                first: a.name.clone(),
                second: b.name.clone(),
            });
        }
    }
    Ok(())
}

/// One metadata value of type `ty` (already read).
fn read_value(c: &mut Cursor<'_>, key: &str, ty: ValueType) -> Result<Value, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8("u8 value")?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array("i8 value")?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array("u16 value")?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array("i16 value")?)),
        ValueType::U32 => Value::U32(c.u32("u32 value")?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array("i32 value")?)),
        ValueType::U64 => Value::U64(c.u64("u64 value")?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array("i64 value")?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array("f32 value")?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array("f64 value")?)),
        ValueType::Bool => Value::Bool(read_bool(c, key)?),
        ValueType::String => Value::String(c.string("string value")?),
        ValueType::Array => Value::Array(read_array(c, key, 1)?),
    })
}

fn read_bool(c: &mut Cursor<'_>, key: &str) -> Result<bool, GgufError> {
    let at = c.offset();
    match c.u8("bool value")? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::InvalidBool {
            key: key.to_owned(),
            value,
            offset: at,
        }),
    }
}

/// Reads `count` fixed-size items with one bounds check.
fn fixed<const N: usize, T>(
    c: &mut Cursor<'_>,
    count: usize,
    what: &'static str,
    conv: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    // count * N <= remaining was checked by the caller, so this cannot overflow.
    let bytes = c.take((count * N) as u64, what)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|ch| {
            let mut a = [0u8; N];
            a.copy_from_slice(ch);
            conv(a)
        })
        .collect())
}

/// An array value: item type, count, items. `depth` is 1 for a top-level array.
fn read_array(c: &mut Cursor<'_>, key: &str, depth: u32) -> Result<Array, GgufError> {
    let at = c.offset();
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::ArrayTooDeep {
            key: key.to_owned(),
            max: MAX_ARRAY_DEPTH,
            offset: at,
        });
    }
    let type_id = c.u32("array item type")?;
    let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_owned(),
        type_id,
        offset: at,
    })?;
    let count_at = c.offset();
    let count = c.u64("array count")?;
    let n = c.check_count(count, ty.min_encoded_len(), "array count", count_at)?;
    Ok(match ty {
        ValueType::U8 => Array::U8(fixed(c, n, "u8 array", u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(fixed(c, n, "i8 array", i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(fixed(c, n, "u16 array", u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(fixed(c, n, "i16 array", i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(fixed(c, n, "u32 array", u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(fixed(c, n, "i32 array", i32::from_le_bytes)?),
        ValueType::U64 => Array::U64(fixed(c, n, "u64 array", u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(fixed(c, n, "i64 array", i64::from_le_bytes)?),
        ValueType::F32 => Array::F32(fixed(c, n, "f32 array", f32::from_le_bytes)?),
        ValueType::F64 => Array::F64(fixed(c, n, "f64 array", f64::from_le_bytes)?),
        ValueType::Bool => {
            let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
            for _ in 0..n {
                v.push(read_bool(c, key)?);
            }
            Array::Bool(v)
        }
        ValueType::String => {
            let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
            for _ in 0..n {
                v.push(c.string("string array item")?);
            }
            Array::String(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
            for _ in 0..n {
                v.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(v)
        }
    })
}
