//! Reading a [`TokenizerSpec`] from GGUF metadata (`tokenizer.*`, `general.name`).

use airlock_gguf::{Array, GgufFile, Metadata};

use crate::error::TokenizerError;
use crate::spec::{TokenizerModel, TokenizerSpec};
use crate::tokenizer::Tokenizer;

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const SCORES: &str = "tokenizer.ggml.scores";
const MERGES: &str = "tokenizer.ggml.merges";

impl TokenizerSpec {
    /// Reads the tokenizer keys. Absent optional keys stay `None`/empty; a key
    /// of the wrong type is an error naming it.
    pub fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let model_name = md
            .get_opt::<&str>(MODEL)?
            .ok_or(TokenizerError::MissingKey { key: MODEL })?;
        let model = TokenizerModel::from_gguf_name(model_name).ok_or_else(|| {
            TokenizerError::UnsupportedModel {
                model: model_name.to_owned(),
            }
        })?;
        let tokens = md
            .get_opt::<&[String]>(TOKENS)?
            .ok_or(TokenizerError::MissingKey { key: TOKENS })?
            .to_vec();
        let mut spec = TokenizerSpec::new(model, tokens);
        spec.pre = md.get_opt::<&str>(PRE)?.map(str::to_owned);
        spec.token_types = md
            .get_opt::<&[i32]>(TOKEN_TYPE)?
            .map(<[i32]>::to_vec)
            .unwrap_or_default();
        // llama.cpp accepts f32 or i32 scores.
        spec.scores = match md.get_opt::<&Array>(SCORES)? {
            None => Vec::new(),
            Some(Array::F32(v)) => v.clone(),
            Some(Array::I32(v)) => v.iter().map(|&s| s as f32).collect(),
            Some(other) => {
                return Err(TokenizerError::InvalidKey {
                    key: SCORES,
                    reason: format!(
                        "expected an array of f32 or i32, found {}",
                        other.type_name()
                    ),
                });
            }
        };
        spec.merges = match md.get_opt::<&[String]>(MERGES)? {
            Some(m) => m.to_vec(),
            None if model == TokenizerModel::Gpt2 => {
                return Err(TokenizerError::MissingKey { key: MERGES });
            }
            None => Vec::new(),
        };
        spec.bos = md.get_opt("tokenizer.ggml.bos_token_id")?;
        spec.eos = md.get_opt("tokenizer.ggml.eos_token_id")?;
        spec.eot = md.get_opt("tokenizer.ggml.eot_token_id")?;
        spec.eom = md.get_opt("tokenizer.ggml.eom_token_id")?;
        spec.unk = md.get_opt("tokenizer.ggml.unknown_token_id")?;
        spec.add_bos = md.get_opt("tokenizer.ggml.add_bos_token")?;
        spec.add_eos = md.get_opt("tokenizer.ggml.add_eos_token")?;
        spec.add_space_prefix = md.get_opt("tokenizer.ggml.add_space_prefix")?;
        spec.chat_template = md
            .get_opt::<&str>("tokenizer.chat_template")?
            .map(str::to_owned);
        spec.name = md.get_opt::<&str>("general.name")?.map(str::to_owned);
        Ok(spec)
    }
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        Self::from_spec(&TokenizerSpec::from_metadata(file.metadata())?)
    }
}
