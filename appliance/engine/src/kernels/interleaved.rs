//! [`Interleaved`]: a K-quant matrix's copy with sixteen rows interleaved per super-block, the
//! layout of the AVX-512 kernels in [`super::q4k16`] (Q4_K, Q5_K), [`super::q6k16`] (Q6_K) and
//! [`super::q40x16`] (Q4_0, with 8-bit activations per 32 rather than per 256).

use airlock_gguf::GgmlType;

use super::q4k16::{self, Q4KGroups};
use super::q6k16::{self, Q6KGroups};
use super::q8::Q8Row;
use super::q8k::Q8KRow;
use super::q40x16::{self, Q40Groups};

/// Rows per interleaved group (both layouts).
pub const ROWS: usize = q4k16::ROWS;

/// A matrix's rows in groups of [`ROWS`], in its type's interleaved layout.
#[derive(Debug, Clone)]
pub enum Interleaved {
    /// Q4_K or Q5_K ([`q4k16`]).
    Q4K(Q4KGroups),
    /// Q6_K ([`q6k16`]).
    Q6K(Q6KGroups),
    /// Q4_0 ([`q40x16`]).
    Q40(Q40Groups),
}

impl Interleaved {
    /// The copy of `rows` rows of `ty` (`bytes` row-major as in the GGUF, `cols` values each),
    /// or `None` for a type without an interleaved kernel or rows not a multiple of [`ROWS`].
    pub fn repack(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Option<Interleaved> {
        let blocks = cols / airlock_gguf::blocks::QK_K;
        match ty {
            GgmlType::Q4_K => Q4KGroups::repack(bytes, rows, blocks).map(Interleaved::Q4K),
            GgmlType::Q5_K => Q4KGroups::repack_q5(bytes, rows, blocks).map(Interleaved::Q4K),
            GgmlType::Q6_K => Q6KGroups::repack(bytes, rows, blocks).map(Interleaved::Q6K),
            GgmlType::Q4_0 => Q40Groups::repack(bytes, rows, cols / airlock_gguf::blocks::QK)
                .map(Interleaved::Q40),
            _ => None,
        }
    }

    /// Group `g`'s bytes.
    pub fn group(&self, g: usize) -> Group<'_> {
        match self {
            Interleaved::Q4K(m) if m.is_q5() => Group::Q5K(m.group(g)),
            Interleaved::Q4K(m) => Group::Q4K(m.group(g)),
            Interleaved::Q6K(m) => Group::Q6K(m.group(g)),
            Interleaved::Q40(m) => Group::Q40(m.group(g)),
        }
    }
}

/// One group of an [`Interleaved`] matrix.
#[derive(Debug, Clone, Copy)]
pub enum Group<'a> {
    /// Q4_K layout.
    Q4K(&'a [u8]),
    /// Q5_K layout (Q4_K's with the fifth bits).
    Q5K(&'a [u8]),
    /// Q6_K layout.
    Q6K(&'a [u8]),
    /// Q4_0 layout.
    Q40(&'a [u8]),
}

impl Group<'_> {
    /// The group's sixteen rows times `T` activations with the type's AVX-512 kernel
    /// (`None`: lengths disagree, no AVX-512 VNNI, or a Q4_0 group: see
    /// [`Group::dot_tokens_q8`]).
    pub fn dot_tokens<const T: usize>(self, a: &[&Q8KRow; T]) -> Option<[[f32; ROWS]; T]> {
        match self {
            Group::Q4K(g) => q4k16::dot_group_tokens::<T>(g, a, false),
            Group::Q5K(g) => q4k16::dot_group_tokens::<T>(g, a, true),
            Group::Q6K(g) => q6k16::dot_group_tokens::<T>(g, a),
            Group::Q40(_) => None,
        }
    }

    /// A Q4_0 group's sixteen rows times `T` activations quantized per 32 (`None` for a
    /// K-quant group, lengths that disagree, or no AVX-512 VNNI).
    pub fn dot_tokens_q8<const T: usize>(self, a: &[&Q8Row; T]) -> Option<[[f32; ROWS]; T]> {
        match self {
            Group::Q40(g) => q40x16::dot_group_tokens::<T>(g, a),
            Group::Q4K(_) | Group::Q5K(_) | Group::Q6K(_) => None,
        }
    }
}
