//! Any byte string: `GgufFile::from_bytes` returns Ok or Err without panicking, and an
//! accepted file keeps every promise of `TensorInfo` (bytes in bounds, dequantizable).
#![no_main]

use airlock_gguf::{GgufFile, Summary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for t in f.tensors() {
        assert_eq!(f.tensor_bytes(t).len() as u64, t.n_bytes());
        // Keep the fuzzer fast: dequantize small tensors only.
        if t.n_elements() <= 1 << 16 {
            let v = f
                .dequantize_tensor(t)
                .expect("validated tensor dequantizes");
            assert_eq!(v.len() as u64, t.n_elements());
        }
    }
    let _ = Summary::new(&f).to_string();
    for (k, _) in f.metadata().iter() {
        let _ = f.metadata().get_u32(k);
        let _ = f.metadata().get_array_str(k);
    }
});
