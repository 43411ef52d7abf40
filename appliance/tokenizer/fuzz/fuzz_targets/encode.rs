//! Arbitrary text through the tokenizer: byte-level BPE under each family of pre-tokenizer
//! rules and SentencePiece, with and without special-token parsing, then decoded whole and
//! token by token.
//!
//! Input: one byte choosing the vocabulary, then the text (invalid UTF-8 is replaced).
//!
//! Properties: no panic; every id is below `vocab_size`; plain encoding (how client content
//! must be encoded) never yields a CONTROL token, whatever the text spells; byte-level BPE
//! is lossless (`decode(encode(x)) == x`); the stream decoder releases exactly what
//! `decode` returns.
#![no_main]
use std::sync::OnceLock;

use airlock_tokenizer::{EncodeOptions, StreamDecoder, Tokenizer, TokenizerModel};
use libfuzzer_sys::fuzz_target;

#[path = "vocab.rs"]
mod vocab;

/// One of each pre-tokenizer family of `pretok.rs`, and SentencePiece.
fn tokenizers() -> &'static [Tokenizer] {
    static ALL: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<Tokenizer> = ["default", "gpt-2", "llama3", "dbrx", "qwen2", "smollm"]
            .into_iter()
            .map(vocab::bpe)
            .collect();
        all.push(vocab::spm());
        all
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let all = tokenizers();
    let tok = &all[usize::from(pick) % all.len()];
    let text = String::from_utf8_lossy(text);
    let control: Vec<u32> = vocab::SPECIALS
        .iter()
        .chain(&["<s>", "</s>"])
        .filter_map(|s| tok.token_id(s))
        .collect();

    for opts in [EncodeOptions::PLAIN, EncodeOptions::PROMPT] {
        let Ok(ids) = tok.encode(&text, opts) else {
            continue;
        };
        assert!(
            ids.iter().all(|&id| (id as usize) < tok.vocab_size()),
            "id out of range"
        );
        if opts == EncodeOptions::PLAIN {
            assert!(
                !ids.iter().any(|id| control.contains(id)),
                "plain text produced a control token: {text:?} -> {ids:?}"
            );
            if tok.model() == TokenizerModel::Gpt2 {
                assert_eq!(tok.decode(&ids), text, "byte-level BPE lost text");
            }
        }
        let whole = tok.decode(&ids);
        let mut stream = StreamDecoder::new(tok);
        let mut streamed: String = ids.iter().map(|&id| stream.push(id)).collect();
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, whole, "stream decoding differs from decode");
    }
});
