//! Malformed metadata gives the specific error; random vocabularies and texts
//! never panic and never yield an id outside the vocabulary.

use airlock_gguf::write::GgufWriter;
use airlock_gguf::{Array, Value};
use airlock_tokenizer::{
    EncodeOptions, StreamDecoder, Tokenizer, TokenizerError, TokenizerModel, TokenizerSpec,
};

use crate::common::{Rng, bpe_writer, load, strings};

fn minimal(model: &str, tokens: &[&str]) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.metadata("general.name", "hostile")
        .metadata("tokenizer.ggml.model", model)
        .metadata("tokenizer.ggml.tokens", strings(tokens));
    w
}

#[test]
fn unsupported_model_is_named() {
    let err = load(&minimal("bert", &["a"])).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::UnsupportedModel { model } if model == "bert"),
        "{err}"
    );
}

#[test]
fn unknown_pre_tokenizer_is_refused() {
    let err = load(&bpe_writer("mystery-9", &[], &[], &[])).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::UnsupportedPreTokenizer { pre, .. } if pre == "mystery-9"),
        "{err}"
    );
}

#[test]
fn missing_keys_are_named() {
    let mut w = GgufWriter::new();
    w.metadata("tokenizer.ggml.model", "gpt2");
    let err = load(&w).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::MissingKey {
                key: "tokenizer.ggml.tokens"
            }
        ),
        "{err}"
    );

    let err = load(&minimal("gpt2", &["a"])).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::MissingKey {
                key: "tokenizer.ggml.merges"
            }
        ),
        "{err}"
    );

    let mut w = GgufWriter::new();
    w.metadata("tokenizer.ggml.tokens", strings(&["a"]));
    let err = load(&w).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::MissingKey {
                key: "tokenizer.ggml.model"
            }
        ),
        "{err}"
    );
}

#[test]
fn wrongly_typed_keys_are_errors() {
    let mut w = GgufWriter::new();
    w.metadata("tokenizer.ggml.model", "llama")
        .metadata("tokenizer.ggml.tokens", vec![1u32, 2]);
    let err = load(&w).unwrap_err();
    assert!(matches!(err, TokenizerError::Metadata(_)), "{err}");
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");

    let mut w = minimal("llama", &["a", "b"]);
    w.metadata("tokenizer.ggml.scores", strings(&["x", "y"]));
    let err = load(&w).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::InvalidKey {
                key: "tokenizer.ggml.scores",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn empty_and_duplicate_vocabularies_are_refused() {
    let err = load(&minimal("llama", &[])).unwrap_err();
    assert!(matches!(err, TokenizerError::EmptyVocab), "{err}");
    let err = load(&minimal("llama", &["<unk>", "a", "b", "a"])).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::DuplicateToken { text, first: 1, second: 3 } if text == "a"),
        "{err}"
    );
}

#[test]
fn short_per_token_arrays_are_refused() {
    let mut w = minimal("llama", &["<unk>", "<s>", "</s>"]);
    w.metadata("tokenizer.ggml.token_type", vec![2i32, 3]);
    let err = load(&w).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.token_type",
                expected: 3,
                got: 2
            }
        ),
        "{err}"
    );
    let mut w = minimal("llama", &["<unk>", "<s>", "</s>"]);
    w.metadata("tokenizer.ggml.scores", vec![0f32]);
    let err = load(&w).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.scores",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn special_ids_outside_the_vocabulary_are_refused() {
    let mut w = minimal("llama", &["<unk>", "<s>", "</s>"]);
    w.metadata("tokenizer.ggml.eos_token_id", 3u32);
    let err = load(&w).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::SpecialIdOutOfRange {
                key: "tokenizer.ggml.eos_token_id",
                id: 3,
                vocab_size: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn add_bos_without_a_bos_token_is_refused() {
    // A byte-level vocabulary of 3 tokens: the family default BOS (11) does not exist.
    let mut w = minimal("gpt2", &["a", "b", "ab"]);
    w.metadata("tokenizer.ggml.merges", strings(&["a b"]))
        .metadata("tokenizer.ggml.add_bos_token", true);
    let err = load(&w).unwrap_err();
    assert!(
        matches!(err, TokenizerError::MissingSpecialToken { .. }),
        "{err}"
    );
}

#[test]
fn malformed_merges_are_refused_with_their_index() {
    for (merge, reason) in [
        ("ab", "no space"),
        ("a ", "empty right side"),
        ("a z", "not in the vocabulary"),
        ("b a", "merged text is not in the vocabulary"),
    ] {
        let mut w = minimal("gpt2", &["a", "b", "ab"]);
        w.metadata("tokenizer.ggml.merges", strings(&["a b", merge]));
        let err = load(&w).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::InvalidMerge { index: 1, merge: m, reason: r } if m == merge && r.contains(reason)),
            "{merge:?}: {err}"
        );
    }
}

#[test]
fn no_chat_template_names_the_model() {
    let tok = load(&minimal("llama", &["<unk>", "<s>", "</s>"])).unwrap();
    let err = tok.chat_template().unwrap_err();
    assert!(
        matches!(&err, TokenizerError::NoChatTemplate { model } if model == "hostile"),
        "{err}"
    );
    assert!(err.to_string().contains("tokenizer.chat_template"), "{err}");
}

#[test]
fn ids_outside_the_vocabulary_decode_to_replacement_characters() {
    let tok = load(&minimal("llama", &["<unk>", "<s>", "</s>", "a"])).unwrap();
    assert_eq!(tok.decode(&[3, 99, u32::MAX]), "a\u{FFFD}\u{FFFD}");
    let mut s = StreamDecoder::new(&tok);
    assert_eq!(s.push(u32::MAX), "\u{FFFD}");
}

const PIECES: &[&str] = &[
    "a",
    "b",
    "ab",
    "ba",
    " ",
    "Ġ",
    "Ġa",
    "▁",
    "▁a",
    "<0x41>",
    "<0xC3>",
    "<0xZZ>",
    "<s>",
    "</s>",
    "<|im_end|>",
    "<reponame>",
    "é",
    "🙂",
    "\u{0}",
    "\n",
    "ĊĊ",
    "12",
    "1",
    "'s",
    "x y",
    "<",
];
const PRES: &[&str] = &["smollm", "llama-bpe", "qwen2", "gpt-2", "default", "weird"];

fn random_spec(rng: &mut Rng) -> TokenizerSpec {
    let model = if rng.below(2) == 0 {
        TokenizerModel::Gpt2
    } else {
        TokenizerModel::Llama
    };
    let n = 1 + rng.below(30) as usize;
    let mut tokens: Vec<String> = (0..n)
        .map(|_| {
            let parts = 1 + rng.below(3);
            (0..parts).map(|_| *rng.pick(PIECES)).collect()
        })
        .collect();
    tokens.sort();
    tokens.dedup();
    let n = tokens.len();
    let mut spec = TokenizerSpec::new(model, tokens.clone());
    spec.token_types = (0..n).map(|_| rng.below(9) as i32 - 1).collect();
    spec.scores = (0..n).map(|_| rng.below(100) as f32 / -10.0).collect();
    if rng.below(4) == 0 {
        spec.scores[0] = f32::NAN;
    }
    spec.merges = (0..rng.below(10))
        .map(|_| format!("{} {}", rng.pick(&tokens), rng.pick(&tokens)))
        .collect();
    spec.pre = Some((*rng.pick(PRES)).to_owned());
    let id = |rng: &mut Rng| (rng.below(3) != 0).then(|| rng.below(n as u64 + 2) as u32);
    spec.bos = id(rng);
    spec.eos = id(rng);
    spec.eot = id(rng);
    spec.add_bos = Some(rng.below(2) == 0);
    spec.add_eos = Some(rng.below(2) == 0);
    spec.add_space_prefix = Some(rng.below(2) == 0);
    spec.name = Some(if rng.below(2) == 0 { "Phi-3 mini" } else { "x" }.to_owned());
    spec
}

#[test]
fn random_vocabularies_never_panic() {
    let mut rng = Rng::new(0xA11);
    let mut built = 0;
    for _ in 0..3000 {
        let spec = random_spec(&mut rng);
        let Ok(tok) = Tokenizer::from_spec(&spec) else {
            continue;
        };
        built += 1;
        for _ in 0..4 {
            let text: String = (0..rng.below(12)).map(|_| *rng.pick(PIECES)).collect();
            for opts in [EncodeOptions::PLAIN, EncodeOptions::PROMPT] {
                // An error is fine (a missing byte-fallback token); a panic is not.
                if let Ok(ids) = tok.encode(&text, opts) {
                    assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
                    let whole = tok.decode(&ids);
                    let mut s = StreamDecoder::new(&tok);
                    let mut streamed: String = ids.iter().map(|&i| s.push(i)).collect();
                    streamed.push_str(&s.finish());
                    assert_eq!(streamed, whole);
                }
            }
        }
    }
    assert!(
        built > 300,
        "only {built} random vocabularies were accepted"
    );
}

#[test]
fn long_and_odd_inputs_encode() {
    let tok = load(&bpe_writer("smollm", &[], &[], &[])).unwrap();
    for text in [
        " ".repeat(100_000),
        "a".repeat(100_000),
        "1".repeat(50_000),
        "\u{FFFF}\u{10FFFF}\u{0}".repeat(1000),
        "'s'S'll ".repeat(1000),
    ] {
        let ids = tok.encode(&text, EncodeOptions::PLAIN).unwrap();
        assert_eq!(tok.decode(&ids), text);
    }
    let _ = Value::Array(Array::String(vec![]));
}
