//! K-quant matrix products with 8-bit activations ([`Q8KRow`]), as llama.cpp computes them.
//!
//! Every output is one call of the one-token kernel ([`row_dot_q8k`]) on the weight row and the
//! token's quantized activation, whatever the number of tokens in the call: the product is
//! token-invariant by construction (a token's output is bitwise the same alone, in a prompt
//! chunk or beside other sequences), and equal to llama.cpp's `ggml_vec_dot_q*_K_q8_K`, which
//! its CPU backend also calls once per (row, token) for these types.
//!
//! Matrices of different K-quant types share one pass (Q4_K_M files mix Q4_K and Q6_K in the
//! q|k|v and gate|up groups): the activation format does not depend on the weight type.

use airlock_gguf::GgmlType;
use rayon::prelude::*;

use super::Isa;
use super::interleaved::{self, Group, Interleaved};
use super::ktile::{KRow, Q4K, Q5K, Q6K, TOKENS};
use super::q8k::{self, Q8KRow};
use crate::qweight::QWeight;

/// `row · a` for a Q4_K/Q5_K/Q6_K row and 8-bit super-block activations: llama.cpp's result
/// bitwise. `None` for another type, mismatched lengths, or an `isa` this CPU lacks.
#[allow(unsafe_code)]
pub fn row_dot_q8k(isa: Isa, ty: GgmlType, row: &[u8], a: &Q8KRow) -> Option<f32> {
    let nb = a.len() / airlock_gguf::blocks::QK_K;
    if !q8k::supports(ty) || !a.is_well_formed() || row.len() != nb * ty.block_bytes() {
        return None;
    }
    match isa {
        Isa::Portable => Some(q8k::row_dot(ty, row, a)),
        Isa::Avx2 | Isa::Avx512Vnni => {
            #[cfg(target_arch = "x86_64")]
            {
                use super::kquant as k;
                if !isa.is_supported() {
                    return None;
                }
                // SAFETY: the CPU has `isa`'s features (checked above: Avx512Vnni implies
                // AVX-512 F/VL/BW and VNNI), `row` is `nb` whole blocks of `ty` and `a` is `nb`
                // well-formed super-blocks (checked above): the contract of `kquant`.
                Some(unsafe {
                    match (isa, ty) {
                        (Isa::Avx512Vnni, GgmlType::Q4_K) => k::dot_q4_k_avx512(row, a),
                        (Isa::Avx512Vnni, GgmlType::Q5_K) => k::dot_q5_k_avx512(row, a),
                        (Isa::Avx512Vnni, _) => k::dot_q6_k_avx512(row, a),
                        (_, GgmlType::Q4_K) => k::dot_q4_k_avx2(row, a),
                        (_, GgmlType::Q5_K) => k::dot_q5_k_avx2(row, a),
                        _ => k::dot_q6_k_avx2(row, a),
                    }
                })
            }
            #[cfg(not(target_arch = "x86_64"))]
            None
        }
    }
}

/// `[w[r] · a[t]]` for `R` decoded rows of one kind and `T` tokens with `isa`'s multi-token
/// kernel; `None` if the rows differ in kind or length, an activation's length differs from
/// theirs, or `isa` is not supported.
#[allow(unsafe_code)]
fn krow_dots<const T: usize, const R: usize>(
    isa: Isa,
    w: &[&KRow; R],
    a: &[&Q8KRow; T],
) -> Option<[[f32; T]; R]> {
    let n = w[0].blocks() * airlock_gguf::blocks::QK_K;
    let kind = w[0].kind()?;
    if !isa.is_supported()
        || !w
            .iter()
            .all(|r| r.kind() == Some(kind) && r.blocks() == w[0].blocks())
        || !a.iter().all(|r| r.len() == n && r.is_well_formed())
    {
        return None;
    }
    match isa {
        Isa::Portable => None,
        Isa::Avx2 | Isa::Avx512Vnni => {
            #[cfg(target_arch = "x86_64")]
            {
                use super::ktile::{dot_avx2 as d2, dot_avx512 as d5};
                // SAFETY: the CPU has `isa` (checked), every row is decoded of kind `kind` and
                // one length, and every activation is well formed with the rows' length
                // (checked above): the contract of the `ktile` kernels.
                Some(unsafe {
                    match (isa == Isa::Avx512Vnni, kind) {
                        (true, Q4K) => d5::<Q4K, T, R>(w, a),
                        (true, Q5K) => d5::<Q5K, T, R>(w, a),
                        (true, _) => d5::<Q6K, T, R>(w, a),
                        (false, Q4K) => d2::<Q4K, T, R>(w, a),
                        (false, Q5K) => d2::<Q5K, T, R>(w, a),
                        (false, _) => d2::<Q6K, T, R>(w, a),
                    }
                })
            }
            #[cfg(not(target_arch = "x86_64"))]
            None
        }
    }
}

/// `out[t] = row · a[t]` for many tokens through the multi-token kernels (the row decoded once;
/// tokens four at a time): bitwise [`row_dot_q8k`] of each token. `None` for another type,
/// mismatched lengths, or an `isa` this CPU lacks.
pub fn row_dot_q8k_tokens(
    isa: Isa,
    ty: GgmlType,
    row: &[u8],
    a: &[&Q8KRow],
    out: &mut [f32],
) -> Option<()> {
    row_pairs_checked(ty, &[row], a, &[&*out])?;
    let mut dec = KRow::default();
    dec.decode(ty, row);
    tokens_dot(isa, ty, &[row], &[&dec], a, &mut [out])
}

/// As [`row_dot_q8k_tokens`] for two rows of one type at once (the prompt path's pairs: each
/// activation load serves both rows): bitwise [`row_dot_q8k`] of each (row, token).
pub fn row_pair_dot_q8k_tokens(
    isa: Isa,
    ty: GgmlType,
    rows: [&[u8]; 2],
    a: &[&Q8KRow],
    out: [&mut [f32]; 2],
) -> Option<()> {
    let [o0, o1] = out;
    row_pairs_checked(ty, &rows, a, &[&*o0, &*o1])?;
    let (mut d0, mut d1) = (KRow::default(), KRow::default());
    d0.decode(ty, rows[0]);
    d1.decode(ty, rows[1]);
    tokens_dot(isa, ty, &rows, &[&d0, &d1], a, &mut [o0, o1])
}

/// `Some` if every row is whole blocks of K-quant `ty` as long as the activations, and every
/// output holds one value per activation.
fn row_pairs_checked(ty: GgmlType, rows: &[&[u8]], a: &[&Q8KRow], out: &[&[f32]]) -> Option<()> {
    let n = a.first()?.len();
    let ok = out.iter().all(|o| o.len() == a.len())
        && q8k::supports(ty)
        && n.is_multiple_of(airlock_gguf::blocks::QK_K)
        && rows
            .iter()
            .all(|r| r.len() == n / airlock_gguf::blocks::QK_K * ty.block_bytes());
    ok.then_some(())
}

/// [`row_dot_q8k_tokens`] for `R` rows already decoded into `dec` (from `rows`, of type `ty`).
fn tokens_dot<const R: usize>(
    isa: Isa,
    ty: GgmlType,
    rows: &[&[u8]; R],
    dec: &[&KRow; R],
    a: &[&Q8KRow],
    out: &mut [&mut [f32]; R],
) -> Option<()> {
    if isa == Isa::Portable {
        for (row, o) in rows.iter().zip(out.iter_mut()) {
            for (v, act) in o.iter_mut().zip(a) {
                *v = row_dot_q8k(isa, ty, row, act)?;
            }
        }
        return Some(());
    }
    let full = a.len() / TOKENS * TOKENS;
    for g0 in (0..full).step_by(TOKENS) {
        let g: &[&Q8KRow; TOKENS] = a[g0..g0 + TOKENS].try_into().ok()?;
        let res = krow_dots(isa, dec, g)?;
        for (o, r) in out.iter_mut().zip(&res) {
            o[g0..g0 + TOKENS].copy_from_slice(r);
        }
    }
    for t in full..a.len() {
        let res = krow_dots(isa, dec, &[a[t]])?;
        for (o, r) in out.iter_mut().zip(&res) {
            o[t] = r[0];
        }
    }
    Some(())
}

/// Rows of one type multiplied together in the prompt path (each activation load serves them):
/// two gave +12 % prompt speed on the 1B shape, four no more (the per-pair epilogue binds).
const ROW_GROUP: usize = 2;

/// Rows per rayon task: ≈ 64 KiB of weights, a multiple of [`interleaved::ROWS`] (so a task's band
/// holds whole interleaved groups wherever the matrices' rows do).
fn rows_per_task(row_bytes: usize) -> usize {
    (64 * 1024 / row_bytes.max(1)).clamp(interleaved::ROWS, 1024) / interleaved::ROWS
        * interleaved::ROWS
}

/// One matrix of a [`matmul_rows_q8k`] call as the row loop reads it.
struct Mat<'a> {
    bytes: &'a [u8],
    rows: usize,
    row_bytes: usize,
    ty: GgmlType,
    /// Its rows interleaved by sixteen, where this CPU runs that kernel.
    groups: Option<&'a Interleaved>,
}

/// `out[t * Σrows + r] = [W_1; W_2; …][r, :] · q8k(x[t])` for K-quant matrices of equal width
/// (`n` tokens, `x` is `[n, cols]`).
///
/// Rows of a matrix interleaved by sixteen ([`QWeight::interleaved`]) go through
/// the interleaved kernels, sixteen at a time, wherever a task's band holds their whole group; any
/// other row through [`row_dot_q8k`]. Which kernel computes a row depends only on the matrices
/// and the band size, never on the number of tokens: the product stays token-invariant.
///
/// # Panics
/// If a matrix is not a K-quant, the widths differ, or the lengths disagree (caller bugs).
pub(super) fn matmul_rows_q8k(ws: &[&QWeight], x: &[f32], n: usize, out: &mut [f32]) {
    let cols = ws[0].cols();
    let rows: usize = ws.iter().map(|w| w.rows()).sum();
    assert!(
        ws.iter()
            .all(|w| w.cols() == cols && q8k::supports(w.ggml_type())),
        "K-quant matrices of one width"
    );
    assert_eq!(x.len(), n * cols, "activation length");
    assert_eq!(out.len(), n * rows, "output length");
    let isa = Isa::detect();
    let acts: Vec<Q8KRow> = if n == 1 {
        vec![Q8KRow::quantize(x)]
    } else {
        x.par_chunks(cols).map(Q8KRow::quantize).collect()
    };
    // Each matrix's layout, looked up once: `row_of` and `group_at` run per row.
    let mats: Vec<Mat<'_>> = ws
        .iter()
        .map(|w| Mat {
            bytes: w.bytes(),
            rows: w.rows(),
            row_bytes: w.row_bytes(),
            ty: w.ggml_type(),
            groups: w.interleaved().filter(|_| isa == Isa::Avx512Vnni),
        })
        .collect();
    let row_of = |mut r: usize| -> (&[u8], GgmlType) {
        for m in &mats {
            if r < m.rows {
                let at = r * m.row_bytes;
                return (m.bytes.get(at..at + m.row_bytes).unwrap_or_default(), m.ty);
            }
            r -= m.rows;
        }
        (&[], GgmlType::F32)
    };
    // The interleaved group starting at row `r`, if `r` starts one.
    let group_at = |mut r: usize| -> Option<Group<'_>> {
        for m in &mats {
            if r < m.rows {
                return m
                    .groups
                    .filter(|_| r.is_multiple_of(interleaved::ROWS))
                    .map(|g| g.group(r / interleaved::ROWS));
            }
            r -= m.rows;
        }
        None
    };
    let dot = |r: usize, a: &Q8KRow| {
        let (row, ty) = row_of(r);
        // INVARIANT: QWeight rows are `cols` values of their type and every activation was
        // quantized from `cols` values: the kernel cannot refuse.
        row_dot_q8k(isa, ty, row, a).unwrap_or(f32::NAN)
    };
    let chunk = rows_per_task(ws[0].row_bytes());
    if n == 1 {
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
            let mut i = 0;
            while i < o.len() {
                let r = c * chunk + i;
                if let Some(g) = group_at(r).filter(|_| i + interleaved::ROWS <= o.len()) {
                    // INVARIANT: as for `dot`.
                    let res = g
                        .dot_tokens::<1>(&[&acts[0]])
                        .map_or([f32::NAN; interleaved::ROWS], |v| v[0]);
                    o[i..i + interleaved::ROWS].copy_from_slice(&res);
                    i += interleaved::ROWS;
                } else {
                    o[i] = dot(r, &acts[0]);
                    i += 1;
                }
            }
        });
        return;
    }
    // Each task owns a band of `nr` whole rows and writes it token-major (`[n, nr]`) to its
    // piece of `tmp`: each row is decoded once and stays in L1 while every token's activation
    // streams; the bands are then copied into place with contiguous copies.
    let refs: Vec<&Q8KRow> = acts.iter().collect();
    let mut tmp = vec![0f32; rows * n];
    // Rows go up to ROW_GROUP at a time where neighbours share a type (every activation load
    // then serves them all: the prompt path is bound by streaming the activations, 1 MiB per
    // row pass for a 512-token chunk of width 2048).
    tmp.par_chunks_mut(chunk * n).enumerate().for_each_init(
        || {
            (
                std::array::from_fn::<KRow, ROW_GROUP, _>(|_| KRow::default()),
                std::array::from_fn::<Vec<f32>, ROW_GROUP, _>(|_| vec![0f32; n]),
            )
        },
        |(decs, orows), (c, o)| {
            let nr = o.len() / n;
            let mut i = 0;
            while i < nr {
                if let Some(g) = group_at(c * chunk + i).filter(|_| i + interleaved::ROWS <= nr) {
                    interleaved::for_tokens(
                        &refs,
                        |four| g.dot_tokens::<4>(&four),
                        |a| g.dot_tokens::<1>(&[a]).map(|v| v[0]),
                        |t, r, v| o[t * nr + i + r] = v,
                    );
                    i += interleaved::ROWS;
                    continue;
                }
                let (row, ty) = row_of(c * chunk + i);
                // How many rows from i share its type (up to a group).
                let same = (1..ROW_GROUP.min(nr - i))
                    .take_while(|&k| {
                        let r = c * chunk + i + k;
                        row_of(r).1 == ty && group_at(r).is_none()
                    })
                    .count()
                    + 1;
                let group = same;
                let rows: Vec<&[u8]> = (0..group).map(|k| row_of(c * chunk + i + k).0).collect();
                for (d, r) in decs.iter_mut().zip(&rows) {
                    d.decode(ty, r);
                }
                let [d0, d1] = &*decs;
                let [o0, o1] = orows;
                // INVARIANT: as for `dot`: lengths agree, the kernels cannot refuse.
                let ok = if group == 2 {
                    tokens_dot(
                        isa,
                        ty,
                        &[rows[0], rows[1]],
                        &[d0, d1],
                        &refs,
                        &mut [&mut o0[..], &mut o1[..]],
                    )
                } else {
                    tokens_dot(isa, ty, &[row], &[d0], &refs, &mut [&mut o0[..]])
                };
                for (k, orow) in [&*o0, &*o1].into_iter().take(group).enumerate() {
                    for (t, &v) in orow.iter().enumerate() {
                        o[t * nr + i + k] = if ok.is_some() { v } else { f32::NAN };
                    }
                }
                i += group;
            }
        },
    );
    for (c, band) in tmp.chunks(chunk * n).enumerate() {
        let nr = band.len() / n;
        for (t, src) in band.chunks_exact(nr).enumerate() {
            out[t * rows + c * chunk..][..nr].copy_from_slice(src);
        }
    }
}
