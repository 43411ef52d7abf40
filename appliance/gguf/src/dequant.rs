//! Dequantization of whole buffers (a row, several rows or a tensor) into f32.

use crate::blocks::{self, QK, QK_K};
use crate::{GgmlType, GgufError};

/// Decodes `bytes` (whole blocks of `ty`) into `out`, which must hold exactly the number of
/// values those blocks encode. Any mismatch is a [`GgufError::DequantizeSize`]; nothing is
/// written then.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    let (bb, bs) = (ty.block_bytes(), ty.block_size());
    let n_blocks = bytes.len() / bb;
    if !bytes.len().is_multiple_of(bb) || n_blocks.checked_mul(bs) != Some(out.len()) {
        return Err(GgufError::DequantizeSize {
            ty: ty.name(),
            n_bytes: bytes.len(),
            n_out: out.len(),
            block_bytes: bb,
            block_size: bs,
        });
    }
    match ty {
        GgmlType::F32 => each::<4, 1>(bytes, out, |b, o| o[0] = f32::from_le_bytes(*b)),
        GgmlType::F16 => each::<2, 1>(bytes, out, |b, o| o[0] = blocks::decode_f16(*b)),
        GgmlType::BF16 => each::<2, 1>(bytes, out, |b, o| o[0] = blocks::decode_bf16(*b)),
        GgmlType::Q4_0 => each::<{ blocks::Q4_0_BYTES }, QK>(bytes, out, blocks::dequantize_q4_0),
        GgmlType::Q4_1 => each::<{ blocks::Q4_1_BYTES }, QK>(bytes, out, blocks::dequantize_q4_1),
        GgmlType::Q8_0 => each::<{ blocks::Q8_0_BYTES }, QK>(bytes, out, blocks::dequantize_q8_0),
        GgmlType::Q4_K => each::<{ blocks::Q4_K_BYTES }, QK_K>(bytes, out, blocks::dequantize_q4_k),
        GgmlType::Q5_K => each::<{ blocks::Q5_K_BYTES }, QK_K>(bytes, out, blocks::dequantize_q5_k),
        GgmlType::Q6_K => each::<{ blocks::Q6_K_BYTES }, QK_K>(bytes, out, blocks::dequantize_q6_k),
    }
    Ok(())
}

/// Applies a one-block decoder to every block (sizes were checked by the caller).
fn each<const B: usize, const N: usize>(
    bytes: &[u8],
    out: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; N]),
) {
    let (blocks, _) = bytes.as_chunks::<B>();
    let (outs, _) = out.as_chunks_mut::<N>();
    for (b, o) in blocks.iter().zip(outs) {
        f(b, o);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;

    #[test]
    fn size_mismatch_is_an_error() {
        let mut out = [0f32; 32];
        assert!(matches!(
            dequantize(GgmlType::Q4_1, &[0u8; 19], &mut out),
            Err(GgufError::DequantizeSize { ty: "Q4_1", .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q4_1, &[0u8; 40], &mut out),
            Err(GgufError::DequantizeSize { .. })
        ));
        dequantize(GgmlType::Q4_1, &[0u8; 20], &mut out).unwrap();
    }

    #[test]
    fn floats_decode() {
        let mut out = [0f32; 2];
        let mut b = Vec::new();
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&(-2.0f32).to_le_bytes());
        dequantize(GgmlType::F32, &b, &mut out).unwrap();
        assert_eq!(out, [1.5, -2.0]);
        // f16 1.0 = 0x3c00, bf16 1.0 = 0x3f80
        dequantize(GgmlType::F16, &[0x00, 0x3c, 0x00, 0xc0], &mut out).unwrap();
        assert_eq!(out, [1.0, -2.0]);
        dequantize(GgmlType::BF16, &[0x80, 0x3f, 0x00, 0xc0], &mut out).unwrap();
        assert_eq!(out, [1.0, -2.0]);
    }
}
