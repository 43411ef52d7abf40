//! Random damage to a valid file must give `Ok` or `Err`, never a panic, hang or huge
//! allocation; and whatever opens must be fully usable (every tensor's bytes readable and
//! dequantizable). Complements the cargo-fuzz target in `fuzz/`.

use airlock_gguf::GgufFile;
use proptest::prelude::*;

use crate::common::{Rng, small_writer};

/// Opening must not panic; an accepted file must honour every `TensorInfo` promise.
fn exercise(bytes: Vec<u8>) {
    if let Ok(f) = GgufFile::from_bytes(bytes) {
        for t in f.tensors() {
            assert_eq!(f.tensor_bytes(t).len() as u64, t.n_bytes());
            let v = f
                .dequantize_tensor(t)
                .expect("validated tensor dequantizes");
            assert_eq!(v.len() as u64, t.n_elements());
        }
        let _ = airlock_gguf::Summary::new(&f).to_string();
    }
}

#[test]
fn seeded_mutation_loop() {
    let base = small_writer().to_bytes();
    let mut rng = Rng::new(0xdead_beef);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..=rng.below(4) {
            let i = rng.below(b.len() as u64) as usize;
            b[i] = match rng.below(4) {
                0 => rng.byte(),
                1 => 0xff,
                2 => 0,
                _ => b[i] ^ (1 << rng.below(8)),
            };
        }
        if rng.below(4) == 0 {
            b.truncate(rng.below(b.len() as u64) as usize);
        }
        match GgufFile::from_bytes(b.clone()) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
        exercise(b);
    }
    eprintln!("mutations: {ok} opened, {err} rejected");
    assert!(
        err > 0 && ok > 0,
        "the mutations should both break and spare the file"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut b = small_writer().to_bytes();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if let Some(c) = cut {
            b.truncate(c.index(b.len()));
        }
        exercise(b);
    }

    #[test]
    fn arbitrary_bytes_after_magic_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut b = b"GGUF\x03\x00\x00\x00".to_vec();
        b.extend(tail);
        exercise(b);
    }
}
