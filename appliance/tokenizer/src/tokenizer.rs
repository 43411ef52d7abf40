//! [`Tokenizer`]: encode text to token ids and decode ids to text.

use crate::bpe::ByteLevelBpe;
use crate::chat::{ChatTemplate, RenderedChat};
use crate::error::TokenizerError;
use crate::pretok::PreRule;
use crate::spec::{TokenizerModel, TokenizerSpec};
use crate::special::{Fragment, partition};
use crate::spm;
use crate::vocab::{SPM_SPACE, Vocab};

/// How to encode a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// Match the text of CONTROL tokens (`<|im_start|>`) as those tokens. When
    /// false, such text is tokenized as ordinary characters: user content must
    /// be encoded this way, or a user could forge turns of the conversation.
    pub parse_special: bool,
    /// Add BOS / EOS as `tokenizer.ggml.add_bos_token` / `add_eos_token` say.
    pub add_special: bool,
}

impl EncodeOptions {
    /// A rendered chat prompt: special tokens parsed, BOS/EOS as the model says.
    pub const PROMPT: EncodeOptions = EncodeOptions {
        parse_special: true,
        add_special: true,
    };
    /// Untrusted text: special-token text stays text, nothing added.
    pub const PLAIN: EncodeOptions = EncodeOptions {
        parse_special: false,
        add_special: false,
    };
}

/// How to decode ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Render CONTROL and UNKNOWN tokens as their text (`<|im_end|>`); when
    /// false they produce nothing, as llama.cpp prints generated text.
    pub render_control: bool,
    /// Drop one leading space of the first token when the model adds a prefix
    /// space on encoding (SentencePiece): right for a whole sequence, wrong for
    /// text that continues a prompt.
    pub strip_prefix_space: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            render_control: true,
            strip_prefix_space: true,
        }
    }
}

#[derive(Debug)]
enum Encoder {
    ByteLevel(Box<ByteLevelBpe>),
    SentencePiece,
}

/// A tokenizer built from GGUF metadata that reproduces llama.cpp's token ids.
///
/// Invariant: every id it returns or stores is `< vocab_size()`.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    model: TokenizerModel,
    encoder: Encoder,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    chat_template: Option<String>,
    name: Option<String>,
    /// The most bytes any one token stands for.
    max_token_bytes: usize,
}

impl Tokenizer {
    /// Builds and checks a tokenizer from its description. Every malformed
    /// field gives an error naming the metadata key; nothing panics.
    pub fn from_spec(spec: &TokenizerSpec) -> Result<Self, TokenizerError> {
        let vocab = Vocab::new(spec)?;
        let (encoder, default_add_bos, default_add_eos, default_space_prefix) = match spec.model {
            TokenizerModel::Gpt2 => {
                let rule = PreRule::for_name(spec.pre.as_deref())?;
                let bpe = ByteLevelBpe::new(&vocab, &spec.merges, &rule)?;
                (
                    Encoder::ByteLevel(Box::new(bpe)),
                    rule.default_add_bos,
                    false,
                    false,
                )
            }
            TokenizerModel::Llama => (Encoder::SentencePiece, true, false, true),
        };
        let add_bos = spec.add_bos.unwrap_or(default_add_bos);
        let add_eos = spec.add_eos.unwrap_or(default_add_eos);
        if add_bos && vocab.bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "tokenizer.ggml.add_bos_token",
                id_key: "tokenizer.ggml.bos_token_id",
            });
        }
        if add_eos && vocab.eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "tokenizer.ggml.add_eos_token",
                id_key: "tokenizer.ggml.eos_token_id",
            });
        }
        let max_token_bytes = vocab.pieces.iter().map(|p| p.len()).max().unwrap_or(1);
        Ok(Self {
            max_token_bytes,
            vocab,
            model: spec.model,
            encoder,
            add_bos,
            add_eos,
            add_space_prefix: spec.add_space_prefix.unwrap_or(default_space_prefix),
            chat_template: spec.chat_template.clone(),
            name: spec.name.clone(),
        })
    }

    /// The most bytes of text one token can stand for. A text of `n` bytes encodes to at
    /// least `n / max_token_bytes()` tokens, so a caller can refuse a text that cannot fit
    /// a token budget before paying for its encoding.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Encodes `text` to token ids (llama.cpp `llama_tokenize`).
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with_plain(text, opts, &[])
    }

    /// Encodes a rendered chat prompt ([`ChatTemplate::render_delimited`]): the template's
    /// own text with special tokens parsed, every message's content as plain text, BOS/EOS
    /// as the model says ([`EncodeOptions::PROMPT`]).
    ///
    /// The ids equal `encode(prompt.text(), PROMPT)` whenever the content holds no
    /// special-token text: fragments are still split only at special tokens, so no
    /// pre-tokenizer or SentencePiece boundary moves.
    pub fn encode_chat(&self, prompt: &RenderedChat) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with_plain(
            prompt.text(),
            EncodeOptions::PROMPT,
            prompt.content_ranges(),
        )
    }

    fn encode_with_plain(
        &self,
        text: &str,
        opts: EncodeOptions,
        plain: &[std::ops::Range<usize>],
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if opts.add_special && self.add_bos {
            out.extend(self.vocab.bos);
        }
        // SentencePiece: a prefix space at the start and after every special token.
        let mut prev_special = true;
        let mut buf = String::new();
        for fragment in partition(&self.vocab, text, opts.parse_special, plain) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(range) => {
                    let piece = &text[range];
                    match &self.encoder {
                        Encoder::ByteLevel(bpe) => bpe.encode_into(piece, &mut out)?,
                        Encoder::SentencePiece => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push(' ');
                            }
                            buf.push_str(piece);
                            let escaped = buf.replace(' ', SPM_SPACE);
                            spm::encode_into(&self.vocab, &escaped, &mut out)?;
                        }
                    }
                    prev_special = false;
                }
            }
        }
        if opts.add_special && self.add_eos {
            out.extend(self.vocab.eos);
        }
        Ok(out)
    }

    /// Decodes ids to text, rendering special tokens (the inverse of
    /// [`encode`](Self::encode) with special tokens parsed). Bytes that do not
    /// form valid UTF-8 and ids outside the vocabulary become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, DecodeOptions::default())
    }

    /// Decodes ids to text with explicit options.
    pub fn decode_with(&self, ids: &[u32], opts: DecodeOptions) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            bytes.extend_from_slice(self.piece_for(
                id,
                i == 0 && opts.strip_prefix_space,
                opts.render_control,
            ));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes one token contributes to decoded text (`first`: it starts
    /// the sequence, so a prefix space is dropped where the model adds one).
    pub(crate) fn piece_for(&self, id: u32, first: bool, render_control: bool) -> &[u8] {
        const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
        let Some(piece) = self.vocab.pieces.get(id as usize) else {
            return REPLACEMENT;
        };
        if !render_control && self.vocab.is_control(id) {
            return &[];
        }
        let piece: &[u8] = piece;
        if first && self.add_space_prefix {
            return piece.strip_prefix(b" ").unwrap_or(piece);
        }
        piece
    }

    /// The bytes token `id` decodes to (special tokens as their text), or
    /// `None` outside the vocabulary. May be part of a UTF-8 character.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.vocab.pieces.get(id as usize).map(|p| &**p)
    }

    /// Whether `id` is a control (or unknown) token: text never produces it, and decoding
    /// without special tokens drops it (`<|im_end|>`, `<s>`).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.is_control(id)
    }

    /// The vocabulary text of token `id` (`Ġ`-spelled for byte-level BPE).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }

    /// The id of the vocabulary entry with exactly this text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.by_text.get(text).copied()
    }

    /// Number of tokens; every valid id is below it.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The tokenizer family.
    pub fn model(&self) -> TokenizerModel {
        self.model
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }

    /// End-of-turn token (given, or found by its text as llama.cpp does).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.eot
    }

    /// End-of-message token (given, or `<|eom_id|>` found by its text).
    pub fn eom(&self) -> Option<u32> {
        self.vocab.eom
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.vocab.unk
    }

    /// Whether BOS is added when encoding with `add_special`.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether EOS is added when encoding with `add_special`.
    pub fn adds_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether generating `id` ends the generation (EOS, EOT, EOM and the
    /// end-of-generation markers llama.cpp recognises by text).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.vocab.eog.iter().copied()
    }

    /// `general.name`, when the metadata has it.
    pub fn model_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The raw `tokenizer.chat_template` source, if any.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Compiles the model's chat template, with `bos_token`/`eos_token` set
    /// from this vocabulary. Fails with [`TokenizerError::NoChatTemplate`]
    /// when the model has none.
    pub fn chat_template(&self) -> Result<ChatTemplate, TokenizerError> {
        let model = self.name.clone().unwrap_or_else(|| "(unnamed)".to_owned());
        let Some(source) = &self.chat_template else {
            return Err(TokenizerError::NoChatTemplate { model });
        };
        let text = |id: Option<u32>| id.and_then(|i| self.token_text(i)).unwrap_or("");
        ChatTemplate::new(source, text(self.bos()), text(self.eos()), &model)
    }
}
