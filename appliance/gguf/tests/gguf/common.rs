use std::path::PathBuf;

use airlock_gguf::GgmlType;
use airlock_gguf::write::GgufWriter;

/// SplitMix64: a tiny seeded generator so every random test is reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in [lo, hi).
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// A small valid file: a few metadata pairs and three tensors of different types.
pub fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", "llama")
        .metadata("general.name", "tiny")
        .metadata("llama.block_count", 2u32)
        .metadata("llama.rope.freq_base", 10000.0f32)
        .metadata("tokenizer.ggml.tokens", vec!["<s>", "a", "b"])
        .metadata("tokenizer.ggml.token_type", vec![3i32, 1, 1]);
    let mut rng = Rng::new(7);
    let v: Vec<f32> = (0..64 * 2).map(|_| rng.f32_in(-1.0, 1.0)).collect();
    w.tensor_from_f32("a.weight", &[64, 2], GgmlType::Q4_1, &v)
        .unwrap()
        .tensor_from_f32("b.weight", &[64], GgmlType::F32, &v[..64])
        .unwrap()
        .tensor_from_f32("c.weight", &[32, 2], GgmlType::Q8_0, &v[..64])
        .unwrap();
    w
}

/// The default model: `$AIRLOCK_TEST_MODEL`, else the cache path of
/// `scripts/fetch-default-model.sh`. Panics (fails the test) with instructions if absent.
pub fn default_model() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRLOCK_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("AIRLOCK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("airlock")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/airlock")))
        .expect("neither AIRLOCK_TEST_MODEL, AIRLOCK_CACHE, XDG_CACHE_HOME nor HOME is set");
    let p = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "default model not found at {}: run scripts/fetch-default-model.sh (or set AIRLOCK_TEST_MODEL)",
        p.display()
    );
    p
}
