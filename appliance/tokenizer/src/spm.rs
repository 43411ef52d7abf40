//! SentencePiece-style tokenization (`tokenizer.ggml.model = "llama"`).
//!
//! Implemented here rather than with `tokenizers`: llama.cpp's SPM tokenizer is
//! not a merge-rank BPE (GGUF llama vocabularies carry no merges) but a greedy
//! merge driven by the *scores* of the resulting vocabulary entries, which no
//! `tokenizers` model expresses. The algorithm (llama.cpp
//! `llm_tokenizer_spm_session::tokenize`):
//! 1. split the text (spaces already replaced by `▁`) into UTF-8 characters;
//! 2. queue every adjacent pair whose concatenation is a vocabulary entry,
//!    keyed by that entry's score;
//! 3. repeatedly take the best pair (highest score, then leftmost), skip it if
//!    either side has changed since it was queued, merge it, and queue the new
//!    pairs it forms with its neighbours;
//! 4. emit each final symbol's id; a symbol that is no vocabulary entry (only
//!    single characters can be: merged symbols always are) is emitted as its
//!    UTF-8 bytes through the `<0xXX>` byte-fallback tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::TokenizerError;
use crate::vocab::Vocab;

const NONE: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Symbol {
    /// Byte range in the text; `len == 0` once merged into its left neighbour.
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

#[derive(Debug)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    /// Byte length of the pair when queued, to detect stale entries.
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher score first, then the leftmost pair. `total_cmp`
        // keeps the order total even for NaN scores in a hostile file.
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

/// Tokenizes `text` (spaces already escaped to `▁`), appending ids to `out`.
pub(crate) fn encode_into(
    vocab: &Vocab,
    text: &str,
    out: &mut Vec<u32>,
) -> Result<(), TokenizerError> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: if i == 0 { NONE } else { i - 1 },
            next: i + 1,
        });
    }
    let Some(last) = symbols.last_mut() else {
        return Ok(());
    };
    last.next = NONE;

    let mut queue = BinaryHeap::new();
    let try_add =
        |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize, right: usize| {
            if left == NONE || right == NONE {
                return;
            }
            let (l, r) = (symbols[left], symbols[right]);
            let pair = &text[l.start..r.start + r.len];
            if let Some(&id) = vocab.by_text.get(pair) {
                queue.push(Bigram {
                    left,
                    right,
                    score: vocab.scores[id as usize],
                    size: pair.len(),
                });
            }
        };
    for i in 1..symbols.len() {
        try_add(&mut queue, &symbols, i - 1, i);
    }

    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // Stale: one side was merged away or grew since this pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
            continue;
        }
        symbols[bigram.left].len += r.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = r.next;
        if r.next != NONE {
            symbols[r.next].prev = bigram.left;
        }
        try_add(&mut queue, &symbols, l.prev, bigram.left);
        try_add(&mut queue, &symbols, bigram.left, r.next);
    }

    let mut i = 0;
    while i != NONE {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match vocab.by_text.get(piece) {
            Some(&id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    out.push(byte_token(vocab, b)?);
                }
            }
        }
        i = s.next;
    }
    Ok(())
}

/// The byte-fallback token for `b`: `<0xXX>`, else (as llama.cpp) a token
/// whose text is that single byte.
fn byte_token(vocab: &Vocab, b: u8) -> Result<u32, TokenizerError> {
    if let Some(&id) = vocab.by_text.get(&format!("<0x{b:02X}>")) {
        return Ok(id);
    }
    let mut buf = [0u8; 4];
    let single = char::from(b).encode_utf8(&mut buf);
    if let (true, Some(&id)) = (b.is_ascii(), vocab.by_text.get(single as &str)) {
        return Ok(id);
    }
    Err(TokenizerError::MissingByteToken { byte: b })
}
