//! Q8_0 matrices with sixteen rows interleaved per block of 32 ([`Q80Groups`]), multiplied
//! with 8-bit activations in blocks of 32 ([`Q8Row`]): [`super::q40x16`]'s layout and loop for
//! Q8_0's signed codes (read that module first). Same size as Q8_0 (34 bytes per row and block).
//!
//! **Arithmetic** (the definition; [`dot_group`] is its scalar twin, the SIMD kernel is tested
//! bitwise against it). Per row, token and block: `S = Σ_p q_p · x_p` (exact i32), then
//! `acc = fma(d · d_a, S, acc)`; the result is `acc`. The layout stores each code plus 128
//! (VNNI multiplies unsigned by signed bytes): `Σ (q_p + 128) · x_p − 128 · Σ x_p` is `S`
//! exactly.
//!
//! **Layout** of one group × block, [`GROUP_BLOCK_BYTES`] bytes: `d` (16 × f16) | eight
//! vectors `k < 8` of all sixteen rows' `qs[4k..4k + 4] + 128` (64 bytes each). Blocks follow
//! each other: read front to back.

use airlock_gguf::blocks::{Q8_0_BYTES, QK};
use half::f16;

use super::interleaved::GroupBytes;
use super::q8::Q8Row;

/// Rows interleaved per group.
pub const ROWS: usize = 16;

/// Bytes of one group's block.
pub const GROUP_BLOCK_BYTES: usize = 2 * ROWS + ROWS * QK;

const CODES_AT: usize = 2 * ROWS;

/// A Q8_0 matrix (`rows` a multiple of [`ROWS`]) repacked in groups of sixteen rows.
#[derive(Debug, Clone)]
pub struct Q80Groups(GroupBytes);

impl Q80Groups {
    /// Repacks `rows` Q8_0 rows of `blocks` blocks each (`bytes` row-major, as in the GGUF).
    /// `None` unless `rows` is a positive multiple of [`ROWS`] and `bytes` is the matrix.
    pub fn repack(bytes: &[u8], rows: usize, blocks: usize) -> Option<Q80Groups> {
        let fill = |gb: &mut [u8], r: usize, b: &[u8]| {
            gb[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
            for k in 0..8 {
                let to = CODES_AT + k * 4 * ROWS + 4 * r;
                for j in 0..4 {
                    // The signed code plus 128, as an unsigned byte.
                    gb[to + j] = b[2 + 4 * k + j] ^ 0x80;
                }
            }
            Some(())
        };
        GroupBytes::build(bytes, rows, blocks, (Q8_0_BYTES, GROUP_BLOCK_BYTES), fill).map(Q80Groups)
    }

    /// Number of sixteen-row groups.
    pub fn groups(&self) -> usize {
        self.0.groups()
    }

    /// Group `g`'s bytes (`blocks` group blocks).
    pub fn group(&self, g: usize) -> &[u8] {
        self.0.group(g)
    }
}

/// True if `a` has one scale and one sum per block of its codes.
fn well_formed(a: &Q8Row) -> bool {
    let nb = a.qs.len() / QK;
    a.qs.len().is_multiple_of(QK) && a.d.len() == nb && a.isum.len() == nb
}

/// The sixteen rows of `group` times activation `a`: the module's arithmetic in scalar code.
/// `None` if the lengths disagree.
pub fn dot_group(group: &[u8], a: &Q8Row) -> Option<[f32; ROWS]> {
    let nb = a.len() / QK;
    if !well_formed(a) || group.len() != nb * GROUP_BLOCK_BYTES {
        return None;
    }
    let mut acc = [0f32; ROWS];
    for (i, gb) in group.chunks_exact(GROUP_BLOCK_BYTES).enumerate() {
        let x = &a.qs[i * QK..(i + 1) * QK];
        for (r, acc) in acc.iter_mut().enumerate() {
            let mut s = -128 * a.isum[i];
            for k in 0..8 {
                for j in 0..4 {
                    let byte = gb[CODES_AT + k * 4 * ROWS + 4 * r + j];
                    s += i32::from(byte) * i32::from(x[4 * k + j]);
                }
            }
            let d = f16::from_le_bytes([gb[2 * r], gb[2 * r + 1]]).to_f32() * a.d[i];
            *acc = d.mul_add(s as f32, *acc);
        }
    }
    Some(acc)
}

/// `[rows of group] · a[t]` for `T` tokens with AVX-512 VNNI: bitwise [`dot_group`] of each
/// token. `None` if the lengths disagree or the CPU lacks the instructions.
#[allow(unsafe_code)]
pub fn dot_group_tokens<const T: usize>(group: &[u8], a: &[&Q8Row; T]) -> Option<[[f32; ROWS]; T]> {
    let nb = a.first()?.len() / QK;
    if group.len() != nb * GROUP_BLOCK_BYTES
        || !a.iter().all(|r| r.len() == nb * QK && well_formed(r))
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if !super::Isa::Avx512Vnni.is_supported() {
            return None;
        }
        // SAFETY: AVX-512 F/BW/VNNI present (checked); `group` is `nb` group blocks and every
        // activation `nb` well-formed blocks (checked): the kernel's contract.
        Some(unsafe { x86::dot_avx512::<T>(group, a, nb) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{CODES_AT, GROUP_BLOCK_BYTES, ROWS};
    use crate::kernels::q8::Q8Row;
    use airlock_gguf::blocks::QK;

    /// # Safety
    /// AVX-512 F/BW/VNNI present; `group` holds `nb` group blocks; every `a[t]` holds `nb`
    /// well-formed blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
    pub(super) unsafe fn dot_avx512<const T: usize>(
        group: &[u8],
        a: &[&Q8Row; T],
        nb: usize,
    ) -> [[f32; ROWS]; T] {
        let mut acc = [_mm512_setzero_ps(); T];
        for i in 0..nb {
            // SAFETY: i < nb: group block i and block i of each activation exist; every offset
            // below stays inside them (layout in the module docs).
            unsafe {
                let gb = group.as_ptr().add(i * GROUP_BLOCK_BYTES);
                let dw = _mm512_cvtph_ps(_mm256_loadu_si256(gb.cast()));
                // Even and odd vectors in two chains each, so one token's block is not one
                // chain of eight dependent multiply-adds.
                let mut even = [_mm512_setzero_si512(); T];
                let mut odd = [_mm512_setzero_si512(); T];
                for k in (0..8).step_by(2) {
                    let we = _mm512_loadu_si512(gb.add(CODES_AT + k * 4 * ROWS).cast());
                    let wo = _mm512_loadu_si512(gb.add(CODES_AT + (k + 1) * 4 * ROWS).cast());
                    for t in 0..T {
                        let x = a[t].qs.as_ptr().add(i * QK + 4 * k);
                        let xe = _mm512_set1_epi32(x.cast::<i32>().read_unaligned());
                        let xo = _mm512_set1_epi32(x.add(4).cast::<i32>().read_unaligned());
                        even[t] = _mm512_dpbusd_epi32(even[t], we, xe);
                        odd[t] = _mm512_dpbusd_epi32(odd[t], wo, xo);
                    }
                }
                for t in 0..T {
                    let off = _mm512_set1_epi32(128 * *a[t].isum.get_unchecked(i));
                    let s = _mm512_sub_epi32(_mm512_add_epi32(even[t], odd[t]), off);
                    let da = _mm512_set1_ps(*a[t].d.get_unchecked(i));
                    acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(s), acc[t]);
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
    crate::kernels::interleaved::q8_block_layout_tests!(
        Q80Groups,
        Q8_0_BYTES,
        airlock_gguf::blocks::dequantize_q8_0
    );
}
