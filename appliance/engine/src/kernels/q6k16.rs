//! Q6_K matrices with sixteen rows interleaved per super-block ([`Q6KGroups`]): the Q6_K
//! counterpart of [`super::q4k16`] (read that module first), same size as Q6_K (210 bytes per
//! row and super-block).
//!
//! **Arithmetic** (the definition; [`dot_group`] is its scalar twin, the SIMD kernel is tested
//! bitwise against it). Per row, token and super-block, with `q_p` the unsigned 6-bit codes
//! (`0..=63`, the value being `q_p − 32`) and `sc_s` the signed scale of the sixteen values of
//! sub-block `s`: `S = Σ_s sc_s · Σ_{p∈s} q_p · x_p` and `M = Σ_s sc_s · Σ_{p∈s} x_p` (exact
//! i32), then `acc = fma(d · d_a, S − 32·M, acc)`; the result is `acc`. One conversion per
//! super-block, as in `q4k16` (ggml's row-wise `ggml_vec_dot_q6_K_q8_K` converts eight partial
//! lanes instead).
//!
//! **Layout** of one group × super-block, [`GROUP_BLOCK_BYTES`] bytes: `d` (16 × f16) |
//! scales (8 pairs of sub-blocks × 16 rows × 2, i8: a pair adjacent for `vpdpwssd`) | sixteen
//! steps in the order the kernel reads them, step `(n, h, k)` (half `n` of the block, `h` the
//! first or second sixteen of each 32 values, `k < 4`; `l = 16h + 4k`) holding three 64-byte
//! vectors of all sixteen rows' 4 bytes: `ql[64n + l..]`, `ql[64n + 32 + l..]`,
//! `qh[32n + l..]`. Read strictly front to back, so a decode step streams the copy as the
//! hardware prefetchers expect (an earlier layout that kept `ql` and `qh` apart made the
//! kernel jump within each block and decode at ~70 % of the row-wise kernel's bandwidth).

use airlock_gguf::blocks::{Q6_K_BYTES, QK_K};
use half::f16;

use super::interleaved::GroupBytes;
use super::q8k::{BSUMS, Q8KRow};

/// Rows interleaved per group.
pub const ROWS: usize = 16;

/// Bytes of one group's super-block.
pub const GROUP_BLOCK_BYTES: usize = 2 * ROWS + 16 * ROWS + 16 * 3 * 4 * ROWS;

const SCALES_AT: usize = 2 * ROWS;
const STEPS_AT: usize = SCALES_AT + 16 * ROWS;
/// Bytes of one step: three vectors of sixteen rows' 4 bytes.
const STEP: usize = 3 * 4 * ROWS;

/// Offset of step `(n, h, k)` in a group super-block.
const fn step_at(n: usize, h: usize, k: usize) -> usize {
    STEPS_AT + ((n * 2 + h) * 4 + k) * STEP
}

/// A Q6_K matrix (`rows` a multiple of [`ROWS`]) repacked in groups of sixteen rows.
#[derive(Debug, Clone)]
pub struct Q6KGroups(GroupBytes);

impl Q6KGroups {
    /// Repacks `rows` Q6_K rows of `blocks` super-blocks each (`bytes` row-major, as in the
    /// GGUF). `None` unless `rows` is a positive multiple of [`ROWS`] and `bytes` is exactly
    /// the matrix.
    pub fn repack(bytes: &[u8], rows: usize, blocks: usize) -> Option<Q6KGroups> {
        let fill = |gb: &mut [u8], r: usize, b: &[u8]| {
            gb[2 * r..2 * r + 2].copy_from_slice(&b[Q6_K_BYTES - 2..]);
            for s in 0..16 {
                gb[SCALES_AT + (s / 2) * 2 * ROWS + 2 * r + s % 2] = b[192 + s];
            }
            for (n, h, k) in steps() {
                let l = 16 * h + 4 * k;
                let at = step_at(n, h, k) + 4 * r;
                for (v, from) in [64 * n + l, 64 * n + 32 + l, 128 + 32 * n + l]
                    .into_iter()
                    .enumerate()
                {
                    let to = at + v * 4 * ROWS;
                    gb[to..to + 4].copy_from_slice(&b[from..from + 4]);
                }
            }
            Some(())
        };
        GroupBytes::build(bytes, rows, blocks, (Q6_K_BYTES, GROUP_BLOCK_BYTES), fill).map(Q6KGroups)
    }

    /// Number of sixteen-row groups.
    pub fn groups(&self) -> usize {
        self.0.groups()
    }

    /// Group `g`'s bytes (`blocks` group super-blocks).
    pub fn group(&self, g: usize) -> &[u8] {
        self.0.group(g)
    }
}

/// Every step `(n, h, k)` in layout order.
fn steps() -> impl Iterator<Item = (usize, usize, usize)> {
    (0..2).flat_map(|n| (0..2).flat_map(move |h| (0..4).map(move |k| (n, h, k))))
}

/// The code (`0..=63`) of row `r` at position `p` of a group super-block.
fn code(gb: &[u8], r: usize, p: usize) -> u8 {
    // ggml's Q6_K order: half n (128 values) takes ql[64n..64n + 64] and qh[32n..32n + 32];
    // value 128n + 32m + l (m < 4, l < 32) is the low (m < 2) or high nibble of
    // ql[64n + 32(m % 2) + l] with bits 2m, 2m + 1 of qh[32n + l] above it.
    let (n, m, l) = (p / 128, (p % 128) / 32, p % 32);
    let at = step_at(n, l / 16, (l % 16) / 4) + 4 * r + l % 4;
    let ql = gb[at + (m % 2) * 4 * ROWS];
    let qh = gb[at + 2 * 4 * ROWS];
    let low = if m < 2 { ql & 15 } else { ql >> 4 };
    low | (((qh >> (2 * m)) & 3) << 4)
}

/// The sixteen rows of `group` (one [`Q6KGroups::group`]) times activation `a`: the module's
/// arithmetic in scalar code. `None` if the lengths disagree.
pub fn dot_group(group: &[u8], a: &Q8KRow) -> Option<[f32; ROWS]> {
    let nb = a.len() / QK_K;
    if !a.is_well_formed() || group.len() != nb * GROUP_BLOCK_BYTES {
        return None;
    }
    let mut acc = [0f32; ROWS];
    for (i, gb) in group.chunks_exact(GROUP_BLOCK_BYTES).enumerate() {
        let x = &a.qs[i * QK_K..(i + 1) * QK_K];
        let bs = &a.bsums[i * BSUMS..(i + 1) * BSUMS];
        for (r, acc) in acc.iter_mut().enumerate() {
            let (mut s, mut m) = (0i32, 0i32);
            for (sub, &bsum) in bs.iter().enumerate() {
                let sc = i32::from(gb[SCALES_AT + (sub / 2) * 2 * ROWS + 2 * r + sub % 2] as i8);
                let t: i32 = (16 * sub..16 * sub + 16)
                    .map(|p| i32::from(code(gb, r, p)) * i32::from(x[p]))
                    .sum();
                s += sc * t;
                m += sc * i32::from(bsum);
            }
            let d = f16::from_le_bytes([gb[2 * r], gb[2 * r + 1]]).to_f32() * a.d[i];
            *acc = d.mul_add((s - 32 * m) as f32, *acc);
        }
    }
    Some(acc)
}

/// `[rows of group] · a[t]` for `T` tokens with AVX-512 VNNI: bitwise [`dot_group`] of each
/// token. `None` if the lengths disagree or the CPU lacks the instructions.
#[allow(unsafe_code)]
pub fn dot_group_tokens<const T: usize>(
    group: &[u8],
    a: &[&Q8KRow; T],
) -> Option<[[f32; ROWS]; T]> {
    let nb = a.first()?.len() / QK_K;
    if group.len() != nb * GROUP_BLOCK_BYTES
        || !a.iter().all(|r| r.len() == nb * QK_K && r.is_well_formed())
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if !super::Isa::Avx512Vnni.is_supported() {
            return None;
        }
        // SAFETY: AVX-512 F/BW/VNNI present (checked); `group` is `nb` group super-blocks and
        // every activation `nb` well-formed super-blocks (checked): the kernel's contract.
        Some(unsafe { x86::dot_avx512::<T>(group, a, nb) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP_BLOCK_BYTES, ROWS, SCALES_AT, step_at};
    use crate::kernels::q8k::{BSUMS, Q8KRow};
    use airlock_gguf::blocks::QK_K;

    /// # Safety
    /// AVX-512 F/BW/VNNI present; `group` holds `nb` group super-blocks; every `a[t]` holds
    /// `nb` well-formed super-blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
    pub(super) unsafe fn dot_avx512<const T: usize>(
        group: &[u8],
        a: &[&Q8KRow; T],
        nb: usize,
    ) -> [[f32; ROWS]; T] {
        let m0f = _mm512_set1_epi8(0x0f);
        let m30 = _mm512_set1_epi8(0x30);
        let mut acc = [_mm512_setzero_ps(); T];
        for i in 0..nb {
            // SAFETY: i < nb: group super-block i and super-block i of each activation exist;
            // every offset below stays inside them (layout in the module docs).
            unsafe {
                let gb = group.as_ptr().add(i * GROUP_BLOCK_BYTES);
                let dw = _mm512_cvtph_ps(_mm256_loadu_si256(gb.cast()));
                // Scales: pair k's two sub-blocks as adjacent i16 per row. `M` (scales times
                // the activation's sums) by one `vpdpwssd` per pair.
                let pair = |k: usize| {
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                        gb.add(SCALES_AT + k * 2 * ROWS).cast(),
                    ))
                };
                let mut m = [_mm512_setzero_si512(); T];
                for k in 0..8 {
                    let p = pair(k);
                    for (t, mt) in m.iter_mut().enumerate() {
                        let bs = a[t].bsums.as_ptr().add(i * BSUMS + 2 * k);
                        let b = (*bs as u16 as u32 | ((*bs.add(1) as u16 as u32) << 16)) as i32;
                        *mt = _mm512_dpwssd_epi32(*mt, p, _mm512_set1_epi32(b));
                    }
                }
                let mut s = [_mm512_setzero_si512(); T];
                // Half n of the block, first or second sixteen (h) of each 32: the four
                // sub-blocks 8n + 2m + h (m < 4) share their `ql`/`qh` loads. Few enough
                // accumulators (4 per token) to stay in registers at four tokens.
                for n in 0..2 {
                    for h in 0..2 {
                        let mut sub = [[_mm512_setzero_si512(); 4]; T];
                        for l4 in 0..4 {
                            let l = 16 * h + 4 * l4;
                            let at = gb.add(step_at(n, h, l4));
                            let ql_a = _mm512_loadu_si512(at.cast());
                            let ql_b = _mm512_loadu_si512(at.add(4 * ROWS).cast());
                            let qh = _mm512_loadu_si512(at.add(8 * ROWS).cast());
                            // Codes of values 128n + 32m + l ..+4: nibble | qh bits 2m, 2m + 1.
                            let w = [
                                _mm512_ternarylogic_epi32::<0xF8>(
                                    _mm512_and_si512(_mm512_slli_epi16::<4>(qh), m30),
                                    ql_a,
                                    m0f,
                                ),
                                _mm512_ternarylogic_epi32::<0xF8>(
                                    _mm512_and_si512(_mm512_slli_epi16::<2>(qh), m30),
                                    ql_b,
                                    m0f,
                                ),
                                _mm512_ternarylogic_epi32::<0xF8>(
                                    _mm512_and_si512(qh, m30),
                                    _mm512_srli_epi16::<4>(ql_a),
                                    m0f,
                                ),
                                _mm512_ternarylogic_epi32::<0xF8>(
                                    _mm512_and_si512(_mm512_srli_epi16::<2>(qh), m30),
                                    _mm512_srli_epi16::<4>(ql_b),
                                    m0f,
                                ),
                            ];
                            for t in 0..T {
                                let x = a[t].qs.as_ptr().add(i * QK_K + 128 * n + l);
                                for (mq, wq) in w.iter().enumerate() {
                                    let xb = _mm512_set1_epi32(
                                        x.add(32 * mq).cast::<i32>().read_unaligned(),
                                    );
                                    sub[t][mq] = _mm512_dpbusd_epi32(sub[t][mq], *wq, xb);
                                }
                            }
                        }
                        for mq in 0..4 {
                            // Sub-block 8n + 2mq + h: pair 4n + mq, low (h = 0) or high i16.
                            let p = pair(4 * n + mq);
                            let sc = if h == 0 {
                                _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(p))
                            } else {
                                _mm512_srai_epi32::<16>(p)
                            };
                            for (st, subt) in s.iter_mut().zip(&sub) {
                                *st = _mm512_add_epi32(*st, _mm512_mullo_epi32(subt[mq], sc));
                            }
                        }
                    }
                }
                for t in 0..T {
                    let da = _mm512_set1_ps(*a[t].d.get_unchecked(i));
                    let tot = _mm512_sub_epi32(s[t], _mm512_slli_epi32::<5>(m[t]));
                    acc[t] =
                        _mm512_fmadd_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(tot), acc[t]);
                }
            }
        }
        let mut out = [[0f32; ROWS]; T];
        for (o, ac) in out.iter_mut().zip(&acc) {
            // SAFETY: 16 writable f32.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *ac) };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::interleaved::testing::{
        activations, assert_kernel_is_twin, assert_twin_is_exact, random_blocks,
    };
    use airlock_gguf::blocks::dequantize_q6_k;

    fn random_rows(rows: usize, blocks: usize, seed: u64) -> Vec<u8> {
        random_blocks(rows, blocks, Q6_K_BYTES, &[Q6_K_BYTES - 2], seed)
    }

    #[test]
    fn twin_matches_the_dequantized_rows() {
        let (rows, blocks) = (32, 3);
        let w = random_rows(rows, blocks, 5);
        let g = Q6KGroups::repack(&w, rows, blocks).unwrap();
        let a = Q8KRow::quantize(&activations(blocks * QK_K, 9));
        let got: Vec<_> = (0..g.groups())
            .map(|gi| dot_group(g.group(gi), &a).unwrap())
            .collect();
        assert_twin_is_exact(&got, |r| {
            let row = &w[r * blocks * Q6_K_BYTES..][..blocks * Q6_K_BYTES];
            let mut dq = [0f32; QK_K];
            let mut want = 0f64;
            for (bi, b) in row.chunks_exact(Q6_K_BYTES).enumerate() {
                dequantize_q6_k(b.try_into().unwrap(), &mut dq);
                let x = &a.qs[bi * QK_K..];
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
        let (rows, blocks) = (48, 8);
        let w = random_rows(rows, blocks, 13);
        let g = Q6KGroups::repack(&w, rows, blocks).unwrap();
        let acts =
            std::array::from_fn(|t| Q8KRow::quantize(&activations(blocks * QK_K, 200 + t as u32)));
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
        assert!(Q6KGroups::repack(&w, 16, 1).is_some());
        assert!(
            Q6KGroups::repack(&w[..Q6_K_BYTES * 8], 8, 1).is_none(),
            "8 rows"
        );
        assert!(Q6KGroups::repack(&w[1..], 16, 1).is_none(), "short");
        let a = Q8KRow::quantize(&activations(2 * QK_K, 0));
        let g = Q6KGroups::repack(&w, 16, 1).unwrap();
        assert!(
            dot_group(g.group(0), &a).is_none(),
            "activation of two blocks"
        );
        assert!(dot_group_tokens::<1>(g.group(0), &[&a]).is_none());
    }
}
