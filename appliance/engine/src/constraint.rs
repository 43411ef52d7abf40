//! [`TokenConstraint`]: the seam through which a grammar decides which tokens may come next.
//!
//! The engine knows nothing of JSON schemas or tool-call formats: a constrained sequence
//! carries a `TokenConstraint` (the service builds one from llguidance, `airlock-grammar`),
//! and before each of its tokens is drawn [`crate::Batch::step`] asks it for the allowed set
//! and sets every other token's logit to −∞. The chosen token is then reported back with
//! [`TokenConstraint::accept`]. Masking happens after the log-probabilities a client asked
//! for are taken (those are the model's own) and before every sampling transform, so top-k,
//! top-p and min-p choose among allowed tokens only.

use std::fmt::Debug;

/// One bit per vocabulary id: bit `id % 32` of word `id / 32` set means "allowed".
///
/// The layout is llguidance's `SimpleVob`, so a mask computed there is copied, not
/// translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    words: Vec<u32>,
    vocab: usize,
}

impl TokenMask {
    /// Every token of a `vocab`-token vocabulary forbidden.
    pub fn none(vocab: usize) -> TokenMask {
        TokenMask {
            words: vec![0; vocab.div_ceil(32)],
            vocab,
        }
    }

    /// Sets the words from `words` (extra words are ignored, missing ones forbid).
    pub fn copy_from_words(&mut self, words: &[u32]) {
        let n = self.words.len().min(words.len());
        self.words[..n].copy_from_slice(&words[..n]);
        self.words[n..].fill(0);
        // Ids at or past the vocabulary never count.
        let tail = self.vocab % 32;
        if tail != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u32 << tail) - 1;
        }
    }

    /// Allows `id` (ignored outside the vocabulary).
    pub fn allow(&mut self, id: u32) {
        if (id as usize) < self.vocab {
            self.words[id as usize / 32] |= 1 << (id % 32);
        }
    }

    /// Whether `id` is allowed.
    pub fn is_allowed(&self, id: u32) -> bool {
        (id as usize) < self.vocab && self.words[id as usize / 32] & (1 << (id % 32)) != 0
    }

    /// Whether any token is allowed.
    pub fn any(&self) -> bool {
        self.words.iter().any(|&w| w != 0)
    }

    /// Sets the logit of every forbidden token to −∞.
    pub fn apply(&self, logits: &mut [f32]) {
        for (w, chunk) in self.words.iter().zip(logits.chunks_mut(32)) {
            if *w == u32::MAX {
                continue;
            }
            for (bit, l) in chunk.iter_mut().enumerate() {
                if w & (1 << bit) == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// A grammar (or any rule) deciding which tokens a sequence may produce next.
///
/// Called on the decode thread once per generated token of its own sequence; an error ends
/// that sequence only ([`crate::FinishReason::ConstraintFailed`]), never the batch.
pub trait TokenConstraint: Send + Debug {
    /// Writes the tokens allowed next into `mask` (every bit clear on entry). When the
    /// grammar is complete only the end-of-generation token should be allowed.
    fn allowed(&mut self, mask: &mut TokenMask) -> Result<(), String>;

    /// Records that `token` was produced.
    fn accept(&mut self, token: u32) -> Result<(), String>;

    /// True when nothing more may follow: the sequence ends after the token just accepted,
    /// as if the model had produced its end-of-generation token.
    fn is_complete(&mut self) -> bool;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;

    #[test]
    fn forbidden_logits_become_negative_infinity() {
        let mut m = TokenMask::none(40);
        m.allow(1);
        m.allow(33);
        m.allow(40); // outside: ignored
        let mut logits = vec![1.0; 40];
        m.apply(&mut logits);
        for (i, l) in logits.iter().enumerate() {
            assert_eq!(*l == 1.0, i == 1 || i == 33, "{i}");
        }
        assert!(m.is_allowed(33) && !m.is_allowed(2) && !m.is_allowed(40));
    }

    #[test]
    fn words_past_the_vocabulary_are_dropped() {
        let mut m = TokenMask::none(33);
        m.copy_from_words(&[0, u32::MAX, u32::MAX]);
        assert!(m.is_allowed(32));
        assert!(!m.is_allowed(31));
        assert_eq!(m.words, vec![0, 1]);
        m.copy_from_words(&[]);
        assert!(!m.any());
    }
}
