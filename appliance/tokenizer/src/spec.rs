//! The tokenizer's description as plain data, as GGUF metadata states it.
//!
//! [`TokenizerSpec`] mirrors the `tokenizer.*` keys one to one (absent key =
//! `None` or empty), so a spec can be filled from a GGUF file or written by a
//! test. All checking happens in [`crate::Tokenizer::from_spec`]: a spec is
//! untrusted input.

/// `tokenizer.ggml.model`: the tokenizer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerModel {
    /// `"gpt2"`: byte-level BPE with merge ranks (SmolLM2, Llama 3, Qwen2).
    Gpt2,
    /// `"llama"`: SentencePiece-style BPE driven by token scores, with `▁` for
    /// spaces and `<0xXX>` byte-fallback tokens (Llama 2, Mistral).
    Llama,
}

impl TokenizerModel {
    /// Parses the value of `tokenizer.ggml.model`.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "gpt2" => Some(Self::Gpt2),
            "llama" => Some(Self::Llama),
            _ => None,
        }
    }
}

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
pub mod token_type {
    /// Type 0: undefined; decodes to nothing.
    pub const UNDEFINED: i32 = 0;
    /// Type 1: ordinary vocabulary entry.
    pub const NORMAL: i32 = 1;
    /// Type 2: the unknown token.
    pub const UNKNOWN: i32 = 2;
    /// Type 3: control token (`<|im_start|>`); matched in text only when
    /// special tokens are parsed.
    pub const CONTROL: i32 = 3;
    /// Type 4: user-defined token; always matched as a whole in text.
    pub const USER_DEFINED: i32 = 4;
    /// Type 5: unused slot; decodes to nothing.
    pub const UNUSED: i32 = 5;
    /// Type 6: byte-fallback token `<0xXX>`.
    pub const BYTE: i32 = 6;
}

/// Everything the tokenizer and chat template need, as the metadata states it.
#[derive(Debug, Clone)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`.
    pub model: TokenizerModel,
    /// `tokenizer.ggml.pre` (byte-level BPE only), e.g. `"smollm"`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: token text by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`; empty when the key is absent (all normal).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.scores`; empty when the key is absent (all 0).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.merges`: `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`.
    pub eom: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; `None` = the family's default.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`; `None` = the family's default.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`; `None` = the family's default.
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// `general.name`, used in error messages and for the per-model token
    /// attributes llama.cpp derives from the name (Phi-3).
    pub name: Option<String>,
}

impl TokenizerSpec {
    /// A spec with the given family and vocabulary and every optional key absent.
    pub fn new(model: TokenizerModel, tokens: Vec<String>) -> Self {
        Self {
            model,
            pre: None,
            tokens,
            token_types: Vec::new(),
            scores: Vec::new(),
            merges: Vec::new(),
            bos: None,
            eos: None,
            eot: None,
            eom: None,
            unk: None,
            add_bos: None,
            add_eos: None,
            add_space_prefix: None,
            chat_template: None,
            name: None,
        }
    }
}
