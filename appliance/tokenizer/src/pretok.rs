//! Pre-tokenizer rules for byte-level BPE, chosen by `tokenizer.ggml.pre`.
//!
//! Each rule is the list of regexes llama.cpp applies (`llm_tokenizer_bpe` in
//! `llama-vocab.cpp`): the first regex splits the text, each next one splits
//! every piece again, and both matched and unmatched stretches are kept as
//! pieces. BPE then runs inside each piece. The regexes are copied from
//! llama.cpp's adapted forms (case-insensitive groups spelled out). Unknown
//! names are refused: splitting with the wrong rules gives plausible but wrong
//! token ids, which is worse than an error.

use crate::error::TokenizerError;

/// GPT-2's pattern (also the second stage of the StarCoder/SmolLM rule).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's pattern: digits in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pattern: single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `pre` names we accept, for error messages.
pub(crate) const SUPPORTED: &str = "default (or absent), gpt-2, phi-2, mpt, olmo, exaone4, \
     llama3, llama-v3, llama-bpe, falcon3, dbrx, smaug-bpe, qwen2, deepseek-r1-qwen, megrez, \
     stablelm2, smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b";

/// A resolved pre-tokenizer rule and the tokenizer flags that come with it.
#[derive(Debug, Clone)]
pub(crate) struct PreRule {
    /// Regexes applied in sequence.
    pub(crate) regexes: Vec<&'static str>,
    /// A piece that is itself a vocabulary entry becomes that token without
    /// running merges (Llama 3's tokenizer.json `ignore_merges`).
    pub(crate) ignore_merges: bool,
    /// `add_bos` when `tokenizer.ggml.add_bos_token` is absent.
    pub(crate) default_add_bos: bool,
}

impl PreRule {
    /// Resolves `tokenizer.ggml.pre` (absent = llama.cpp's `default`).
    pub(crate) fn for_name(pre: Option<&str>) -> Result<Self, TokenizerError> {
        let rule = |regexes: Vec<&'static str>| PreRule {
            regexes,
            ignore_merges: false,
            default_add_bos: false,
        };
        Ok(match pre.unwrap_or("default") {
            "default" => rule(vec![
                r"[\p{P}\$\+<=>\^~\|]+",
                GPT2,
                r"\p{N}+",
                r"[0-9][0-9][0-9]",
            ]),
            "gpt-2" | "phi-2" | "mpt" | "olmo" | "exaone4" => rule(vec![GPT2]),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => PreRule {
                regexes: vec![LLAMA3],
                ignore_merges: true,
                default_add_bos: true,
            },
            "dbrx" | "smaug-bpe" => rule(vec![LLAMA3]),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" => rule(vec![QWEN2]),
            // SmolLM2's tokenizer.json: Digits(individual_digits) then ByteLevel.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => rule(vec![r"\p{N}", GPT2]),
            other => {
                return Err(TokenizerError::UnsupportedPreTokenizer {
                    pre: other.to_owned(),
                    supported: SUPPORTED,
                });
            }
        })
    }
}
