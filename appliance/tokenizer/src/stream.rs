//! [`StreamDecoder`]: decoding one token at a time, for streaming output.
//!
//! A byte-level BPE token can end in the middle of a UTF-8 character (an emoji
//! is often two or three tokens), so text is released only up to the last
//! complete character; the incomplete tail waits for the next token. Invariant:
//! the concatenation of everything [`push`](StreamDecoder::push) and
//! [`finish`](StreamDecoder::finish) return equals
//! [`Tokenizer::decode_with`] on all ids with the same options, because a
//! UTF-8 decision at a byte depends only on the next four bytes: invalid
//! sequences become U+FFFD exactly where `String::from_utf8_lossy` puts them.

use crate::tokenizer::{DecodeOptions, Tokenizer};

/// Incremental decoder; see the module documentation.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    opts: DecodeOptions,
    /// Bytes not yet released: at most an incomplete UTF-8 sequence (< 4 bytes).
    pending: Vec<u8>,
    first: bool,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder for a whole sequence, matching [`Tokenizer::decode`].
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self::with_options(tokenizer, DecodeOptions::default())
    }

    /// A decoder for generated text that continues a prompt, as llama.cpp
    /// prints it: control tokens produce nothing and no prefix space is
    /// dropped.
    pub fn continuation(tokenizer: &'t Tokenizer) -> Self {
        Self::with_options(
            tokenizer,
            DecodeOptions {
                render_control: false,
                strip_prefix_space: false,
            },
        )
    }

    /// A decoder with explicit options.
    pub fn with_options(tokenizer: &'t Tokenizer, opts: DecodeOptions) -> Self {
        Self {
            tokenizer,
            opts,
            pending: Vec::new(),
            first: true,
        }
    }

    /// Feeds one token; returns the text that is now complete (maybe empty).
    pub fn push(&mut self, id: u32) -> String {
        let first = std::mem::replace(&mut self.first, false);
        let piece = self.tokenizer.piece_for(
            id,
            first && self.opts.strip_prefix_space,
            self.opts.render_control,
        );
        self.pending.extend_from_slice(piece);
        self.release()
    }

    /// Ends the stream: an incomplete trailing sequence becomes U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    fn release(&mut self) -> String {
        let mut out = String::new();
        let mut pos = 0;
        loop {
            match std::str::from_utf8(&self.pending[pos..]) {
                Ok(s) => {
                    out.push_str(s);
                    pos = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix is valid UTF-8 per `valid_up_to`.
                    out.push_str(&String::from_utf8_lossy(&self.pending[pos..pos + valid]));
                    pos += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            pos += n;
                        }
                        // Incomplete sequence at the end: wait for more bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..pos);
        out
    }
}
