//! Integration tests of `airlock-tokenizer` (one binary; each module's purpose is on its `mod` line).
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

/// Byte-level BPE on small vocabularies the tests write: merges, pre-tokenizers, special tokens.
mod bpe_synthetic;
/// Shared helpers: locating the default model, the reference file, synthetic GGUF vocabularies.
mod common;
/// The real default model against llama.cpp's reference outputs: ids, chat template, decoding.
mod fidelity;
/// Malformed and hostile metadata: each gives its specific error; random vocabularies never panic.
mod hostile;
/// SentencePiece on small vocabularies the tests write: score-driven merges, byte fallback.
mod spm_synthetic;
/// `StreamDecoder` against whole-sequence decoding on random byte pieces.
mod stream;
