//! Q4_K and Q5_K matrices with sixteen rows interleaved per super-block ([`Q4KGroups`]), multiplied
//! with 8-bit activations ([`Q8KRow`]) sixteen rows at a time: llama.cpp's idea (its CPU
//! backend repacks Q4_K to `block_q4_Kx8` at load and runs `ggml_gemv/gemm_q4_K_8x8_q8_K`)
//! laid out for AVX-512 VNNI.
//!
//! **Why.** Row by row ([`super::kquant`]) a super-block costs ~26 cycles: scales unpacked,
//! four multiply-add chains folded and converted, per row. Interleaved, one 512-bit lane holds
//! one row: `vpdpbusd` multiplies four codes of sixteen rows by one broadcast group of four
//! activations, scales and minimums are applied to sixteen rows per instruction, and the
//! float epilogue runs once per sixteen rows. A loaded weight vector serves every token of a
//! prompt tile, which is where llama.cpp's prompt speed on Q4_K comes from.
//!
//! **Arithmetic** (the definition; [`dot_group`] is its scalar twin and the SIMD kernel is
//! tested bitwise against it). Per row `r`, token `t`, super-block `i`:
//! `S = Σ_s scale_s · Σ_{p∈s} q_p · x_p` and `M = Σ_s min_s · Σ_{p∈s} x_p` over the eight
//! sub-blocks (exact i32: |S| < 2³¹), then
//! `acc = fma(d · d_a, S, acc)`, `acc_m = fma(dmin · d_a, M, acc_m)` in f32, and the result is
//! `acc − acc_m`. The same operations whatever the number of tokens in the call, so the
//! product stays token-invariant. The float order differs from ggml's row-wise
//! `ggml_vec_dot_q4_K_q8_K` (which converts eight partial lanes per block) and matches the
//! shape of its repacked kernels: one conversion per super-block.
//!
//! **Layout** of one group (16 rows) × one super-block, [`group_block_bytes`] bytes:
//! `d` (16 × f16) | `dmin` (16 × f16) | scales (8 sub-blocks × 16 rows, u8) |
//! mins (4 pairs × 16 rows × 2, u8: the two sub-blocks of a pair adjacent, for `vpdpwssd`) |
//! codes: for each 32-byte chunk `j` of the block's `qs` and each 4-byte group `g` in it, the
//! 4 bytes of all sixteen rows (64 bytes: low nibbles are values `64j + 4g ..+4`, high
//! nibbles `64j + 32 + 4g ..+4`). 148 bytes per row and super-block against Q4_K's 144.
//! Q5_K adds, before the codes, its fifth bits: for each 4-byte group `g` of the block's 32
//! `qh` bytes, those bytes of all sixteen rows (bit `2j` of `qh[4g + k]` is the fifth bit of
//! value `64j + 4g + k`, bit `2j + 1` of value `64j + 32 + 4g + k`): 180 bytes per row and
//! super-block against Q5_K's 176. The codes are then `0..=31`; the arithmetic is the same.

use airlock_gguf::blocks::{K_SCALE_SIZE, Q4_K_BYTES, Q5_K_BYTES, QK_K, scale_min_k4};
use half::f16;

use super::interleaved::GroupBytes;
use super::q8k::{BSUMS, Q8KRow};

/// Rows interleaved per group.
pub const ROWS: usize = 16;

const SCALES_AT: usize = 4 * ROWS;
const MINS_AT: usize = SCALES_AT + 8 * ROWS;
/// Q5_K's fifth bits (eight vectors of sixteen rows' 4 bytes).
const QH_AT: usize = MINS_AT + 8 * ROWS;
const QH_BYTES: usize = 8 * 4 * ROWS;

/// Where a group super-block's codes start (after the fifth bits for Q5_K).
const fn codes_at(q5: bool) -> usize {
    if q5 { QH_AT + QH_BYTES } else { QH_AT }
}

/// Bytes of one group's super-block.
pub const fn group_block_bytes(q5: bool) -> usize {
    codes_at(q5) + ROWS * QK_K / 2
}

/// A Q4_K or Q5_K matrix (`rows` a multiple of [`ROWS`]) repacked in groups of sixteen rows.
#[derive(Debug, Clone)]
pub struct Q4KGroups {
    rows: GroupBytes,
    q5: bool,
}

impl Q4KGroups {
    /// Repacks `rows` Q4_K rows of `blocks` super-blocks each (`bytes` row-major, as in the
    /// GGUF). `None` unless `rows` is a positive multiple of [`ROWS`] and `bytes` is exactly
    /// the matrix.
    pub fn repack(bytes: &[u8], rows: usize, blocks: usize) -> Option<Q4KGroups> {
        Q4KGroups::repack_as(bytes, rows, blocks, false)
    }

    /// [`Q4KGroups::repack`] for Q5_K rows.
    pub fn repack_q5(bytes: &[u8], rows: usize, blocks: usize) -> Option<Q4KGroups> {
        Q4KGroups::repack_as(bytes, rows, blocks, true)
    }

    fn repack_as(bytes: &[u8], rows: usize, blocks: usize, q5: bool) -> Option<Q4KGroups> {
        let src = if q5 { Q5_K_BYTES } else { Q4_K_BYTES };
        let fill = |gb: &mut [u8], r: usize, b: &[u8]| {
            gb[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
            gb[2 * ROWS + 2 * r..2 * ROWS + 2 * r + 2].copy_from_slice(&b[2..4]);
            let sc: &[u8; K_SCALE_SIZE] = b[4..4 + K_SCALE_SIZE].try_into().ok()?;
            for s in 0..8 {
                let (scale, min) = scale_min_k4(s, sc);
                gb[SCALES_AT + s * ROWS + r] = scale;
                gb[MINS_AT + (s / 2) * 2 * ROWS + 2 * r + s % 2] = min;
            }
            let mut qs = &b[4 + K_SCALE_SIZE..];
            if q5 {
                let (qh, rest) = qs.split_at(QK_K / 8);
                for q in 0..8 {
                    let to = QH_AT + q * 4 * ROWS + 4 * r;
                    gb[to..to + 4].copy_from_slice(&qh[4 * q..4 * q + 4]);
                }
                qs = rest;
            }
            for j in 0..4 {
                for q in 0..8 {
                    let to = codes_at(q5) + (j * 8 + q) * 4 * ROWS + 4 * r;
                    gb[to..to + 4].copy_from_slice(&qs[32 * j + 4 * q..32 * j + 4 * q + 4]);
                }
            }
            Some(())
        };
        let rows = GroupBytes::build(bytes, rows, blocks, (src, group_block_bytes(q5)), fill)?;
        Some(Q4KGroups { rows, q5 })
    }

    /// True for a Q5_K matrix.
    pub fn is_q5(&self) -> bool {
        self.q5
    }

    /// Number of sixteen-row groups.
    pub fn groups(&self) -> usize {
        self.rows.groups()
    }

    /// Group `g`'s bytes (`blocks` group super-blocks).
    pub fn group(&self, g: usize) -> &[u8] {
        self.rows.group(g)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The sixteen rows of `group` (one [`Q4KGroups::group`], Q5_K if `q5`) times activation `a`:
/// the module's arithmetic in scalar code, the twin the SIMD kernel is tested against. `None`
/// if the lengths disagree.
pub fn dot_group(group: &[u8], a: &Q8KRow, q5: bool) -> Option<[f32; ROWS]> {
    let nb = a.len() / QK_K;
    let gbb = group_block_bytes(q5);
    if !a.is_well_formed() || group.len() != nb * gbb {
        return None;
    }
    let mut acc = [0f32; ROWS];
    let mut acc_m = [0f32; ROWS];
    for (i, gb) in group.chunks_exact(gbb).enumerate() {
        let x = &a.qs[i * QK_K..(i + 1) * QK_K];
        let bs = &a.bsums[i * BSUMS..(i + 1) * BSUMS];
        let da = a.d[i];
        for r in 0..ROWS {
            let (mut s, mut m) = (0i32, 0i32);
            for sub in 0..8 {
                // Sub-block `sub` is the low (even) or high (odd) nibbles of chunk `sub / 2`,
                // with (Q5_K) bit `sub` of the matching `qh` byte above them.
                let (j, high) = (sub / 2, sub % 2 == 1);
                let mut t = 0i32;
                for q in 0..8 {
                    let at = codes_at(q5) + (j * 8 + q) * 4 * ROWS + 4 * r;
                    for k in 0..4 {
                        let byte = gb[at + k];
                        let mut code = if high { byte >> 4 } else { byte & 15 };
                        if q5 {
                            let hb = gb[QH_AT + q * 4 * ROWS + 4 * r + k];
                            code |= ((hb >> sub) & 1) << 4;
                        }
                        let p = 64 * j + 32 * usize::from(high) + 4 * q + k;
                        t += i32::from(code) * i32::from(x[p]);
                    }
                }
                s += i32::from(gb[SCALES_AT + sub * ROWS + r]) * t;
                let min = gb[MINS_AT + (sub / 2) * 2 * ROWS + 2 * r + sub % 2];
                m += i32::from(min) * (i32::from(bs[2 * sub]) + i32::from(bs[2 * sub + 1]));
            }
            let d = f16_at(gb, 2 * r) * da;
            let dmin = f16_at(gb, 2 * ROWS + 2 * r) * da;
            acc[r] = d.mul_add(s as f32, acc[r]);
            acc_m[r] = dmin.mul_add(m as f32, acc_m[r]);
        }
    }
    Some(std::array::from_fn(|r| acc[r] - acc_m[r]))
}

/// `[rows of group] · a[t]` for `T` tokens with AVX-512 VNNI (Q5_K if `q5`): bitwise
/// [`dot_group`] of each token. `None` if the lengths disagree or the CPU lacks the
/// instructions.
#[allow(unsafe_code)]
pub fn dot_group_tokens<const T: usize>(
    group: &[u8],
    a: &[&Q8KRow; T],
    q5: bool,
) -> Option<[[f32; ROWS]; T]> {
    let nb = a.first()?.len() / QK_K;
    if group.len() != nb * group_block_bytes(q5)
        || !a.iter().all(|r| r.len() == nb * QK_K && r.is_well_formed())
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if !super::Isa::Avx512Vnni.is_supported() {
            return None;
        }
        // SAFETY: AVX-512 F/BW/VNNI present (checked); `group` is `nb` group super-blocks of
        // its layout and every activation `nb` well-formed super-blocks (checked): the
        // kernel's contract.
        Some(unsafe {
            if q5 {
                x86::dot_avx512::<T, true>(group, a, nb)
            } else {
                x86::dot_avx512::<T, false>(group, a, nb)
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MINS_AT, QH_AT, ROWS, SCALES_AT, codes_at, group_block_bytes};
    use crate::kernels::q8k::{BSUMS, Q8KRow};
    use airlock_gguf::blocks::QK_K;

    /// # Safety
    /// AVX-512 F/BW/VNNI present; `group` holds `nb` group super-blocks; every `a[t]` holds
    /// `nb` well-formed super-blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
    pub(super) unsafe fn dot_avx512<const T: usize, const Q5: bool>(
        group: &[u8],
        a: &[&Q8KRow; T],
        nb: usize,
    ) -> [[f32; ROWS]; T] {
        let m4 = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); T];
        let mut acc_m = [_mm512_setzero_ps(); T];
        for i in 0..nb {
            // SAFETY: i < nb: group super-block i and super-block i of each activation exist;
            // every offset below stays inside them (layout in the module docs).
            unsafe {
                let gb = group.as_ptr().add(i * group_block_bytes(Q5));
                let dw = _mm512_cvtph_ps(_mm256_loadu_si256(gb.cast()));
                let dmw = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(2 * ROWS).cast()));
                // Minimums: pair p's two sub-blocks as adjacent i16 per row, times the pair's
                // two activation sums (i16 each) broadcast: one `vpdpwssd` per pair.
                let mut m = [_mm512_setzero_si512(); T];
                for p in 0..4 {
                    let mins = _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                        gb.add(MINS_AT + p * 2 * ROWS).cast(),
                    ));
                    for (t, mt) in m.iter_mut().enumerate() {
                        let bs = a[t].bsums.as_ptr().add(i * BSUMS + 4 * p);
                        let s0 = (*bs).wrapping_add(*bs.add(1));
                        let s1 = (*bs.add(2)).wrapping_add(*bs.add(3));
                        let pair = (s0 as u16 as u32 | ((s1 as u16 as u32) << 16)) as i32;
                        *mt = _mm512_dpwssd_epi32(*mt, mins, _mm512_set1_epi32(pair));
                    }
                }
                let mut s = [_mm512_setzero_si512(); T];
                for j in 0..4 {
                    let mut lo = [_mm512_setzero_si512(); T];
                    let mut hi = [_mm512_setzero_si512(); T];
                    for q in 0..8 {
                        let w = _mm512_loadu_si512(
                            gb.add(codes_at(Q5) + (j * 8 + q) * 4 * ROWS).cast(),
                        );
                        let mut wl = _mm512_and_si512(w, m4);
                        let mut wh = _mm512_and_si512(_mm512_srli_epi16::<4>(w), m4);
                        if Q5 {
                            // Bits 2j and 2j + 1 of each qh byte rotated (within its 32-bit
                            // lane) to bit 4 of the same byte, above the nibbles.
                            let qh = _mm512_loadu_si512(gb.add(QH_AT + q * 4 * ROWS).cast());
                            let rot = |b: i32| _mm512_set1_epi32((4 - b).rem_euclid(32));
                            let m16 = _mm512_set1_epi8(0x10);
                            let hl =
                                _mm512_and_si512(_mm512_rolv_epi32(qh, rot(2 * j as i32)), m16);
                            let hh =
                                _mm512_and_si512(_mm512_rolv_epi32(qh, rot(2 * j as i32 + 1)), m16);
                            wl = _mm512_or_si512(wl, hl);
                            wh = _mm512_or_si512(wh, hh);
                        }
                        for t in 0..T {
                            let x = a[t].qs.as_ptr().add(i * QK_K + 64 * j + 4 * q);
                            let xl = _mm512_set1_epi32(x.cast::<i32>().read_unaligned());
                            let xh = _mm512_set1_epi32(x.add(32).cast::<i32>().read_unaligned());
                            lo[t] = _mm512_dpbusd_epi32(lo[t], wl, xl);
                            hi[t] = _mm512_dpbusd_epi32(hi[t], wh, xh);
                        }
                    }
                    let sl = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                        gb.add(SCALES_AT + 2 * j * ROWS).cast(),
                    ));
                    let sh = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                        gb.add(SCALES_AT + (2 * j + 1) * ROWS).cast(),
                    ));
                    for t in 0..T {
                        s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(lo[t], sl));
                        s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(hi[t], sh));
                    }
                }
                for t in 0..T {
                    let da = _mm512_set1_ps(*a[t].d.get_unchecked(i));
                    acc[t] =
                        _mm512_fmadd_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(s[t]), acc[t]);
                    acc_m[t] =
                        _mm512_fmadd_ps(_mm512_mul_ps(dmw, da), _mm512_cvtepi32_ps(m[t]), acc_m[t]);
                }
            }
        }
        let mut out = [[0f32; ROWS]; T];
        for (o, (ac, am)) in out.iter_mut().zip(acc.iter().zip(&acc_m)) {
            // SAFETY: 16 writable f32.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), _mm512_sub_ps(*ac, *am)) };
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
    use airlock_gguf::blocks::{dequantize_q4_k, dequantize_q5_k};

    /// Random Q4_K (Q5_K if `q5`) rows with small finite scales (every scale/min bit pattern
    /// exercised).
    fn random_rows(rows: usize, blocks: usize, seed: u64, q5: bool) -> Vec<u8> {
        let bb = if q5 { Q5_K_BYTES } else { Q4_K_BYTES };
        random_blocks(rows, blocks, bb, &[0, 2], seed)
    }

    #[test]
    fn twin_matches_the_dequantized_rows() {
        for q5 in [false, true] {
            let (rows, blocks) = (32, 3);
            let bb = if q5 { Q5_K_BYTES } else { Q4_K_BYTES };
            let w = random_rows(rows, blocks, 7, q5);
            let g = repack(&w, rows, blocks, q5);
            assert_eq!(g.is_q5(), q5);
            let a = Q8KRow::quantize(&activations(blocks * QK_K, 3));
            let got: Vec<_> = (0..g.groups())
                .map(|gi| dot_group(g.group(gi), &a, q5).unwrap())
                .collect();
            assert_twin_is_exact(&got, |r| {
                let row = &w[r * blocks * bb..][..blocks * bb];
                let mut dq = [0f32; QK_K];
                let mut want = 0f64;
                for (bi, b) in row.chunks_exact(bb).enumerate() {
                    if q5 {
                        dequantize_q5_k(b.try_into().unwrap(), &mut dq);
                    } else {
                        dequantize_q4_k(b.try_into().unwrap(), &mut dq);
                    }
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
    }

    #[test]
    fn simd_kernel_is_the_twin_bitwise_for_any_token_count() {
        for q5 in [false, true] {
            let (rows, blocks) = (48, 8);
            let w = random_rows(rows, blocks, 11, q5);
            let g = repack(&w, rows, blocks, q5);
            let acts = std::array::from_fn(|t| {
                Q8KRow::quantize(&activations(blocks * QK_K, 100 + t as u32))
            });
            let groups: Vec<&[u8]> = (0..g.groups()).map(|gi| g.group(gi)).collect();
            assert_kernel_is_twin(
                &groups,
                &acts,
                |g, a| dot_group(g, a, q5),
                |g, a| dot_group_tokens::<1>(g, &[a], q5).map(|v| v[0]),
                |g, a| dot_group_tokens::<4>(g, &a, q5),
            );
        }
    }

    fn repack(w: &[u8], rows: usize, blocks: usize, q5: bool) -> Q4KGroups {
        if q5 {
            Q4KGroups::repack_q5(w, rows, blocks)
        } else {
            Q4KGroups::repack(w, rows, blocks)
        }
        .unwrap()
    }

    #[test]
    fn repack_refuses_what_it_cannot_interleave() {
        let w = random_rows(16, 1, 1, false);
        assert!(Q4KGroups::repack(&w, 16, 1).is_some());
        assert!(
            Q4KGroups::repack(&w[..Q4_K_BYTES * 8], 8, 1).is_none(),
            "8 rows"
        );
        assert!(Q4KGroups::repack(&w[1..], 16, 1).is_none(), "short");
        let a = Q8KRow::quantize(&activations(2 * QK_K, 0));
        let g = Q4KGroups::repack(&w, 16, 1).unwrap();
        assert!(
            dot_group(g.group(0), &a, false).is_none(),
            "activation of two blocks"
        );
        assert!(dot_group_tokens::<1>(g.group(0), &[&a], false).is_none());
        let one = Q8KRow::quantize(&activations(QK_K, 0));
        assert!(
            dot_group(g.group(0), &one, true).is_none(),
            "a Q4_K group read as Q5_K"
        );
        assert!(
            Q4KGroups::repack_q5(&w, 16, 1).is_none(),
            "Q4_K bytes are not Q5_K rows"
        );
    }
}
