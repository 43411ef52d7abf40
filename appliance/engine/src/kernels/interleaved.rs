//! [`Interleaved`]: a K-quant matrix's copy with sixteen rows interleaved per super-block, the
//! layout of the AVX-512 kernels in [`super::q4k16`] (Q4_K, Q5_K), [`super::q6k16`] (Q6_K) and
//! [`super::q40x16`] and [`super::q80x16`] (Q4_0 and Q8_0, with 8-bit activations per 32
//! rather than per 256).

use airlock_gguf::GgmlType;

use super::q4k16::{self, Q4KGroups};
use super::q6k16::{self, Q6KGroups};
use super::q8::Q8Row;
use super::q8k::Q8KRow;
use super::q40x16::{self, Q40Groups};
use super::q80x16::{self, Q80Groups};

/// Rows per interleaved group (every layout).
pub const ROWS: usize = q4k16::ROWS;

/// The bytes of a matrix copied [`ROWS`] rows at a time into a group layout: what the three
/// layouts share (their modules say what a group's block holds).
#[derive(Clone)]
pub struct GroupBytes {
    bytes: Vec<u8>,
    per_group: usize,
}

impl std::fmt::Debug for GroupBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupBytes")
            .field("groups", &self.groups())
            .field("bytes_per_group", &self.per_group)
            .finish()
    }
}

impl GroupBytes {
    /// `rows` rows of `blocks` blocks of `src` bytes each (`bytes` row-major, as in the GGUF)
    /// regrouped: every group block of `dst` bytes is filled by `fill(group_block, r, block)`
    /// with each of its rows' source block. `None` unless `rows` is a positive multiple of
    /// [`ROWS`], `blocks` positive and `bytes` exactly the matrix (or `fill` refuses).
    pub fn build(
        bytes: &[u8],
        rows: usize,
        blocks: usize,
        (src, dst): (usize, usize),
        fill: impl Fn(&mut [u8], usize, &[u8]) -> Option<()>,
    ) -> Option<GroupBytes> {
        let row_bytes = blocks * src;
        if rows == 0 || !rows.is_multiple_of(ROWS) || blocks == 0 || bytes.len() != rows * row_bytes
        {
            return None;
        }
        let per_group = blocks * dst;
        let mut out = vec![0u8; rows / ROWS * per_group];
        for (g, group) in out.chunks_exact_mut(per_group).enumerate() {
            for (i, gb) in group.chunks_exact_mut(dst).enumerate() {
                for r in 0..ROWS {
                    let at = (g * ROWS + r) * row_bytes + i * src;
                    fill(gb, r, &bytes[at..at + src])?;
                }
            }
        }
        Some(GroupBytes {
            bytes: out,
            per_group,
        })
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.bytes.len() / self.per_group.max(1)
    }

    /// Group `g`'s bytes.
    pub fn group(&self, g: usize) -> &[u8] {
        &self.bytes[g * self.per_group..(g + 1) * self.per_group]
    }
}

/// A matrix's rows in groups of [`ROWS`], in its type's interleaved layout.
#[derive(Debug, Clone)]
pub enum Interleaved {
    /// Q4_K or Q5_K ([`q4k16`]).
    Q4K(Q4KGroups),
    /// Q6_K ([`q6k16`]).
    Q6K(Q6KGroups),
    /// Q4_0 ([`q40x16`]).
    Q40(Q40Groups),
    /// Q8_0 ([`q80x16`]).
    Q80(Q80Groups),
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
            GgmlType::Q8_0 => Q80Groups::repack(bytes, rows, cols / airlock_gguf::blocks::QK)
                .map(Interleaved::Q80),
            _ => None,
        }
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        match self {
            Interleaved::Q4K(m) => m.groups(),
            Interleaved::Q6K(m) => m.groups(),
            Interleaved::Q40(m) => m.groups(),
            Interleaved::Q80(m) => m.groups(),
        }
    }

    /// Group `g`'s bytes.
    pub fn group(&self, g: usize) -> Group<'_> {
        match self {
            Interleaved::Q4K(m) if m.is_q5() => Group::Q5K(m.group(g)),
            Interleaved::Q4K(m) => Group::Q4K(m.group(g)),
            Interleaved::Q6K(m) => Group::Q6K(m.group(g)),
            Interleaved::Q40(m) => Group::Q40(m.group(g)),
            Interleaved::Q80(m) => Group::Q80(m.group(g)),
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
    /// Q8_0 layout.
    Q80(&'a [u8]),
}

impl Group<'_> {
    /// The group's sixteen rows times `T` activations with the type's AVX-512 kernel
    /// (`None`: lengths disagree, no AVX-512 VNNI, or a Q4_0/Q8_0 group: see
    /// [`Group::dot_tokens_q8`]).
    pub fn dot_tokens<const T: usize>(self, a: &[&Q8KRow; T]) -> Option<[[f32; ROWS]; T]> {
        match self {
            Group::Q4K(g) => q4k16::dot_group_tokens::<T>(g, a, false),
            Group::Q5K(g) => q4k16::dot_group_tokens::<T>(g, a, true),
            Group::Q6K(g) => q6k16::dot_group_tokens::<T>(g, a),
            Group::Q40(_) | Group::Q80(_) => None,
        }
    }

    /// A Q4_0 or Q8_0 group's sixteen rows times `T` activations quantized per 32 (`None` for a
    /// K-quant group, lengths that disagree, or no AVX-512 VNNI).
    pub fn dot_tokens_q8<const T: usize>(self, a: &[&Q8Row; T]) -> Option<[[f32; ROWS]; T]> {
        match self {
            Group::Q40(g) => q40x16::dot_group_tokens::<T>(g, a),
            Group::Q80(g) => q80x16::dot_group_tokens::<T>(g, a),
            Group::Q4K(_) | Group::Q5K(_) | Group::Q6K(_) => None,
        }
    }
}

/// `put(t, r, row r · a[t])` for every token of `a` through a group's kernels: four tokens
/// per pass of the weights (`four`), the last one to three alone (`one`); NaN where a kernel
/// refuses (callers pass agreeing lengths, so it cannot). Both kernels give each token the
/// scalar twin's bits, so how the tokens are grouped changes nothing.
pub fn for_tokens<A>(
    a: &[&A],
    four: impl Fn([&A; 4]) -> Option<[[f32; ROWS]; 4]>,
    one: impl Fn(&A) -> Option<[f32; ROWS]>,
    mut put: impl FnMut(usize, usize, f32),
) {
    let full = a.len() / 4 * 4;
    for t0 in (0..full).step_by(4) {
        let res = four([a[t0], a[t0 + 1], a[t0 + 2], a[t0 + 3]]).unwrap_or([[f32::NAN; ROWS]; 4]);
        for (k, rv) in res.iter().enumerate() {
            for (r, &v) in rv.iter().enumerate() {
                put(t0 + k, r, v);
            }
        }
    }
    for (t, &at) in a.iter().enumerate().skip(full) {
        for (r, &v) in one(at).unwrap_or([f32::NAN; ROWS]).iter().enumerate() {
            put(t, r, v);
        }
    }
}

/// The three tests of a 32-value block layout with 8-bit activations per 32 (`q40x16`,
/// `q80x16`): the scalar twin is the exact product of the dequantized rows, the SIMD kernel is
/// the twin bitwise for one token and four, and repacking refuses what it cannot interleave.
/// `$groups`: the layout's type; `$bytes`: the GGUF block's size; `$dequantize`: its reference
/// decoder. Expanded inside the layout's `tests` module (which has `use super::*`).
#[cfg(test)]
macro_rules! q8_block_layout_tests {
    ($groups:ident, $bytes:ident, $dequantize:path) => {
        use crate::kernels::interleaved::testing::{
            activations, assert_kernel_is_twin, assert_twin_is_exact, random_blocks,
        };

        fn random_rows(rows: usize, blocks: usize, seed: u64) -> Vec<u8> {
            random_blocks(rows, blocks, $bytes, &[0], seed)
        }

        #[test]
        fn twin_matches_the_dequantized_rows() {
            let (rows, blocks) = (32, 5);
            let w = random_rows(rows, blocks, 3);
            let g = $groups::repack(&w, rows, blocks).unwrap();
            let a = Q8Row::quantize(&activations(blocks * QK, 4));
            let got: Vec<_> = (0..g.groups())
                .map(|gi| dot_group(g.group(gi), &a).unwrap())
                .collect();
            assert_twin_is_exact(&got, |r| {
                let row = &w[r * blocks * $bytes..][..blocks * $bytes];
                let mut dq = [0f32; QK];
                let mut want = 0f64;
                for (bi, b) in row.chunks_exact($bytes).enumerate() {
                    $dequantize(b.try_into().unwrap(), &mut dq);
                    let x = &a.qs[bi * QK..];
                    want += dq
                        .iter()
                        .zip(x)
                        .map(|(&d, &q)| f64::from(d) * f64::from(q))
                        .sum::<f64>()
                        * f64::from(a.d[bi]);
                }
                want
            });
        }

        #[test]
        fn simd_kernel_is_the_twin_bitwise_for_any_token_count() {
            let (rows, blocks) = (48, 64);
            let w = random_rows(rows, blocks, 17);
            let g = $groups::repack(&w, rows, blocks).unwrap();
            let acts =
                std::array::from_fn(|t| Q8Row::quantize(&activations(blocks * QK, 300 + t as u32)));
            let groups: Vec<&[u8]> = (0..g.groups()).map(|gi| g.group(gi)).collect();
            assert_kernel_is_twin(
                &groups,
                &acts,
                dot_group,
                |g, a| dot_group_tokens::<1>(g, &[a]).map(|v| v[0]),
                |g, a| dot_group_tokens::<4>(g, &a),
            );
        }

        #[test]
        fn repack_refuses_what_it_cannot_interleave() {
            let w = random_rows(16, 1, 1);
            assert!($groups::repack(&w, 16, 1).is_some());
            assert!($groups::repack(&w[..$bytes * 8], 8, 1).is_none(), "8 rows");
            assert!($groups::repack(&w[1..], 16, 1).is_none(), "short");
            let a = Q8Row::quantize(&activations(2 * QK, 0));
            let g = $groups::repack(&w, 16, 1).unwrap();
            assert!(
                dot_group(g.group(0), &a).is_none(),
                "activation of two blocks"
            );
            assert!(dot_group_tokens::<1>(g.group(0), &[&a]).is_none());
        }
    };
}

#[cfg(test)]
pub(crate) use q8_block_layout_tests;

/// Test data shared by the layouts' tests.
#[cfg(test)]
pub(crate) mod testing {
    use half::f16;

    /// `rows × blocks` random blocks of `bb` bytes whose f16 scales at `scales` (byte offsets
    /// in a block) are set to small finite values (random bits would make infinities).
    pub(crate) fn random_blocks(
        rows: usize,
        blocks: usize,
        bb: usize,
        scales: &[usize],
        seed: u64,
    ) -> Vec<u8> {
        let mut s = seed;
        let mut v = vec![0u8; rows * blocks * bb];
        for b in v.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *b = s as u8;
        }
        for b in v.chunks_exact_mut(bb) {
            for (k, &at) in scales.iter().enumerate() {
                let d = f16::from_f32(0.011 / (k + 1) as f32).to_le_bytes();
                b[at..at + 2].copy_from_slice(&d);
            }
        }
        v
    }

    /// Asserts that the SIMD kernel for one token (`one`) and for four (`four`) give the scalar
    /// twin's (`twin`) outputs bitwise, for every group and each of the four activations.
    pub(crate) fn assert_kernel_is_twin<A>(
        groups: &[&[u8]],
        acts: &[A; 4],
        twin: impl Fn(&[u8], &A) -> Option<[f32; super::ROWS]>,
        one: impl Fn(&[u8], &A) -> Option<[f32; super::ROWS]>,
        four: impl Fn(&[u8], [&A; 4]) -> Option<[[f32; super::ROWS]; 4]>,
    ) {
        if !crate::kernels::Isa::Avx512Vnni.is_supported() {
            eprintln!("skipped: no AVX-512 VNNI on this CPU");
            return;
        }
        for (gi, g) in groups.iter().enumerate() {
            let all = four(g, [&acts[0], &acts[1], &acts[2], &acts[3]]).unwrap();
            for (t, a) in acts.iter().enumerate() {
                let want = twin(g, a).unwrap().map(f32::to_bits);
                let alone = one(g, a).unwrap().map(f32::to_bits);
                assert_eq!(alone, want, "group {gi} token {t} alone");
                assert_eq!(all[t].map(f32::to_bits), want, "group {gi} token {t} of 4");
            }
        }
    }

    /// Asserts that the twin's outputs (`got[g][r]`: row `16g + r`) are the rows' exact
    /// products with the activation (`want(row)`, computed in f64 from the dequantized
    /// blocks), within f32 rounding.
    pub(crate) fn assert_twin_is_exact(got: &[[f32; super::ROWS]], want: impl Fn(usize) -> f64) {
        for (gi, g) in got.iter().enumerate() {
            for (r, &v) in g.iter().enumerate() {
                let w = want(gi * super::ROWS + r);
                assert!(
                    (f64::from(v) - w).abs() < 1e-3 * (1.0 + w.abs()),
                    "row {}: {v} vs {w}",
                    gi * super::ROWS + r
                );
            }
        }
    }

    /// `n` activations in `[-1, 1]`, deterministic per `seed`.
    pub(crate) fn activations(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }
}
