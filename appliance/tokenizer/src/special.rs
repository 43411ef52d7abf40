//! Splitting special tokens out of text before BPE (llama.cpp
//! `tokenizer_st_partition`).
//!
//! Special tokens are the CONTROL, USER_DEFINED and UNKNOWN entries. They are
//! taken one at a time, longest text first; each splits every remaining text
//! fragment at its non-overlapping occurrences, left to right. CONTROL and
//! UNKNOWN tokens take part only when special tokens are parsed; USER_DEFINED
//! tokens always do (as in `tokenizers`' added vocabulary). A token with the
//! LSTRIP / RSTRIP attribute swallows the ASCII whitespace before / after it.
//!
//! This order differs from a leftmost-longest scan when special texts overlap
//! (`"bcd"` is split out of `"abcd"` before `"ab"` is tried), which is why we
//! do not use `tokenizers`' added-vocabulary matcher.

use std::ops::Range;

use crate::vocab::{Attr, Vocab};

/// A stretch of input: raw text (byte range) or an already-known token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

/// C `isspace` on ASCII, which llama.cpp uses for LSTRIP / RSTRIP.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

pub(crate) fn partition(vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
    let mut fragments = Vec::new();
    if text.is_empty() {
        return fragments;
    }
    fragments.push(Fragment::Text(0..text.len()));
    let bytes = text.as_bytes();

    for &id in &vocab.special_by_len {
        let attr = vocab.attrs[id as usize];
        if !parse_special && (attr.has(Attr::CONTROL) || attr.has(Attr::UNKNOWN)) {
            continue;
        }
        let needle = vocab.texts[id as usize].as_str();
        if !text.contains(needle) {
            continue;
        }
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for fragment in fragments {
            let Fragment::Text(range) = fragment else {
                next.push(fragment);
                continue;
            };
            let (mut start, end) = (range.start, range.end);
            while start < end {
                let Some(found) = text[start..end].find(needle) else {
                    next.push(Fragment::Text(start..end));
                    break;
                };
                let at = start + found;
                let mut left_end = at;
                if attr.has(Attr::LSTRIP) {
                    while left_end > start && is_c_space(bytes[left_end - 1]) {
                        left_end -= 1;
                    }
                }
                if left_end > start {
                    next.push(Fragment::Text(start..left_end));
                }
                next.push(Fragment::Token(id));
                start = at + needle.len();
                if attr.has(Attr::RSTRIP) {
                    while start < end && is_c_space(bytes[start]) {
                        start += 1;
                    }
                }
            }
        }
        fragments = next;
    }
    fragments
}
