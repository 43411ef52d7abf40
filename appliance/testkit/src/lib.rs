//! Test support for the workspace's tests (a dev-dependency only; never linked into
//! `airlock`). One place for what every fidelity test needs: where the default model is,
//! llama.cpp's reference outputs on it, and a reproducible generator.
//!
//! Helpers panic with instructions instead of returning errors: a missing model must fail
//! the test that needs it, loudly, never skip it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The file name `scripts/fetch-default-model.sh` stores the default model under.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model: `$AIRLOCK_TEST_MODEL`, else the cache path of
/// `scripts/fetch-default-model.sh` (`$AIRLOCK_CACHE`, `$XDG_CACHE_HOME/airlock` or
/// `~/.cache/airlock`, then `models/`). Fails the test with instructions if absent.
pub fn default_model() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRLOCK_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("AIRLOCK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("airlock")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/airlock")))
        .expect("neither AIRLOCK_TEST_MODEL, AIRLOCK_CACHE, XDG_CACHE_HOME nor HOME is set");
    let p = cache.join("models").join(DEFAULT_MODEL_FILE);
    assert!(
        p.is_file(),
        "default model not found at {}: run scripts/fetch-default-model.sh (or set AIRLOCK_TEST_MODEL)",
        p.display()
    );
    p
}

/// llama.cpp's outputs on the default model (`appliance/testdata/smollm2-llamacpp.json`,
/// copied into the repository from the team's shared reference outputs).
pub fn reference() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/smollm2-llamacpp.json"
    );
    let text = std::fs::read_to_string(path).expect("reference file");
    serde_json::from_str(&text).expect("reference JSON")
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of token ids")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("a token id")).expect("a u32 token id"))
        .collect()
}

/// SplitMix64: a tiny seeded generator so every random test is reproducible.
#[derive(Debug, Clone)]
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

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Uniform in `[lo, hi)`.
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    /// `n` values uniform in `[-scale, scale)`.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32_in(-scale, scale)).collect()
    }
}
