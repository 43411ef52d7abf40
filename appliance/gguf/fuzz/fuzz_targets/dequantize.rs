//! Any bytes as any supported block type: `dequantize` never panics, and with whole blocks and
//! a matching output it succeeds.
#![no_main]

use airlock_gguf::{GgmlType, dequantize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let ty = GgmlType::ALL[usize::from(sel) % GgmlType::ALL.len()];
    let n = rest.len() / ty.block_bytes() * ty.block_size();
    let mut out = vec![0f32; n];
    let whole = &rest[..rest.len() / ty.block_bytes() * ty.block_bytes()];
    dequantize(ty, whole, &mut out).expect("whole blocks dequantize");
    // A mismatched output length is an error, not a panic.
    let mut short = vec![0f32; n.saturating_sub(1)];
    assert!(n == 0 || dequantize(ty, whole, &mut short).is_err());
});
