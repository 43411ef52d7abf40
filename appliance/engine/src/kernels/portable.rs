//! Portable kernels: one block decoded to f32 on the stack with the GGUF reader's reference
//! decoders, then a dot product with eight independent accumulators (which the compiler can
//! vectorize without reassociating a single sum). Used where no SIMD path exists and as the
//! fallback for block types the SIMD code does not specialise.

use airlock_gguf::GgmlType;
use airlock_gguf::blocks::{self, QK, QK_K};

/// Dot product of eight-lane accumulators; `a.len() == b.len()`, a multiple of 8.
#[inline]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] = ca[i].mul_add(cb[i], acc[i]);
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Decodes block `block` (exactly `ty.block_bytes()` bytes) into `out[..ty.block_size()]`.
#[inline]
pub(crate) fn decode_block(ty: GgmlType, block: &[u8], out: &mut [f32; QK_K]) {
    fn arr<const N: usize>(b: &[u8]) -> &[u8; N] {
        // INVARIANT: callers pass `chunks_exact(ty.block_bytes())` pieces.
        b.try_into().unwrap_or(&[0u8; N])
    }
    fn head(out: &mut [f32; QK_K]) -> &mut [f32; QK] {
        // INVARIANT: QK <= QK_K.
        let s: &mut [f32] = &mut out[..QK];
        s.try_into().unwrap_or_else(|_| unreachable!())
    }
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(block.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => out[0] = blocks::decode_f16([block[0], block[1]]),
        GgmlType::BF16 => out[0] = blocks::decode_bf16([block[0], block[1]]),
        GgmlType::Q4_0 => blocks::dequantize_q4_0(arr(block), head(out)),
        GgmlType::Q4_1 => blocks::dequantize_q4_1(arr(block), head(out)),
        GgmlType::Q8_0 => blocks::dequantize_q8_0(arr(block), head(out)),
        GgmlType::Q4_K => blocks::dequantize_q4_k(arr(block), out),
        GgmlType::Q5_K => blocks::dequantize_q5_k(arr(block), out),
        GgmlType::Q6_K => blocks::dequantize_q6_k(arr(block), out),
    }
}

/// Decodes a whole row (`row.len()` = whole blocks) into `out` (its value count).
pub(crate) fn decode_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = blocks::decode_f16([c[0], c[1]]);
            }
        }
        _ => {
            let (bs, bb) = (ty.block_size(), ty.block_bytes());
            let mut buf = [0f32; QK_K];
            for (b, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(bs)) {
                decode_block(ty, b, &mut buf);
                o.copy_from_slice(&buf[..bs]);
            }
        }
    }
}

/// `row · x` for one encoded row; `x.len()` is the row's value count.
pub(crate) fn row_dot(ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            // Decode in chunks of 256 values to keep the stack buffer fixed.
            let esz = ty.block_bytes();
            let mut buf = [0f32; QK_K];
            let mut sum = 0f32;
            for (rc, xc) in row.chunks(QK_K * esz).zip(x.chunks(QK_K)) {
                for (o, c) in buf.iter_mut().zip(rc.chunks_exact(esz)) {
                    *o = match ty {
                        GgmlType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                        GgmlType::F16 => blocks::decode_f16([c[0], c[1]]),
                        _ => blocks::decode_bf16([c[0], c[1]]),
                    };
                }
                sum += dot_f32(&buf[..xc.len()], xc);
            }
            sum
        }
        _ => {
            let (bs, bb) = (ty.block_size(), ty.block_bytes());
            let mut buf = [0f32; QK_K];
            let mut sum = 0f32;
            for (b, xb) in row.chunks_exact(bb).zip(x.chunks_exact(bs)) {
                decode_block(ty, b, &mut buf);
                sum += dot_f32(&buf[..bs], xb);
            }
            sum
        }
    }
}
