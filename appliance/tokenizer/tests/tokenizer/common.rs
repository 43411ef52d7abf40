use airlock_gguf::write::GgufWriter;
use airlock_gguf::{Array, GgufFile, Value};
use airlock_tokenizer::{Tokenizer, TokenizerError};

pub use airlock_testkit::{Rng, default_model, ids, reference};

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
