//! Byte-level BPE on vocabularies these tests write as GGUF files.

use airlock_tokenizer::{EncodeOptions, Tokenizer};

use crate::common::{bpe_writer, bpe_writer_typed, byte_char, load, spell};

const PARSE_ONLY: EncodeOptions = EncodeOptions {
    parse_special: true,
    add_special: false,
};

fn id(tok: &Tokenizer, plain: &str) -> u32 {
    tok.token_id(&spell(plain)).unwrap()
}

fn byte_ids(text: &str) -> Vec<u32> {
    // The first 256 ids of `bpe_writer` vocabularies are the bytes in order.
    text.bytes().map(u32::from).collect()
}

#[test]
fn merges_apply_in_rank_order() {
    let extra = ["th", "he", "the"];
    let tok = load(&bpe_writer(
        "gpt-2",
        &extra,
        &[("t", "h"), ("h", "e"), ("th", "e")],
        &[],
    ))
    .unwrap();
    assert_eq!(
        tok.encode("the", EncodeOptions::PLAIN).unwrap(),
        vec![id(&tok, "the")]
    );
    // With "h e" ranked first, "t he" is no merge: the word stays in two tokens.
    let tok = load(&bpe_writer(
        "gpt-2",
        &extra,
        &[("h", "e"), ("t", "h"), ("th", "e")],
        &[],
    ))
    .unwrap();
    assert_eq!(
        tok.encode("the", EncodeOptions::PLAIN).unwrap(),
        vec![id(&tok, "t"), id(&tok, "he")]
    );
}

#[test]
fn leftmost_pair_wins_a_tie() {
    let tok = load(&bpe_writer("gpt-2", &["aa"], &[("a", "a")], &[])).unwrap();
    assert_eq!(
        tok.encode("aaa", EncodeOptions::PLAIN).unwrap(),
        vec![id(&tok, "aa"), id(&tok, "a")]
    );
}

#[test]
fn digits_split_as_each_pre_tokenizer_says() {
    let extra = ["12", "123", "45"];
    let merges = [("1", "2"), ("12", "3"), ("4", "5")];
    let enc = |pre: &str| {
        let tok = load(&bpe_writer(pre, &extra, &merges, &[])).unwrap();
        let ids = tok.encode("12345", EncodeOptions::PLAIN).unwrap();
        ids.iter().map(|&i| tok.decode(&[i])).collect::<Vec<_>>()
    };
    // GPT-2: one run of digits.
    assert_eq!(enc("gpt-2"), ["123", "45"]);
    // SmolLM / StarCoder: every digit alone (Digits(individual_digits)).
    assert_eq!(enc("smollm"), ["1", "2", "3", "4", "5"]);
    // Llama 3: groups of up to three.
    assert_eq!(enc("llama-bpe"), ["123", "45"]);
    // Qwen2: single digits.
    assert_eq!(enc("qwen2"), ["1", "2", "3", "4", "5"]);
}

/// Splits the Qwen2 regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`) makes and GPT-2's does not,
/// seen through merges that only apply inside one piece: `'[sS]` is case-insensitive, and
/// `[^\r\n\p{L}\p{N}]?\p{L}+` keeps one leading punctuation mark with the letters after it
/// (GPT-2: `'s` lower case only; punctuation ` ?[^\s\p{L}\p{N}]+` apart from ` ?\p{L}+`).
#[test]
fn qwen2_contractions_and_leading_punctuation() {
    let extra = ["'S", ".x"];
    let merges = [("'", "S"), (".", "x")];
    let enc = |pre: &str, text: &str| {
        let tok = load(&bpe_writer(pre, &extra, &merges, &[])).unwrap();
        let ids = tok.encode(text, EncodeOptions::PLAIN).unwrap();
        ids.iter().map(|&i| tok.decode(&[i])).collect::<Vec<_>>()
    };
    assert_eq!(enc("qwen2", "'S"), ["'S"]);
    assert_eq!(enc("gpt-2", "'S"), ["'", "S"]);
    assert_eq!(enc("qwen2", ".x"), [".x"]);
    assert_eq!(enc("gpt-2", ".x"), [".", "x"]);
    // Digits stay single and apart from the letters: "x1.x" is "x", "1", ".x".
    assert_eq!(enc("qwen2", "x1.x"), ["x", "1", ".x"]);
}

#[test]
fn gpt2_keeps_the_space_with_the_word_and_trailing_whitespace_apart() {
    let tok = load(&bpe_writer(
        "gpt-2",
        &[" a", "  "],
        &[(" ", "a"), (" ", " ")],
        &[],
    ))
    .unwrap();
    // "\s+(?!\S)" leaves the last space to join the word.
    let ids = tok.encode("   a", EncodeOptions::PLAIN).unwrap();
    assert_eq!(ids, vec![id(&tok, "  "), id(&tok, " a")]);
    assert_eq!(tok.decode(&ids), "   a");
}

#[test]
fn llama3_takes_whole_vocabulary_words_without_merges() {
    // "abc" is an entry but no merge leads to it.
    let mut w = bpe_writer("llama-bpe", &["abc"], &[], &["<|begin_of_text|>"]);
    w.metadata("tokenizer.ggml.bos_token_id", 257u32);
    let tok = load(&w).unwrap();
    assert_eq!(tok.encode("abc", EncodeOptions::PLAIN).unwrap(), vec![256]);
    // Llama 3 adds BOS unless the metadata says otherwise.
    assert!(tok.adds_bos());
    assert_eq!(
        tok.encode("abc", EncodeOptions::PROMPT).unwrap(),
        vec![257, 256]
    );
    let tok = load(&bpe_writer("gpt-2", &["abc"], &[], &[])).unwrap();
    assert_eq!(
        tok.encode("abc", EncodeOptions::PLAIN).unwrap(),
        byte_ids("abc")
    );
}

#[test]
fn longest_special_token_is_split_out_first() {
    // llama.cpp takes special tokens longest first, so "bcd" wins over the
    // leftmost "ab" (a leftmost-longest matcher would give "ab" + "c" + "d").
    let tok = load(&bpe_writer("gpt-2", &[], &[], &["ab", "bcd"])).unwrap();
    let (ab, bcd) = (256, 257);
    assert_eq!(
        tok.encode("abcd", PARSE_ONLY).unwrap(),
        vec![u32::from(b'a'), bcd]
    );
    assert_eq!(
        tok.encode("ab ab", PARSE_ONLY).unwrap(),
        vec![ab, u32::from(b' '), ab]
    );
    // Not parsed: plain bytes.
    assert_eq!(
        tok.encode("abcd", EncodeOptions::PLAIN).unwrap(),
        byte_ids("abcd")
    );
}

#[test]
fn user_defined_tokens_are_matched_even_in_plain_mode() {
    let w = bpe_writer_typed("gpt-2", &[], &[], &[("<ctl>", 3), ("<usr>", 4)]);
    let tok = load(&w).unwrap();
    let ids = tok.encode("x<usr>y<ctl>", EncodeOptions::PLAIN).unwrap();
    let mut expected = vec![u32::from(b'x'), 257, u32::from(b'y')];
    expected.extend(byte_ids("<ctl>"));
    assert_eq!(ids, expected);
}

#[test]
fn control_tokens_are_rendered_or_skipped_on_request() {
    let tok = load(&bpe_writer("gpt-2", &[], &[], &["<|end|>"])).unwrap();
    let ids = tok.encode("hi<|end|>", PARSE_ONLY).unwrap();
    assert_eq!(tok.decode(&ids), "hi<|end|>");
    let opts = airlock_tokenizer::DecodeOptions {
        render_control: false,
        strip_prefix_space: false,
    };
    assert_eq!(tok.decode_with(&ids, opts), "hi");
    assert!(tok.is_eog(256), "<|end|> is an end-of-generation marker");
}

#[test]
fn byte_alphabet_spelling() {
    assert_eq!(byte_char(b' '), 'Ġ');
    assert_eq!(byte_char(b'\n'), 'Ċ');
    let tok = load(&bpe_writer("gpt-2", &[], &[], &[])).unwrap();
    let text = "\u{0}\t\r\n ~\u{7f}\u{a0}é🙂";
    let ids = tok.encode(text, EncodeOptions::PLAIN).unwrap();
    assert_eq!(ids, byte_ids(text));
    assert_eq!(tok.decode(&ids), text);
}
