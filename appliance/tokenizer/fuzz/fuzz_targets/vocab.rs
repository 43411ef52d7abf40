//! Synthetic vocabularies shared by the targets (included with `#[path]`): byte-level BPE
//! with each supported family of pre-tokenizer rules, and SentencePiece with byte tokens.

use airlock_tokenizer::{Tokenizer, TokenizerModel, TokenizerSpec, token_type};

/// ChatML's special tokens, as SmolLM2 and Qwen2 have them (CONTROL).
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The GPT-2 byte-to-character spelling of `b` (space → `Ġ`).
fn byte_char(b: u8) -> char {
    let direct = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if direct(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !direct(x)).count() as u32;
    // INVARIANT: 0x100 + n (n < 256) is a valid scalar value.
    char::from_u32(0x100 + n).expect("valid char")
}

fn spell(text: &str) -> String {
    text.bytes().map(byte_char).collect()
}

/// Byte tokens (ids 0..256), a few merged words, then the ChatML specials.
pub fn bpe(pre: &str) -> Tokenizer {
    let words = [
        ("t", "h"),
        ("th", "e"),
        ("Ġ", "the"),
        ("i", "n"),
        ("1", "2"),
    ];
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut types = vec![token_type::NORMAL; 256];
    let mut merges = Vec::new();
    for (a, b) in words {
        let (a, b) = (spell_piece(a), spell_piece(b));
        merges.push(format!("{a} {b}"));
        tokens.push(format!("{a}{b}"));
        types.push(token_type::NORMAL);
    }
    for s in SPECIALS {
        tokens.push(s.to_owned());
        types.push(token_type::CONTROL);
    }
    let mut spec = TokenizerSpec::new(TokenizerModel::Gpt2, tokens);
    spec.pre = Some(pre.to_owned());
    spec.token_types = types;
    spec.merges = merges;
    spec.eos = Some(256 + words.len() as u32 + 2);
    Tokenizer::from_spec(&spec).expect("synthetic BPE vocabulary")
}

/// `Ġ` stays as written; anything else is spelled byte by byte.
fn spell_piece(p: &str) -> String {
    if p == "Ġ" { p.to_owned() } else { spell(p) }
}

/// `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then scored pieces.
pub fn spm() -> Tokenizer {
    let mut tokens = vec!["<unk>".to_owned(), "<s>".to_owned(), "</s>".to_owned()];
    let mut types = vec![
        token_type::UNKNOWN,
        token_type::CONTROL,
        token_type::CONTROL,
    ];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(token_type::BYTE);
        scores.push(0.0);
    }
    for (piece, score) in [
        ("▁", -1.0),
        ("▁the", -2.0),
        ("th", -3.0),
        ("he", -3.5),
        ("▁t", -4.0),
        ("in", -5.0),
    ] {
        tokens.push(piece.to_owned());
        types.push(token_type::NORMAL);
        scores.push(score);
    }
    let mut spec = TokenizerSpec::new(TokenizerModel::Llama, tokens);
    spec.token_types = types;
    spec.scores = scores;
    spec.bos = Some(1);
    spec.eos = Some(2);
    spec.unk = Some(0);
    Tokenizer::from_spec(&spec).expect("synthetic SentencePiece vocabulary")
}
