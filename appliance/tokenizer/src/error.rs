//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong while building a tokenizer from model metadata,
/// encoding text or rendering a chat template.
///
/// Variants raised while *building* name the metadata key or token at fault:
/// they are caused by a malformed or hostile model file (or one that needs
/// something this crate does not support). Variants raised while *encoding* or
/// *rendering* are caused by the input text or messages.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names a tokenizer family we do not implement.
    #[error(
        "unsupported tokenizer model {model:?} (key tokenizer.ggml.model); supported: \"gpt2\", \"llama\""
    )]
    UnsupportedModel { model: String },

    /// `tokenizer.ggml.pre` names a pre-tokenizer we do not implement. We
    /// refuse rather than split text with the wrong rules.
    #[error("unsupported pre-tokenizer {pre:?} (key tokenizer.ggml.pre); supported: {supported}")]
    UnsupportedPreTokenizer {
        pre: String,
        supported: &'static str,
    },

    /// A metadata key is present with a type we cannot use (reported by the
    /// GGUF reader, which names the key).
    #[error(transparent)]
    Metadata(#[from] airlock_gguf::GgufError),

    /// A required metadata key is absent.
    #[error("missing metadata key {key}")]
    MissingKey { key: &'static str },

    /// A metadata key has the wrong type or a value we cannot use.
    #[error("invalid metadata key {key}: {reason}")]
    InvalidKey { key: &'static str, reason: String },

    /// The vocabulary is empty.
    #[error("empty vocabulary (key tokenizer.ggml.tokens)")]
    EmptyVocab,

    /// The vocabulary is too large for 32-bit token ids.
    #[error("vocabulary has {len} tokens, more than 32-bit ids can address")]
    VocabTooLarge { len: usize },

    /// A per-token array (`token_type`, `scores`) is shorter than the vocabulary.
    #[error("{key} has {got} entries but the vocabulary has {expected} tokens")]
    LengthMismatch {
        key: &'static str,
        expected: usize,
        got: usize,
    },

    /// Two vocabulary entries have the same text: ids would be ambiguous.
    #[error("duplicate token {text:?} at ids {first} and {second} (key tokenizer.ggml.tokens)")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },

    /// A special-token id in the metadata points outside the vocabulary.
    #[error("{key} = {id} is outside the vocabulary of {vocab_size} tokens")]
    SpecialIdOutOfRange {
        key: &'static str,
        id: u64,
        vocab_size: usize,
    },

    /// `add_bos_token`/`add_eos_token` asks for a token the model does not define.
    #[error("{flag} is true but {id_key} is not set")]
    MissingSpecialToken {
        flag: &'static str,
        id_key: &'static str,
    },

    /// A BPE merge rule is malformed or refers to text not in the vocabulary.
    #[error("invalid merge #{index} {merge:?} (key tokenizer.ggml.merges): {reason}")]
    InvalidMerge {
        index: usize,
        merge: String,
        reason: &'static str,
    },

    /// The byte-level BPE model could not be assembled.
    #[error("cannot build the BPE model: {reason}")]
    BpeBuild { reason: String },

    /// A SentencePiece vocabulary has no token for a byte it must fall back to.
    #[error(
        "the vocabulary has no byte-fallback token <0x{byte:02X}> (needed to encode the input)"
    )]
    MissingByteToken { byte: u8 },

    /// The text could not be encoded (pre-tokenizer regex limits and the like).
    #[error("cannot encode text: {reason}")]
    Encode { reason: String },

    /// The model has no chat template (`tokenizer.chat_template`).
    #[error("model {model} has no chat template (key tokenizer.chat_template)")]
    NoChatTemplate { model: String },

    /// The chat template does not parse.
    #[error("chat template of model {model} does not compile: {source}")]
    TemplateSyntax {
        model: String,
        #[source]
        source: minijinja::Error,
    },

    /// Rendering failed, including a `raise_exception(...)` called by the template
    /// itself (for example when roles do not alternate).
    #[error("chat template rendering failed: {source}")]
    TemplateRender {
        #[source]
        source: minijinja::Error,
    },

    /// A message's content holds one of the Unicode noncharacters that delimit content while
    /// a template renders (caused by the client: real text never contains them).
    #[error(
        "message {message} contains the character U+{code:04X}, a Unicode noncharacter reserved for internal use",
        code = u32::from(*character)
    )]
    ReservedCharacter { message: usize, character: char },

    /// A key or value in the tools or tool calls holds a character reserved for marking
    /// client text, or a key holds one that special-token text needs (`<>[]|`).
    #[error("tool definitions and tool calls may not contain {character:?} here: {text:?}")]
    ReservedToolCharacter { text: String, character: char },

    /// The chat template rewrote message content so that its bounds are lost (dropped,
    /// split or nested them). Refused rather than guessing which text is the client's,
    /// since that text must never be parsed for special tokens.
    #[error(
        "the model's chat template alters message content in a way that hides where it begins and ends: {reason}"
    )]
    TemplateAltersContent { reason: &'static str },
}
