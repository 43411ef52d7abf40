//! The one error type of this crate.

/// Everything that can go wrong loading a model or generating text.
///
/// Variants raised while *loading* name the architecture, metadata key or tensor at fault: they
/// come from a model file that is corrupt, hostile, or needs something this engine does not
/// implement. Variants raised while *generating* come from the request (prompt too long,
/// invalid sampling parameters) or from a caller bug (unknown sequence id).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The GGUF file could not be read or is malformed (the reader names the offset/key/tensor).
    #[error(transparent)]
    Gguf(#[from] airlock_gguf::GgufError),

    /// The tokenizer or chat template in the file could not be built or used.
    #[error(transparent)]
    Tokenizer(#[from] airlock_tokenizer::TokenizerError),

    /// `general.architecture` names a model family this engine does not run.
    #[error(
        "unsupported architecture {arch:?} (key general.architecture); supported: \"llama\", \"qwen2\""
    )]
    UnsupportedArchitecture { arch: String },

    /// Embeddings need a pooling this engine does not implement (or the key is malformed).
    #[error(
        "embeddings are not available for this model: {key} = {value} (supported: 0 none, 1 mean, 2 cls, 3 last)"
    )]
    UnsupportedPooling { key: String, value: String },

    /// The architecture is supported but this file needs a feature we do not implement.
    #[error("unsupported {arch} model: {key} = {value} ({reason})")]
    Unsupported {
        arch: String,
        key: String,
        value: String,
        reason: &'static str,
    },

    /// A hyper-parameter is missing, zero, or inconsistent with the others.
    #[error("invalid {arch} model: {key}: {reason}")]
    InvalidConfig {
        arch: String,
        key: String,
        reason: String,
    },

    /// A tensor has the wrong shape for the configuration in the metadata.
    #[error("tensor {name}: dims {got:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<u64>,
        got: Vec<u64>,
    },

    /// A tensor that must be small and dense (a norm weight) has a type we cannot read as f32.
    #[error("tensor {name}: type {ty} is not supported here ({reason})")]
    TensorType {
        name: String,
        ty: airlock_gguf::GgmlType,
        reason: &'static str,
    },

    /// The prompt plus the tokens to generate do not fit in the model's context window.
    #[error(
        "context length exceeded: {needed} tokens needed (prompt {prompt} + up to {max_new} new), the model's context is {limit}"
    )]
    ContextOverflow {
        needed: usize,
        prompt: usize,
        max_new: usize,
        limit: usize,
    },

    /// The prompt encodes to no tokens at all (nothing to condition on).
    #[error("empty prompt: it encodes to no tokens")]
    EmptyPrompt,

    /// A token id at or above the vocabulary size (a caller bug or hostile input).
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },

    /// A sampling parameter is out of its valid range.
    #[error("invalid sampling parameter {name} = {value}: {reason}")]
    InvalidSampling {
        name: &'static str,
        value: String,
        reason: &'static str,
    },

    /// The model has no chat template and a chat prompt was asked for.
    #[error("model {model} has no chat template (tokenizer.chat_template); use a plain prompt")]
    NoChatTemplate { model: String },

    /// A sequence id that is not (or no longer) in the batch: a caller bug.
    #[error("unknown sequence id {id}")]
    UnknownSequence { id: u64 },

    /// A KV-cache slot appears twice in one forward pass (a caller bug).
    #[error("KV-cache slot {slot} appears twice in one batch")]
    DuplicateSlot { slot: usize },

    /// A backend was asked for that this build does not include (an operator's choice).
    #[error(
        "backend {backend} is not built in (available: {available}); rebuild with --features {backend}"
    )]
    BackendUnavailable {
        backend: &'static str,
        available: String,
    },

    /// The backend is built in but could not run the model: no driver or device, or the
    /// runtime failed compiling a kernel (its message, from the warm-up at load).
    #[error("backend {backend} cannot run the model: {message}")]
    BackendFailed {
        backend: &'static str,
        message: String,
    },
}

/// The message of a caught panic (burn's GPU runtimes report a missing driver by panicking).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("the runtime panicked")
        .to_owned()
}

/// Shorthand used throughout the crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
