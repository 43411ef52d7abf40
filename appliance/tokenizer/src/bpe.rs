//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), built on `tokenizers`.
//!
//! The GGUF vocabulary and merges become a `tokenizers` BPE model; the
//! pre-tokenizer is a `Sequence` of `Split(regex, Isolated)` steps with
//! llama.cpp's regexes (see [`crate::pretok`]) followed by `ByteLevel` without
//! prefix space and without its own regex, which only maps bytes to the GPT-2
//! alphabet. `tokenizers` merges by rank with ties to the leftmost pair, as
//! llama.cpp does. What `tokenizers` would do differently from llama.cpp is
//! kept out of it: special tokens are split out beforehand by
//! [`crate::special`] (llama.cpp's longest-token-first order, not
//! `tokenizers`' leftmost-longest added-vocabulary matcher), and decoding uses
//! our own piece table (so a token that ends inside a UTF-8 character still
//! yields its exact bytes for streaming).
//!
//! Merges are checked when the model is built: both sides and their
//! concatenation must be vocabulary entries (as `tokenizers` itself requires);
//! a duplicate pair keeps its first, highest-priority rank (as llama.cpp).

use std::collections::HashSet;

use tokenizers::models::bpe::{BPE, Merges, Vocab as HfVocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::TokenizerError;
use crate::pretok::PreRule;
use crate::vocab::Vocab;

/// The byte-level BPE encoder for text that contains no special tokens.
pub(crate) struct ByteLevelBpe {
    inner: HfTokenizer,
}

impl std::fmt::Debug for ByteLevelBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteLevelBpe").finish_non_exhaustive()
    }
}

impl ByteLevelBpe {
    pub(crate) fn new(
        vocab: &Vocab,
        merges: &[String],
        rule: &PreRule,
    ) -> Result<Self, TokenizerError> {
        let parsed = parse_merges(vocab, merges)?;
        let hf_vocab: HfVocab = vocab
            .texts
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(hf_vocab, parsed)
            .ignore_merges(rule.ignore_merges)
            .build()
            .map_err(|e| TokenizerError::BpeBuild {
                reason: e.to_string(),
            })?;

        let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(rule.regexes.len() + 1);
        for re in &rule.regexes {
            let split = Split::new(
                SplitPattern::Regex((*re).to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizerError::BpeBuild {
                reason: format!("pre-tokenizer regex {re:?}: {e}"),
            })?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());

        let mut inner = HfTokenizer::new(model);
        inner.with_pre_tokenizer(Some(Sequence::new(steps)));
        Ok(Self { inner })
    }

    /// Encodes text that holds no special tokens, appending the ids to `out`.
    pub(crate) fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode {
                reason: e.to_string(),
            })?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }
}

/// Splits `"left right"` merge rules as llama.cpp does (at the first space
/// after the first byte) and checks them against the vocabulary.
fn parse_merges(vocab: &Vocab, merges: &[String]) -> Result<Merges, TokenizerError> {
    let mut out = Vec::with_capacity(merges.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(merges.len());
    for (index, merge) in merges.iter().enumerate() {
        let invalid = |reason| TokenizerError::InvalidMerge {
            index,
            merge: merge.clone(),
            reason,
        };
        // The first side is at least one character, so a space there (a raw
        // space token) is part of it.
        let first_len = merge.chars().next().map_or(0, char::len_utf8);
        let pos = merge
            .get(first_len..)
            .and_then(|rest| rest.find(' '))
            .map(|p| p + first_len)
            .ok_or_else(|| invalid("no space separating the two sides"))?;
        let (left, right) = (&merge[..pos], &merge[pos + 1..]);
        if right.is_empty() {
            return Err(invalid("empty right side"));
        }
        if !vocab.by_text.contains_key(left) || !vocab.by_text.contains_key(right) {
            return Err(invalid("a side is not in the vocabulary"));
        }
        if !vocab.by_text.contains_key(&format!("{left}{right}")) {
            return Err(invalid("the merged text is not in the vocabulary"));
        }
        if seen.insert((left, right)) {
            out.push((left.to_owned(), right.to_owned()));
        }
    }
    Ok(out)
}
