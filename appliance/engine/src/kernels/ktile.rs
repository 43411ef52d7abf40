//! Multi-token K-quant products (prompt processing, batched decode): each weight row is
//! decoded once ([`KRow`]: codes as bytes in value order, per-piece scale vectors, f32 block
//! scales) and then multiplied with every token's [`Q8KRow`], [`TOKENS`] tokens per pass so that
//! a loaded weight vector serves four tokens.
//!
//! Per (row, token) the integer lanes and float operations are those of the one-token kernels
//! (`super::kquant`, twins in `super::q8k`): lane `l` of each super-block's eight i32 lanes sums
//! the products at positions `≡ 4l..4l + 4 (mod 32)` times their sub-block scale (exact, so the
//! grouping of the additions does not matter), then the same conversion, `d_w · d_a`
//! fused-multiply-add, min term and final sum. A token's result is therefore bitwise the same
//! whether it is multiplied alone (decode) or inside a prompt chunk; tests compare them.
//!
//! Decoding runs once per row, shared by all tokens: the codes are unpacked by
//! `super::kquant::block_codes` (the one-token kernels' unpacking helpers, AVX2) or by plain
//! code, the scales by plain code.
//!
//! # Safety contract (every `unsafe fn` here)
//! * The CPU has the instruction sets named in the function's `target_feature`.
//! * `w` was decoded ([`KRow::decode`]) from a row of `a[t].len()` values and every `a[t]` is
//!   well formed; [`super::kmatmul`] checks both.

#![allow(unsafe_code)]

use airlock_gguf::GgmlType;
use airlock_gguf::blocks::{K_SCALE_SIZE, Q6_K_BYTES, QK_K};
use half::f16;

use super::q8k::{BSUMS, Q8KRow, k4_scales_mins};

/// Tokens per pass of the multi-token kernel.
pub(super) const TOKENS: usize = 4;

/// Weight types of the multi-token kernel, as a const parameter (one specialised loop each).
pub(super) const Q4K: u8 = 0;
/// See [`Q4K`].
pub(super) const Q5K: u8 = 1;
/// See [`Q4K`].
pub(super) const Q6K: u8 = 2;

/// One K-quant row decoded for many tokens.
#[derive(Debug, Default)]
pub(super) struct KRow {
    ty: Option<GgmlType>,
    /// Codes in value order (`0..=63`), `cols` bytes.
    codes: Vec<u8>,
    /// Per super-block and 64-code piece `j`: the i16 scale of each code pair (`vpmaddwd`'s
    /// left operand): pair `n` covers codes `64j + 2n, + 1`.
    scales: Vec<[i16; 32]>,
    /// Per super-block: `d_w`.
    d: Vec<f32>,
    /// Per super-block: Q4_K/Q5_K `dmin_w`; unused for Q6_K.
    dmin: Vec<f32>,
    /// Per super-block: Q4_K/Q5_K the eight mins (then zeros); Q6_K the sixteen scales.
    mins: Vec<[i16; 16]>,
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

impl KRow {
    /// Super-blocks in the decoded row.
    pub(super) fn blocks(&self) -> usize {
        self.d.len()
    }

    /// The kind constant ([`Q4K`], [`Q5K`], [`Q6K`]) of the decoded type; `None` before the
    /// first decode.
    pub(super) fn kind(&self) -> Option<u8> {
        match self.ty? {
            GgmlType::Q4_K => Some(Q4K),
            GgmlType::Q5_K => Some(Q5K),
            GgmlType::Q6_K => Some(Q6K),
            _ => None,
        }
    }

    /// Decodes `row` (whole blocks of `ty`, a K-quant), reusing the allocations.
    pub(super) fn decode(&mut self, ty: GgmlType, row: &[u8]) {
        let bb = ty.block_bytes();
        let nb = row.len() / bb;
        self.ty = Some(ty);
        self.codes.resize(nb * QK_K, 0);
        self.scales.resize(nb * 4, [0; 32]);
        self.d.resize(nb, 0.0);
        self.dmin.resize(nb, 0.0);
        self.mins.resize(nb, [0; 16]);
        let simd = super::Isa::Avx2.is_supported();
        for (i, b) in row.chunks_exact(bb).enumerate() {
            let codes = &mut self.codes[i * QK_K..(i + 1) * QK_K];
            let scales = &mut self.scales[i * 4..(i + 1) * 4];
            if simd {
                block_codes(ty, b, codes);
            }
            if ty == GgmlType::Q6_K {
                let (ql, rest) = b.split_at(QK_K / 2);
                let (qh, rest) = rest.split_at(QK_K / 4);
                let sc: [i16; 16] = std::array::from_fn(|k| i16::from(rest[k] as i8));
                if !simd {
                    for j in 0..2 {
                        let (ql, qh) = (&ql[64 * j..64 * j + 64], &qh[32 * j..32 * j + 32]);
                        for p in 0..32 {
                            let h = qh[p];
                            let base = 128 * j + p;
                            codes[base] = (ql[p] & 15) | ((h & 3) << 4);
                            codes[base + 32] = (ql[32 + p] & 15) | (((h >> 2) & 3) << 4);
                            codes[base + 64] = (ql[p] >> 4) | (((h >> 4) & 3) << 4);
                            codes[base + 96] = (ql[32 + p] >> 4) | (((h >> 6) & 3) << 4);
                        }
                    }
                }
                // Piece j covers sub-blocks 4j..4j + 4, eight code pairs each.
                for (j, s) in scales.iter_mut().enumerate() {
                    for (k, part) in s.chunks_exact_mut(8).enumerate() {
                        part.fill(sc[4 * j + k]);
                    }
                }
                self.d[i] = f16_at(b, Q6_K_BYTES - 2);
                self.mins[i] = sc;
            } else {
                let sm = k4_scales_mins(&b[4..4 + K_SCALE_SIZE]);
                if !simd {
                    let (qh, qs) = if ty == GgmlType::Q5_K {
                        b[4 + K_SCALE_SIZE..].split_at(QK_K / 8)
                    } else {
                        (&[][..], &b[4 + K_SCALE_SIZE..])
                    };
                    for j in 0..4 {
                        for p in 0..32 {
                            let q = qs[32 * j + p];
                            let (h0, h1) = match qh.get(p) {
                                Some(&h) => {
                                    (((h >> (2 * j)) & 1) << 4, ((h >> (2 * j + 1)) & 1) << 4)
                                }
                                None => (0, 0),
                            };
                            codes[64 * j + p] = (q & 15) | h0;
                            codes[64 * j + 32 + p] = (q >> 4) | h1;
                        }
                    }
                }
                // Piece j covers sub-blocks 2j and 2j + 1, sixteen code pairs each.
                for (j, s) in scales.iter_mut().enumerate() {
                    let (lo, hi) = s.split_at_mut(16);
                    lo.fill(i16::from(sm[2 * j]));
                    hi.fill(i16::from(sm[2 * j + 1]));
                }
                self.d[i] = f16_at(b, 0);
                self.dmin[i] = f16_at(b, 2);
                let mut mins = [0i16; 16];
                for (m, &v) in mins.iter_mut().zip(&sm[8..]) {
                    *m = i16::from(v);
                }
                self.mins[i] = mins;
            }
        }
    }
}

/// The codes of block `b` (whole, of K-quant `ty`) in value order into `out` (256 bytes) with
/// AVX2; the caller checked the CPU has it.
#[allow(unsafe_code)]
fn block_codes(ty: GgmlType, b: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if b.len() == ty.block_bytes() && out.len() == QK_K {
        use super::kquant::block_codes as bc;
        // SAFETY: AVX2/FMA/F16C present (the caller checked), `b` is one whole block of `ty`
        // and `out` 256 bytes (checked above): the contract of `kquant::block_codes`.
        unsafe {
            match ty {
                GgmlType::Q4_K => bc::<Q4K>(b.as_ptr(), out.as_mut_ptr()),
                GgmlType::Q5_K => bc::<Q5K>(b.as_ptr(), out.as_mut_ptr()),
                _ => bc::<Q6K>(b.as_ptr(), out.as_mut_ptr()),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{dot_avx2, dot_avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BSUMS, KRow, Q4K, Q5K, Q6K, Q8KRow, QK_K};
    use crate::kernels::avx2::hsum;

    macro_rules! krow_kernel {
        ($feat:literal, $name:ident, $sumi:ident) => {
            /// `[w[r] · a[t]]` for `R` rows and `T` tokens: the one-token kernels' results
            /// bitwise (each pair's lanes and float operations are the same; the rows only
            /// share the activation loads).
            ///
            /// # Safety
            /// See the module's contract; every `w[r]` holds a row of kind `K`, all of one
            /// length.
            #[target_feature(enable = $feat)]
            pub(in crate::kernels) unsafe fn $name<const K: u8, const T: usize, const R: usize>(
                w: &[&KRow; R],
                a: &[&Q8KRow; T],
            ) -> [[f32; T]; R] {
                let nb = w[0].blocks();
                let mut acc = [[_mm256_setzero_ps(); T]; R];
                let mut acc_m = [[_mm_setzero_ps(); T]; R];
                let mut summs = [[0f32; T]; R];
                for i in 0..nb {
                    // SAFETY: i < nb: every decoded row holds nb super-blocks (256 codes, four
                    // scale vectors, scalars) and every activation nb super-blocks (256 codes,
                    // 16 sums, a scale) (contract).
                    unsafe {
                        let codes: [*const u8; R] =
                            std::array::from_fn(|r| w[r].codes.as_ptr().add(i * QK_K));
                        let sc: [*const i16; R] =
                            std::array::from_fn(|r| w[r].scales.as_ptr().add(i * 4).cast::<i16>());
                        let sumi: [[__m256i; T]; R] = $sumi::<T, R>(&codes, &sc, a, i);
                        for r in 0..R {
                            let dw = *w[r].d.get_unchecked(i);
                            let mins = w[r].mins.as_ptr().add(i).cast::<__m128i>();
                            for t in 0..T {
                                let da = *a[t].d.get_unchecked(i);
                                let bs =
                                    _mm256_loadu_si256(a[t].bsums.as_ptr().add(i * BSUMS).cast());
                                let mut s = sumi[r][t];
                                if K == Q6K {
                                    let sc16 = _mm256_loadu_si256(mins.cast());
                                    s = _mm256_sub_epi32(
                                        s,
                                        _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc16)),
                                    );
                                } else {
                                    let q8s = _mm_hadd_epi16(
                                        _mm256_castsi256_si128(bs),
                                        _mm256_extracti128_si256::<1>(bs),
                                    );
                                    let prod = _mm_madd_epi16(_mm_loadu_si128(mins), q8s);
                                    let dmin = -da * *w[r].dmin.get_unchecked(i);
                                    if K == Q4K {
                                        acc_m[r][t] = _mm_fmadd_ps(
                                            _mm_set1_ps(dmin),
                                            _mm_cvtepi32_ps(prod),
                                            acc_m[r][t],
                                        );
                                    } else {
                                        let z = _mm_setzero_si128();
                                        let h = _mm_hadd_epi32(_mm_hadd_epi32(prod, z), z);
                                        summs[r][t] =
                                            dmin.mul_add(_mm_cvtsi128_si32(h) as f32, summs[r][t]);
                                    }
                                }
                                acc[r][t] = _mm256_fmadd_ps(
                                    _mm256_set1_ps(da * dw),
                                    _mm256_cvtepi32_ps(s),
                                    acc[r][t],
                                );
                            }
                        }
                    }
                }
                std::array::from_fn(|r| {
                    std::array::from_fn(|t| {
                        // SAFETY: features present (contract).
                        let h = unsafe { hsum(acc[r][t]) };
                        match K {
                            Q4K => {
                                let m = acc_m[r][t];
                                let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
                                h + _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
                            }
                            Q5K => h + summs[r][t],
                            _ => h,
                        }
                    })
                })
            }
        };
    }

    /// The eight i32 lanes of super-block `i` for `R` rows and `T` tokens, 256-bit vectors.
    ///
    /// # Safety
    /// Each `codes[r]` points at 256 codes, each `sc[r]` at 128 i16; every `a[t]` has
    /// super-block `i`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sumi_avx2<const T: usize, const R: usize>(
        codes: &[*const u8; R],
        sc: &[*const i16; R],
        a: &[&Q8KRow; T],
        i: usize,
    ) -> [[__m256i; T]; R] {
        let mut s = [[_mm256_setzero_si256(); T]; R];
        for q in 0..8 {
            // SAFETY: q < 8: 32 codes at 32q, 16 i16 at 16q, 32 activation codes (contract).
            unsafe {
                let wv: [__m256i; R] =
                    std::array::from_fn(|r| _mm256_loadu_si256(codes[r].add(32 * q).cast()));
                let sv: [__m256i; R] =
                    std::array::from_fn(|r| _mm256_loadu_si256(sc[r].add(16 * q).cast()));
                for t in 0..T {
                    let x = _mm256_loadu_si256(a[t].qs.as_ptr().add(i * QK_K + 32 * q).cast());
                    for r in 0..R {
                        s[r][t] = _mm256_add_epi32(
                            s[r][t],
                            _mm256_madd_epi16(sv[r], _mm256_maddubs_epi16(wv[r], x)),
                        );
                    }
                }
            }
        }
        s
    }

    /// [`sumi_avx2`] with 512-bit vectors (64 codes each), halves folded at the end; the scale
    /// multiply and the accumulation are one `vpdpwssd` (exact, as `vpmaddwd` + `vpaddd`).
    ///
    /// # Safety
    /// As [`sumi_avx2`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
    unsafe fn sumi_avx512<const T: usize, const R: usize>(
        codes: &[*const u8; R],
        sc: &[*const i16; R],
        a: &[&Q8KRow; T],
        i: usize,
    ) -> [[__m256i; T]; R] {
        let mut s = [[_mm512_setzero_si512(); T]; R];
        for q in 0..4 {
            // SAFETY: q < 4: 64 codes at 64q, 32 i16 at 32q, 64 activation codes (contract).
            unsafe {
                let wv: [__m512i; R] =
                    std::array::from_fn(|r| _mm512_loadu_si512(codes[r].add(64 * q).cast()));
                let sv: [__m512i; R] =
                    std::array::from_fn(|r| _mm512_loadu_si512(sc[r].add(32 * q).cast()));
                for t in 0..T {
                    let x = _mm512_loadu_si512(a[t].qs.as_ptr().add(i * QK_K + 64 * q).cast());
                    for r in 0..R {
                        s[r][t] =
                            _mm512_dpwssd_epi32(s[r][t], sv[r], _mm512_maddubs_epi16(wv[r], x));
                    }
                }
            }
        }
        std::array::from_fn(|r| {
            std::array::from_fn(|t| {
                _mm256_add_epi32(
                    _mm512_castsi512_si256(s[r][t]),
                    _mm512_extracti64x4_epi64::<1>(s[r][t]),
                )
            })
        })
    }

    krow_kernel!("avx2,fma,f16c", dot_avx2, sumi_avx2);
    krow_kernel!(
        "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni",
        dot_avx512,
        sumi_avx512
    );
}
