//! The checked vocabulary: token texts, attributes, decode pieces, special ids.
//!
//! Token attributes follow llama.cpp (`llama-vocab.cpp`, `load`): the GGUF
//! token type gives the base attribute, then tokens whose *text* marks them as
//! end-of-turn / fill-in-the-middle / end-of-generation markers get the CONTROL
//! bit even when the converter forgot it, and the end-of-generation set is
//! derived from the same texts plus the EOS/EOT/EOM ids. We copy these rules
//! because they decide which strings are special and when generation stops;
//! getting them wrong would make our token ids differ from llama.cpp's.
//!
//! Off-spec (llama.cpp picks "the first" of several candidate FIM tokens in hash
//! order, which is not deterministic): we give the CONTROL bit to every
//! candidate text, and take the lowest id as the FIM pad/repo/separator token.

use std::collections::{BTreeSet, HashMap};

use crate::error::TokenizerError;
use crate::spec::{TokenizerModel, TokenizerSpec, token_type};

/// Per-token attribute bits (llama.cpp's `llama_token_attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Attr(u16);

impl Attr {
    pub(crate) const UNKNOWN: Attr = Attr(1 << 0);
    pub(crate) const UNUSED: Attr = Attr(1 << 1);
    pub(crate) const NORMAL: Attr = Attr(1 << 2);
    pub(crate) const CONTROL: Attr = Attr(1 << 3);
    pub(crate) const USER_DEFINED: Attr = Attr(1 << 4);
    pub(crate) const BYTE: Attr = Attr(1 << 5);
    pub(crate) const LSTRIP: Attr = Attr(1 << 7);
    pub(crate) const RSTRIP: Attr = Attr(1 << 8);

    fn from_token_type(t: i32) -> Attr {
        match t {
            token_type::NORMAL => Attr::NORMAL,
            token_type::UNKNOWN => Attr::UNKNOWN,
            token_type::CONTROL => Attr::CONTROL,
            token_type::USER_DEFINED => Attr::USER_DEFINED,
            token_type::UNUSED => Attr::UNUSED,
            token_type::BYTE => Attr::BYTE,
            // UNDEFINED and any value a hostile file invents.
            _ => Attr(0),
        }
    }

    pub(crate) fn has(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    fn set(&mut self, other: Attr, on: bool) {
        if on {
            self.0 |= other.0
        } else {
            self.0 &= !other.0
        }
    }
}

/// Texts llama.cpp treats as end-of-generation markers (and forces to CONTROL).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle marker texts (forced to CONTROL).
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
/// FIM pad / repository / file-separator markers: CONTROL and end-of-generation.
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// The SentencePiece space marker U+2581.
pub(crate) const SPM_SPACE: &str = "\u{2581}";

/// A checked vocabulary. Invariant: `texts`, `attrs`, `scores` and `pieces`
/// have the same length `n <= u32::MAX`, `by_text` maps each text to its id,
/// and every id stored in this struct is `< n`.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub(crate) texts: Vec<String>,
    pub(crate) attrs: Vec<Attr>,
    pub(crate) scores: Vec<f32>,
    pub(crate) by_text: HashMap<String, u32>,
    /// Bytes each token decodes to (llama.cpp `token_to_piece(special = true)`).
    pub(crate) pieces: Vec<Box<[u8]>>,
    /// Ids of CONTROL / USER_DEFINED / UNKNOWN tokens, longest text first (ties
    /// by id), the order in which llama.cpp splits them out of text.
    pub(crate) special_by_len: Vec<u32>,
    pub(crate) eog: BTreeSet<u32>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) eot: Option<u32>,
    pub(crate) eom: Option<u32>,
    pub(crate) unk: Option<u32>,
}

impl Vocab {
    pub(crate) fn new(spec: &TokenizerSpec) -> Result<Self, TokenizerError> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::VocabTooLarge { len: n });
        }
        if !spec.token_types.is_empty() && spec.token_types.len() < n {
            return Err(TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.token_type",
                expected: n,
                got: spec.token_types.len(),
            });
        }
        if !spec.scores.is_empty() && spec.scores.len() < n {
            return Err(TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.scores",
                expected: n,
                got: spec.scores.len(),
            });
        }

        let mut texts = Vec::with_capacity(n);
        let mut by_text = HashMap::with_capacity(n);
        for (i, text) in spec.tokens.iter().enumerate() {
            let id = i as u32; // n <= u32::MAX checked above
            // As llama.cpp: an empty entry cannot be matched or produced, but it
            // still takes its id; give it a unique placeholder text.
            let text = if text.is_empty() {
                format!("[EMPTY_{id}]")
            } else {
                text.clone()
            };
            if let Some(&first) = by_text.get(&text) {
                return Err(TokenizerError::DuplicateToken {
                    text,
                    first,
                    second: id,
                });
            }
            by_text.insert(text.clone(), id);
            texts.push(text);
        }
        let mut attrs: Vec<Attr> = (0..n)
            .map(|i| match spec.token_types.get(i) {
                Some(&t) => Attr::from_token_type(t),
                None => Attr::NORMAL,
            })
            .collect();
        let scores: Vec<f32> = (0..n)
            .map(|i| spec.scores.get(i).copied().unwrap_or(0.0))
            .collect();

        let check = |key: &'static str, id: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            match id {
                Some(id) if id as usize >= n => Err(TokenizerError::SpecialIdOutOfRange {
                    key,
                    id: u64::from(id),
                    vocab_size: n,
                }),
                other => Ok(other),
            }
        };
        // Family defaults when the key is absent, as llama.cpp (dropped when
        // outside the vocabulary).
        let (default_bos, default_eos, default_unk) = match spec.model {
            TokenizerModel::Llama => (Some(1), Some(2), Some(0)),
            TokenizerModel::Gpt2 => (Some(11), Some(11), None),
        };
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let bos = check("tokenizer.ggml.bos_token_id", spec.bos)?.or(in_range(default_bos));
        let eos = check("tokenizer.ggml.eos_token_id", spec.eos)?.or(in_range(default_eos));
        let unk = check("tokenizer.ggml.unknown_token_id", spec.unk)?.or(in_range(default_unk));
        let mut eot = check("tokenizer.ggml.eot_token_id", spec.eot)?;
        let mut eom = check("tokenizer.ggml.eom_token_id", spec.eom)?;

        let lookup = |list: &[&str]| -> Vec<u32> {
            let mut ids: Vec<u32> = list
                .iter()
                .filter_map(|t| by_text.get(*t).copied())
                .collect();
            ids.sort_unstable();
            ids
        };
        let force_control = |ids: &[u32], attrs: &mut Vec<Attr>| {
            for &id in ids {
                attrs[id as usize].set(Attr::CONTROL, true);
            }
        };
        let eog_text_ids = lookup(EOG_TEXTS);
        if eot.is_none() {
            // The EOT candidates are all in EOG_TEXTS; llama.cpp's order among
            // several is unspecified, we take the lowest id.
            eot = lookup(&[
                "<|eot_id|>",
                "<|im_end|>",
                "<|end|>",
                "<end_of_turn>",
                "<|endoftext|>",
                "<|end_of_text|>",
                "<EOT>",
                "_<EOT>",
                "[EOT]",
                "<｜end▁of▁sentence｜>",
                "<end_of_utterance>",
            ])
            .first()
            .copied();
        }
        if eom.is_none() {
            eom = by_text.get("<|eom_id|>").copied();
        }
        force_control(&eog_text_ids, &mut attrs);
        for list in [FIM_PRE_TEXTS, FIM_SUF_TEXTS, FIM_MID_TEXTS] {
            force_control(&lookup(list), &mut attrs);
        }
        let mut eog: BTreeSet<u32> = eog_text_ids.iter().copied().collect();
        for list in [FIM_PAD_TEXTS, FIM_REP_TEXTS, FIM_SEP_TEXTS] {
            let ids = lookup(list);
            force_control(&ids, &mut attrs);
            if let Some(&first) = ids.first() {
                eog.insert(first);
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());

        let mut special_by_len: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize].has(Attr(
                    Attr::CONTROL.0 | Attr::USER_DEFINED.0 | Attr::UNKNOWN.0,
                ))
            })
            .collect();
        special_by_len.sort_by(|&a, &b| {
            texts[b as usize]
                .len()
                .cmp(&texts[a as usize].len())
                .then(a.cmp(&b))
        });

        // Per-model attributes llama.cpp derives from `general.name`.
        let name = spec.name.as_deref().unwrap_or("").to_ascii_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_by_len {
                attrs[id as usize].set(Attr::RSTRIP, true);
            }
            if let Some(&id) = by_text.get("</s>") {
                attrs[id as usize].set(Attr::RSTRIP, true);
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = by_text.get(t) {
                    attrs[id as usize].set(Attr::RSTRIP, false);
                }
            }
        }

        let pieces = texts
            .iter()
            .zip(&attrs)
            .map(|(text, &attr)| piece(spec.model, text, attr))
            .collect();

        Ok(Self {
            texts,
            attrs,
            scores,
            by_text,
            pieces,
            special_by_len,
            eog,
            bos,
            eos,
            eot,
            eom,
            unk,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether decoding without special tokens drops this token (llama.cpp
    /// `token_to_piece(special = false)` drops CONTROL and UNKNOWN tokens).
    pub(crate) fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a.has(Attr(Attr::CONTROL.0 | Attr::UNKNOWN.0)))
    }
}

/// What a token decodes to (llama.cpp `token_to_piece`, `special = true`).
fn piece(model: TokenizerModel, text: &str, attr: Attr) -> Box<[u8]> {
    if attr.has(Attr(
        Attr::UNKNOWN.0 | Attr::CONTROL.0 | Attr::USER_DEFINED.0,
    )) {
        return text.as_bytes().into();
    }
    if attr.has(Attr::NORMAL) {
        return match model {
            TokenizerModel::Llama => text.replace(SPM_SPACE, " ").into_bytes().into(),
            TokenizerModel::Gpt2 => crate::bytelevel::decode_chars(text),
        };
    }
    if attr.has(Attr::BYTE) {
        return match parse_byte_token(text) {
            Some(b) => Box::new([b]),
            // A BYTE token whose text is not <0xXX>: a malformed vocabulary.
            None => Box::new([]),
        };
    }
    // UNUSED, UNDEFINED: llama.cpp renders nothing.
    Box::new([])
}

/// Parses a byte-fallback token `<0xXX>`.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
