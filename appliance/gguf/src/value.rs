//! Metadata values (GGUF spec, "Standardized key-value pairs" / `gguf_metadata_value_type`) and
//! the ordered key → value map with typed getters.
//!
//! Getters return errors that name the key and the expected and actual type, so a caller can
//! use `?` and still tell the operator exactly what is wrong with a model file. Integer getters
//! accept any integer type whose value fits (converters disagree on `u32` vs `i32` vs `u64`
//! for counts); float getters accept `F32` and `F64`.

use std::collections::HashMap;

use crate::GgufError;

/// The value type ids of the GGUF spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type with this id, if the spec defines it.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The smallest number of bytes a value of this type occupies in a file (used to bound
    /// array counts by the bytes left before allocating).
    pub(crate) fn min_encoded_len(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            String => 8,    // u64 length
            Array => 4 + 8, // item type + count
        }
    }

    /// Lower-case name used in error messages (`"u32"`, `"string"`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Array),
}

/// A typed metadata array: all items share one type, stored without per-item tags.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Arrays of arrays (allowed by the spec, bounded in depth by [`crate::MAX_ARRAY_DEPTH`]).
    Array(Vec<Array>),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
        }
    }

    /// A short description of the type for error messages: `"u32"`, `"array of string"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Array(a) => a.type_name(),
            v => v.value_type().name(),
        }
    }

    /// The value as an `i128` if it is any integer type.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl Array {
    /// The item type.
    pub fn item_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F32(_) => ValueType::F32,
            Array::F64(_) => ValueType::F64,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    /// True if the array has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `"array of <item type>"`, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.item_type() {
            ValueType::U8 => "array of u8",
            ValueType::I8 => "array of i8",
            ValueType::U16 => "array of u16",
            ValueType::I16 => "array of i16",
            ValueType::U32 => "array of u32",
            ValueType::I32 => "array of i32",
            ValueType::F32 => "array of f32",
            ValueType::Bool => "array of bool",
            ValueType::String => "array of string",
            ValueType::Array => "array of array",
            ValueType::U64 => "array of u64",
            ValueType::I64 => "array of i64",
            ValueType::F64 => "array of f64",
        }
    }
}

/// Conversion from a borrowed [`Value`] for the typed getters of [`Metadata`].
///
/// Implemented for the integer types (any stored integer type whose value fits), `f32`/`f64`
/// (from `F32` or `F64`), `bool`, `&str` and slices of the stored array item types.
pub trait FromValue<'a>: Sized {
    /// Name of the expected type for error messages.
    const EXPECTED: &'static str;
    /// Converts `value` (stored under `key`, named in errors).
    fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError>;
}

fn wrong_type(key: &str, expected: &'static str, value: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        got: value.type_name(),
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl<'a> FromValue<'a> for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError> {
                let v = value.as_integer().ok_or_else(|| wrong_type(key, Self::EXPECTED, value))?;
                <$t>::try_from(v).map_err(|_| GgufError::OutOfRange {
                    key: key.to_owned(),
                    value: v.to_string(),
                    expected: Self::EXPECTED,
                })
            }
        }
    )*};
}
int_from_value!(u8, i8, u16, i16, u32, i32, u64, i64, usize);

impl<'a> FromValue<'a> for f32 {
    const EXPECTED: &'static str = "f32";
    fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError> {
        match *value {
            Value::F32(v) => Ok(v),
            // f64 → f32 rounds; metadata floats (eps, rope base) are far inside f32's range.
            Value::F64(v) => Ok(v as f32),
            _ => Err(wrong_type(key, Self::EXPECTED, value)),
        }
    }
}

impl<'a> FromValue<'a> for f64 {
    const EXPECTED: &'static str = "f64";
    fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError> {
        match *value {
            Value::F32(v) => Ok(v.into()),
            Value::F64(v) => Ok(v),
            _ => Err(wrong_type(key, Self::EXPECTED, value)),
        }
    }
}

impl<'a> FromValue<'a> for bool {
    const EXPECTED: &'static str = "bool";
    fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError> {
        match *value {
            Value::Bool(v) => Ok(v),
            _ => Err(wrong_type(key, Self::EXPECTED, value)),
        }
    }
}

impl<'a> FromValue<'a> for &'a str {
    const EXPECTED: &'static str = "string";
    fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError> {
        match value {
            Value::String(s) => Ok(s),
            _ => Err(wrong_type(key, Self::EXPECTED, value)),
        }
    }
}

impl<'a> FromValue<'a> for &'a Array {
    const EXPECTED: &'static str = "array";
    fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError> {
        match value {
            Value::Array(a) => Ok(a),
            _ => Err(wrong_type(key, Self::EXPECTED, value)),
        }
    }
}

macro_rules! slice_from_value {
    ($($t:ty => $variant:ident, $name:literal);* $(;)?) => {$(
        impl<'a> FromValue<'a> for &'a [$t] {
            const EXPECTED: &'static str = $name;
            fn from_value(key: &str, value: &'a Value) -> Result<Self, GgufError> {
                match value {
                    Value::Array(Array::$variant(v)) => Ok(v),
                    _ => Err(wrong_type(key, Self::EXPECTED, value)),
                }
            }
        }
    )*};
}
slice_from_value! {
    u8 => U8, "array of u8";
    i8 => I8, "array of i8";
    u16 => U16, "array of u16";
    i16 => I16, "array of i16";
    u32 => U32, "array of u32";
    i32 => I32, "array of i32";
    u64 => U64, "array of u64";
    i64 => I64, "array of i64";
    f32 => F32, "array of f32";
    f64 => F64, "array of f64";
    bool => Bool, "array of bool";
    String => String, "array of string";
}

/// Metadata key → value pairs, in file order, keys unique (enforced at parse time).
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// Inserts a pair; returns `Err(DuplicateKey)` if the key is already present.
    pub(crate) fn insert(&mut self, key: String, value: Value) -> Result<(), GgufError> {
        if self.index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pairs in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index
            .get(key)
            .and_then(|&i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The value of `key` converted to `T`; `MissingKey` if absent, `WrongType`/`OutOfRange`
    /// if it does not convert.
    pub fn get_as<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<T, GgufError> {
        let v = self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_owned(),
        })?;
        T::from_value(key, v)
    }

    /// Like [`Metadata::get_as`] but `Ok(None)` when the key is absent (a present key of the
    /// wrong type is still an error).
    pub fn get_opt<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<Option<T>, GgufError> {
        self.get(key).map(|v| T::from_value(key, v)).transpose()
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_as(key)
    }
    /// Any integer value that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_as(key)
    }
    /// Any integer value that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_as(key)
    }
    /// Any integer value that fits in `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.get_as(key)
    }
    /// Any integer value that fits in `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.get_as(key)
    }
    /// An `F32` (or `F64`, rounded) value.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get_as(key)
    }
    /// A `Bool` value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.get_as(key)
    }
    /// An array of strings.
    pub fn get_array_str(&self, key: &str) -> Result<&[String], GgufError> {
        self.get_as(key)
    }
    /// An array of `i32`.
    pub fn get_array_i32(&self, key: &str) -> Result<&[i32], GgufError> {
        self.get_as(key)
    }
    /// An array of `u32`.
    pub fn get_array_u32(&self, key: &str) -> Result<&[u32], GgufError> {
        self.get_as(key)
    }
    /// An array of `f32`.
    pub fn get_array_f32(&self, key: &str) -> Result<&[f32], GgufError> {
        self.get_as(key)
    }
    /// An array of any item type.
    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        self.get_as(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;

    fn md() -> Metadata {
        let mut m = Metadata::default();
        m.insert("a.u8".into(), Value::U8(7)).unwrap();
        m.insert("a.i32neg".into(), Value::I32(-1)).unwrap();
        m.insert("a.u64big".into(), Value::U64(u64::MAX)).unwrap();
        m.insert("a.s".into(), Value::String("x".into())).unwrap();
        m.insert("a.f64".into(), Value::F64(0.5)).unwrap();
        m.insert(
            "a.toks".into(),
            Value::Array(Array::String(vec!["a".into(), "b".into()])),
        )
        .unwrap();
        m
    }

    #[test]
    fn integer_getters_widen_and_check_range() {
        let m = md();
        assert_eq!(m.get_u32("a.u8").unwrap(), 7);
        assert_eq!(m.get_u64("a.u8").unwrap(), 7);
        assert_eq!(m.get_i64("a.i32neg").unwrap(), -1);
        assert!(matches!(
            m.get_u32("a.i32neg"),
            Err(GgufError::OutOfRange { key, expected: "u32", .. }) if key == "a.i32neg"
        ));
        assert!(matches!(
            m.get_u32("a.u64big"),
            Err(GgufError::OutOfRange { .. })
        ));
        assert_eq!(m.get_u64("a.u64big").unwrap(), u64::MAX);
    }

    #[test]
    fn type_errors_name_key_expected_and_actual() {
        let m = md();
        match m.get_u32("a.s") {
            Err(GgufError::WrongType { key, expected, got }) => {
                assert_eq!((key.as_str(), expected, got), ("a.s", "u32", "string"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match m.get_array_i32("a.toks") {
            Err(GgufError::WrongType { expected, got, .. }) => {
                assert_eq!((expected, got), ("array of i32", "array of string"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(m.get_str("nope"), Err(GgufError::MissingKey { key }) if key == "nope"));
        assert_eq!(m.get_opt::<u32>("nope").unwrap(), None);
        assert!(m.get_opt::<u32>("a.s").is_err());
    }

    #[test]
    fn strings_floats_arrays() {
        let m = md();
        assert_eq!(m.get_str("a.s").unwrap(), "x");
        assert_eq!(m.get_f32("a.f64").unwrap(), 0.5);
        assert_eq!(m.get_array_str("a.toks").unwrap(), ["a", "b"]);
        assert_eq!(m.iter().count(), 6);
        assert_eq!(m.iter().next().map(|(k, _)| k), Some("a.u8"));
    }

    #[test]
    fn duplicate_key_rejected() {
        let mut m = md();
        assert!(matches!(
            m.insert("a.s".into(), Value::Bool(true)),
            Err(GgufError::DuplicateKey { key }) if key == "a.s"
        ));
    }
}
