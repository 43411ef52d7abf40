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

/// True if `r` shares a byte with one of the sorted, disjoint `ranges`.
fn overlaps(ranges: &[Range<usize>], r: Range<usize>) -> bool {
    // The first range that ends after `r` starts is the only candidate.
    let i = ranges.partition_point(|p| p.end <= r.start);
    ranges.get(i).is_some_and(|p| p.start < r.end)
}

/// C `isspace` on ASCII, which llama.cpp uses for LSTRIP / RSTRIP.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Splits `text` into special tokens and the text between them.
///
/// `plain` lists byte ranges (sorted, disjoint) where CONTROL and UNKNOWN tokens are not
/// recognised even when `parse_special` is set: the client-supplied content of a rendered
/// chat prompt. A match that overlaps such a range, even by one byte, stays text, so a
/// message cannot forge a turn of the conversation (`<|im_start|>system`) nor complete a
/// token the template started.
pub(crate) fn partition(
    vocab: &Vocab,
    text: &str,
    parse_special: bool,
    plain: &[Range<usize>],
) -> Vec<Fragment> {
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
        // USER_DEFINED tokens match in plain text too (see the module docs).
        let avoid_plain = attr.has(Attr::CONTROL) || attr.has(Attr::UNKNOWN);
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for fragment in fragments {
            let Fragment::Text(range) = fragment else {
                next.push(fragment);
                continue;
            };
            let (mut start, end) = (range.start, range.end);
            // Where the next search begins: past `start` when a match was skipped.
            let mut from = start;
            while start < end {
                let Some(found) = text[from..end].find(needle) else {
                    next.push(Fragment::Text(start..end));
                    break;
                };
                let at = from + found;
                if avoid_plain && overlaps(plain, at..at + needle.len()) {
                    // Keep looking after this occurrence's first character.
                    from = at + text[at..].chars().next().map_or(1, char::len_utf8);
                    continue;
                }
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
                from = start;
            }
        }
        fragments = next;
    }
    fragments
}
