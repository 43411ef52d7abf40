use std::path::PathBuf;

use airlock_gguf::write::GgufWriter;
use airlock_gguf::{Array, GgufFile, Value};
use airlock_tokenizer::{Tokenizer, TokenizerError};

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
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The default model: `$AIRLOCK_TEST_MODEL`, else the cache path of
/// `scripts/fetch-default-model.sh`. Fails the test with instructions if absent.
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

/// llama.cpp's outputs on the default model (copied into the repository).
pub fn reference() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/smollm2-llamacpp.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

pub fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| (*s).to_owned()).collect()))
}

/// Writes `w` to bytes, parses it with our reader and builds the tokenizer.
pub fn load(w: &GgufWriter) -> Result<Tokenizer, TokenizerError> {
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    Tokenizer::from_gguf(&file)
}

/// The GPT-2 byte-to-character spelling of `b` (e.g. space -> `Ġ`).
pub fn byte_char(b: u8) -> char {
    let direct = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if direct(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !direct(x)).count() as u32;
    char::from_u32(0x100 + n).unwrap()
}

/// Spells text in the byte-level alphabet (`" the"` -> `"Ġthe"`).
pub fn spell(text: &str) -> String {
    text.bytes().map(byte_char).collect()
}

/// A byte-level BPE writer: the 256 byte tokens (ids 0..256), then `extra`
/// tokens (byte-level spelled), then `specials` as CONTROL tokens; `merges`
/// are given in plain text and spelled here.
pub fn bpe_writer(
    pre: &str,
    extra: &[&str],
    merges: &[(&str, &str)],
    specials: &[&str],
) -> GgufWriter {
    let typed: Vec<(&str, i32)> = specials.iter().map(|s| (*s, 3)).collect();
    bpe_writer_typed(pre, extra, merges, &typed)
}

/// [`bpe_writer`] with the token type of each special token given.
pub fn bpe_writer_typed(
    pre: &str,
    extra: &[&str],
    merges: &[(&str, &str)],
    specials: &[(&str, i32)],
) -> GgufWriter {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut types = vec![1i32; 256];
    for t in extra {
        tokens.push(spell(t));
        types.push(1);
    }
    for (s, ty) in specials {
        tokens.push((*s).to_owned());
        types.push(*ty);
    }
    let merges: Vec<String> = merges
        .iter()
        .map(|(a, b)| format!("{} {}", spell(a), spell(b)))
        .collect();
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", "llama")
        .metadata("general.name", "synthetic-bpe")
        .metadata("tokenizer.ggml.model", "gpt2")
        .metadata("tokenizer.ggml.pre", pre)
        .metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
        .metadata("tokenizer.ggml.token_type", types)
        .metadata("tokenizer.ggml.merges", Value::Array(Array::String(merges)));
    w
}
