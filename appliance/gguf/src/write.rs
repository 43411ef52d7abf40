//! [`GgufWriter`]: builds GGUF v3 (or v2) files in memory, for tests of this and other crates
//! (synthetic models, malformed files).
//!
//! The writer lays a file out exactly as the spec says (GGUF spec, "File Structure"): header,
//! metadata in insertion order, tensor infos in insertion order, padding to the alignment,
//! then each tensor's data at the next aligned offset. [`GgufWriter::to_bytes_with_layout`]
//! also returns where each structural field landed, so tests can corrupt a file precisely.
//!
//! Validation is deliberately light: [`GgufWriter::tensor`] checks that the data length fits
//! the shape (a caller bug otherwise), while [`GgufWriter::raw_tensor`] and
//! [`GgufWriter::raw_metadata`] write whatever they are given, to produce invalid files.

use std::path::Path;

use crate::value::{Array, Value};
use crate::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GgmlType, GgufError, MAGIC};

pub use crate::quantize::quantize;

/// A GGUF file under construction.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, MetaEntry)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
enum MetaEntry {
    Value(Value),
    /// A type id and raw bytes written verbatim after it (malformed-file tests).
    Raw(u32, Vec<u8>),
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    data: Vec<u8>,
}

/// Where each structural field of a written file is (absolute byte offsets).
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Offset of the `u64 tensor_count` field.
    pub tensor_count_at: usize,
    /// Offset of the `u64 metadata_kv_count` field.
    pub kv_count_at: usize,
    /// Per metadata pair, in order.
    pub kvs: Vec<KvLayout>,
    /// Per tensor info, in order.
    pub tensors: Vec<TensorLayout>,
    /// End of the tensor infos (start of the padding).
    pub header_end: usize,
    /// Start of the data section.
    pub data_start: usize,
    /// Total file length.
    pub file_len: usize,
}

/// Offsets of one metadata pair's fields.
#[derive(Debug, Clone)]
pub struct KvLayout {
    pub key: String,
    /// The key's `u64` length field.
    pub key_at: usize,
    /// The `u32` value type.
    pub type_at: usize,
    /// The value itself (for a string: its `u64` length; for an array: its item type).
    pub value_at: usize,
}

/// Offsets of one tensor info's fields and of its data.
#[derive(Debug, Clone)]
pub struct TensorLayout {
    pub name: String,
    /// The name's `u64` length field.
    pub name_at: usize,
    /// The `u32` dimension count.
    pub n_dims_at: usize,
    /// The first `u64` dimension.
    pub dims_at: usize,
    /// The `u32` ggml type.
    pub type_at: usize,
    /// The `u64` relative data offset.
    pub offset_at: usize,
    /// Absolute offset of the tensor's data.
    pub data_at: usize,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file with the default alignment (32).
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version field (any value: 2 and 3 are valid).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Lays data out with `alignment` and records it as `general.alignment` (u32). Only the
    /// layout is affected by a non-power-of-two value, which the reader will reject.
    pub fn alignment(&mut self, alignment: u32) -> &mut Self {
        self.alignment = u64::from(alignment.max(1));
        self.metadata.retain(|(k, _)| k != ALIGNMENT_KEY);
        self.metadata.push((
            ALIGNMENT_KEY.to_owned(),
            MetaEntry::Value(Value::U32(alignment)),
        ));
        self
    }

    /// Adds a metadata pair (duplicates are kept: the reader rejects them).
    pub fn metadata(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.metadata
            .push((key.to_owned(), MetaEntry::Value(value.into())));
        self
    }

    /// Adds a metadata pair with an arbitrary type id and raw value bytes.
    pub fn raw_metadata(&mut self, key: &str, type_id: u32, value_bytes: Vec<u8>) -> &mut Self {
        self.metadata
            .push((key.to_owned(), MetaEntry::Raw(type_id, value_bytes)));
        self
    }

    /// Adds a tensor from raw block bytes; `dims` in GGUF order (`dims[0]` contiguous). The
    /// byte length must be exactly what `dims` and `ty` call for.
    pub fn tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        let n: u64 = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| GgufError::Write {
                reason: format!("tensor {name:?}: dims {dims:?} overflow"),
            })?;
        let want = ty.bytes_for(n);
        if want != Some(data.len() as u64) {
            return Err(GgufError::Write {
                reason: format!(
                    "tensor {name:?}: {} bytes given, {ty} {dims:?} needs {want:?}",
                    data.len()
                ),
            });
        }
        Ok(self.raw_tensor(name, dims, ty.id(), data))
    }

    /// Adds an f32 tensor after quantizing `values` to `ty` with [`quantize`].
    pub fn tensor_from_f32(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        values: &[f32],
    ) -> Result<&mut Self, GgufError> {
        let data = quantize(ty, values)?;
        self.tensor(name, dims, ty, data)
    }

    /// Adds a tensor info and data with no checks at all (any type id, any length).
    pub fn raw_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        type_id: u32,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            type_id,
            data,
        });
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with_layout().0
    }

    /// Writes the file to `path`.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }

    /// The file's bytes and where each field is.
    pub fn to_bytes_with_layout(&self) -> (Vec<u8>, Layout) {
        let mut out = Vec::new();
        let mut layout = Layout::default();
        out.extend_from_slice(&MAGIC);
        put_u32(&mut out, self.version);
        layout.tensor_count_at = out.len();
        put_u64(&mut out, self.tensors.len() as u64);
        layout.kv_count_at = out.len();
        put_u64(&mut out, self.metadata.len() as u64);

        for (key, entry) in &self.metadata {
            let key_at = out.len();
            put_str(&mut out, key);
            let type_at = out.len();
            match entry {
                MetaEntry::Value(v) => {
                    put_u32(&mut out, v.value_type() as u32);
                    let value_at = out.len();
                    put_value(&mut out, v);
                    layout.kvs.push(KvLayout {
                        key: key.clone(),
                        key_at,
                        type_at,
                        value_at,
                    });
                }
                MetaEntry::Raw(id, bytes) => {
                    put_u32(&mut out, *id);
                    let value_at = out.len();
                    out.extend_from_slice(bytes);
                    layout.kvs.push(KvLayout {
                        key: key.clone(),
                        key_at,
                        type_at,
                        value_at,
                    });
                }
            }
        }

        let align = self.alignment as usize;
        let mut rel = 0usize;
        let mut rel_offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let name_at = out.len();
            put_str(&mut out, &t.name);
            let n_dims_at = out.len();
            put_u32(&mut out, t.dims.len() as u32);
            let dims_at = out.len();
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            let type_at = out.len();
            put_u32(&mut out, t.type_id);
            let offset_at = out.len();
            put_u64(&mut out, rel as u64);
            rel_offsets.push(rel);
            layout.tensors.push(TensorLayout {
                name: t.name.clone(),
                name_at,
                n_dims_at,
                dims_at,
                type_at,
                offset_at,
                data_at: 0,
            });
            rel = (rel + t.data.len()).next_multiple_of(align);
        }
        layout.header_end = out.len();
        out.resize(out.len().next_multiple_of(align), 0);
        layout.data_start = out.len();
        for ((t, rel), tl) in self
            .tensors
            .iter()
            .zip(rel_offsets)
            .zip(&mut layout.tensors)
        {
            tl.data_at = layout.data_start + rel;
            out.resize(tl.data_at, 0);
            out.extend_from_slice(&t.data);
        }
        if !self.tensors.is_empty() {
            out.resize(out.len().next_multiple_of(align), 0);
        }
        layout.file_len = out.len();
        (out, layout)
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    put_u32(out, a.item_type() as u32);
    put_u64(out, a.len() as u64);
    fn all<T, const N: usize>(out: &mut Vec<u8>, v: &[T], f: fn(&T) -> [u8; N]) {
        for x in v {
            out.extend_from_slice(&f(x));
        }
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => all(out, v, |x| x.to_le_bytes()),
        Array::U16(v) => all(out, v, |x| x.to_le_bytes()),
        Array::I16(v) => all(out, v, |x| x.to_le_bytes()),
        Array::U32(v) => all(out, v, |x| x.to_le_bytes()),
        Array::I32(v) => all(out, v, |x| x.to_le_bytes()),
        Array::U64(v) => all(out, v, |x| x.to_le_bytes()),
        Array::I64(v) => all(out, v, |x| x.to_le_bytes()),
        Array::F32(v) => all(out, v, |x| x.to_le_bytes()),
        Array::F64(v) => all(out, v, |x| x.to_le_bytes()),
        Array::Bool(v) => all(out, v, |x| [u8::from(*x)]),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value { Value::$v(x) }
        }
        impl From<Vec<$t>> for Value {
            fn from(x: Vec<$t>) -> Value { Value::Array(Array::$v(x)) }
        }
    )*};
}
value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64,
    i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String);

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<Vec<&str>> for Value {
    fn from(v: Vec<&str>) -> Value {
        Value::Array(Array::String(v.into_iter().map(str::to_owned).collect()))
    }
}

impl From<Array> for Value {
    fn from(a: Array) -> Value {
        Value::Array(a)
    }
}
