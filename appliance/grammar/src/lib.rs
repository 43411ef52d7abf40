//! Constrained decoding: a [`Grammar`] (a JSON schema, "any JSON object", or a Lark grammar
//! such as a tool-call format) compiled against one model's vocabulary into a
//! [`Constraint`], which the engine asks before every token which tokens may come next.
//!
//! The grammar engine is llguidance (Microsoft's, used by llama.cpp, vLLM and SGLang). It
//! computes a token mask lazily from the grammar's lexer and an Earley parser over a trie of
//! the vocabulary, so nothing is precompiled per schema (outlines-core builds a whole index
//! per schema up front and pulls a model-hub client by default; ARCHITECTURE.md, "Constrained
//! decoding", has the comparison). The vocabulary comes from the GGUF tokenizer the engine
//! already uses: each token's bytes, control tokens marked as special so that no grammar
//! text can produce them.
//!
//! A [`Vocabulary`] is built once per loaded model (the trie over every token, a few hundred
//! milliseconds for 50k tokens); [`Vocabulary::compile`] then takes milliseconds per request.

mod json;
pub mod tools;

use std::fmt;
use std::sync::Arc;

use airlock_engine::airlock_tokenizer::{EncodeOptions, Tokenizer};
use airlock_engine::{Engine, TokenConstraint, TokenMask};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

pub use json::{JsonGrammarError, MAX_SCHEMA_BYTES, client_schema, json_object, json_schema};

/// Why a grammar could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The schema or grammar uses something the engine does not support, or is invalid;
    /// the message names it (llguidance's words).
    #[error("{0}")]
    Unsupported(String),
    /// The model's vocabulary could not be indexed.
    #[error("the model's vocabulary cannot be used for constrained decoding: {0}")]
    Vocabulary(String),
}

/// What a constrained generation must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// A JSON schema, already checked by [`json_schema`] (OpenAI `json_schema`).
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark dialect (tool-call formats).
    Lark(String),
}

/// One model's vocabulary, indexed for mask computation. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Vocabulary {
    factory: Arc<ParserFactory>,
    eog: Arc<[u32]>,
    eos: u32,
}

impl fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vocabulary")
            .field("eos", &self.eos)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

impl Vocabulary {
    /// Indexes `engine`'s vocabulary (the engine is kept for tokenizing forced text).
    pub fn new(engine: Arc<Engine>) -> Result<Vocabulary, GrammarError> {
        let tok = engine.tokenizer();
        // The token a finished grammar asks for: the end of a turn where the model has one
        // (chat models end answers with it), else end of sequence.
        let eog: Vec<u32> = tok.eog_ids().collect();
        let eos = tok
            .eot()
            .or(tok.eos())
            .or(eog.first().copied())
            .ok_or_else(|| GrammarError::Vocabulary("it has no end-of-generation token".into()))?;
        let vocab = tok.vocab_size();
        let words: Vec<Vec<u8>> = (0..vocab as u32)
            .map(|id| {
                let bytes = tok.token_bytes(id).unwrap_or_default();
                if tok.is_control(id) {
                    // toktrie's marker: grammars can name such a token, never spell it.
                    let mut marked = Vec::with_capacity(bytes.len() + 1);
                    marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    marked.extend_from_slice(bytes);
                    marked
                } else {
                    bytes.to_vec()
                }
            })
            .collect();
        let mut info = TokRxInfo::new(vocab as u32, eos);
        info.tok_bos = tok.bos();
        info.tok_unk = tok.unk();
        info.tok_end_of_turn = tok.eot();
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(ModelTokens { trie, engine });
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| GrammarError::Vocabulary(e.to_string()))?;
        // Nothing on stderr: a client's bad schema is answered as a 400, not logged raw.
        factory.quiet();
        Ok(Vocabulary {
            factory: Arc::new(factory),
            eog: eog.into(),
            eos,
        })
    }

    /// Compiles `grammar` into a fresh constraint for one generation.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint, GrammarError> {
        let top = match grammar {
            Grammar::JsonSchema(schema) => TopLevelGrammar::from_json_schema(schema.clone()),
            Grammar::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| GrammarError::Unsupported(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError::Unsupported(e));
        }
        Ok(Constraint {
            matcher,
            eog: Arc::clone(&self.eog),
            eos: self.eos,
            vocab: self.factory.tok_env().tok_trie().vocab_size(),
        })
    }
}

/// The engine's tokenizer as llguidance sees it.
struct ModelTokens {
    trie: TokTrie,
    engine: Arc<Engine>,
}

impl TokenizerEnv for ModelTokens {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        let tokenizer: &Tokenizer = self.engine.tokenizer();
        match std::str::from_utf8(s) {
            Ok(text) => tokenizer
                .encode(text, EncodeOptions::PLAIN)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            // Part of a character: only the trie can spell it.
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// A grammar's state during one generation; see [`TokenConstraint`].
pub struct Constraint {
    matcher: Matcher,
    eog: Arc<[u32]>,
    eos: u32,
    vocab: usize,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Feeds tokens the model was given rather than chose (an answer's forced start): they
    /// must be allowed, in order.
    pub fn force(&mut self, tokens: &[u32]) -> Result<(), GrammarError> {
        self.matcher
            .consume_tokens(tokens)
            .map_err(|e| GrammarError::Unsupported(e.to_string()))
    }

    /// Whether the text so far is a complete match.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// The size of the vocabulary the masks cover.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }
}

impl TokenConstraint for Constraint {
    fn allowed(&mut self, mask: &mut TokenMask) -> Result<(), String> {
        let vob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        mask.copy_from_words(vob.as_slice());
        // Any end-of-generation token ends a complete answer, not only the one llguidance
        // knows: a chat model may close with `<|im_end|>` or `<|endoftext|>`.
        if mask.is_allowed(self.eos) {
            for &id in self.eog.iter() {
                mask.allow(id);
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        let token = if self.eog.contains(&token) {
            self.eos
        } else {
            token
        };
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }

    fn is_complete(&mut self) -> bool {
        self.matcher.is_stopped()
    }
}
