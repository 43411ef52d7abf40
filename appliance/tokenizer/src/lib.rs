//! Tokenizer and chat template read from GGUF metadata, token-exact with llama.cpp.
//!
//! # Design
//! - [`TokenizerSpec`] is the `tokenizer.*` metadata as plain data;
//!   [`Tokenizer::from_spec`] checks all of it (a model file is untrusted:
//!   duplicate tokens, out-of-range ids, malformed merges and short per-token
//!   arrays are errors naming the key, never panics).
//! - Encoding follows llama.cpp (`llama-vocab.cpp`) step for step, because the
//!   model was trained on those ids and fidelity tests compare against it:
//!   special tokens are split out first ([`special`]), then each text fragment
//!   goes to byte-level BPE (`"gpt2"`, built on the `tokenizers` crate with
//!   llama.cpp's pre-tokenizer regexes, [`bpe`], [`pretok`]) or to the
//!   SentencePiece score-driven merge (`"llama"`, our own code since no
//!   `tokenizers` model expresses it, [`spm`]).
//! - Decoding uses a per-token byte table; [`StreamDecoder`] releases text only
//!   at UTF-8 character boundaries.
//! - [`ChatTemplate`] renders `tokenizer.chat_template` with minijinja in an
//!   environment without file or network access.
//!
//! # Invariants
//! - Every id the tokenizer returns is below [`Tokenizer::vocab_size`].
//! - With [`EncodeOptions::PLAIN`], no CONTROL token can come out of user text; in a chat
//!   prompt ([`ChatTemplate::render_delimited`] + [`Tokenizer::encode_chat`]) none comes out
//!   of any message's content, only out of the template's own text.
//! - `decode(encode(x)) == x` for text without special tokens (byte-level BPE
//!   is lossless; SentencePiece drops the prefix space it added).
//!
//! # Non-goals
//! - Other tokenizer families (WordPiece, Unigram/T5, RWKV) and pre-tokenizers
//!   not listed in [`pretok`] are refused with an error, not approximated.
//! - No downloads: `tokenizers` is built without `http`/hub features.
//! - llama.cpp's `clean_up_tokenization_spaces` pass is not applied when
//!   decoding: llama.cpp does not apply it to streamed output either, and it
//!   would break `decode(encode(x)) == x`.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod bpe;
mod bytelevel;
mod chat;
mod error;
mod gguf;
mod pretok;
mod spec;
mod special;
mod spm;
mod stream;
mod tokenizer;
mod vocab;

pub use chat::{ChatMessage, ChatTemplate, RenderedChat};
pub use error::TokenizerError;
pub use spec::{TokenizerModel, TokenizerSpec, token_type};
pub use stream::StreamDecoder;
pub use tokenizer::{DecodeOptions, EncodeOptions, Tokenizer};
