//! Embeddings: one vector per input text, pooled from the model's final hidden states and
//! L2-normalised, as llama.cpp computes them (`llama_get_embeddings_seq` after
//! `result_norm`).
//!
//! The pooling is the one the GGUF declares (`{arch}.pooling_type`), else mean pooling,
//! which is what llama.cpp's server is usually run with for decoder models and what
//! retrieval over a chat model's states works best with among the three. Inputs run through
//! the ordinary forward pass (causal attention, the same kernels), each in a KV-cache slot
//! of its own that is freed as soon as its vector is taken.

use airlock_gguf::GgufFile;

use crate::batch::PROMPT_CHUNK;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::model::{Llama, Logits, SeqInput};

/// How a sequence's hidden states become one vector (llama.cpp's `llama_pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over every token (`LLAMA_POOLING_TYPE_MEAN`).
    Mean,
    /// The first token's state (`LLAMA_POOLING_TYPE_CLS`).
    Cls,
    /// The last token's state (`LLAMA_POOLING_TYPE_LAST`: Qwen3-Embedding and other
    /// decoder-based embedding models).
    Last,
}

impl Pooling {
    /// The pooling `file` declares under `{arch}.pooling_type`: absent or `0` (none: one
    /// vector per token, which OpenAI's API cannot return) mean [`Pooling::Mean`]; `4`
    /// (rank, for rerankers) and unknown values are refused with the key named.
    pub fn from_gguf(file: &GgufFile, arch: &str) -> Result<Pooling> {
        let key = format!("{arch}.pooling_type");
        let value = match file.metadata().get(&key) {
            None => return Ok(Pooling::Mean),
            Some(v) => v.as_integer(),
        };
        match value {
            Some(0 | 1) => Ok(Pooling::Mean),
            Some(2) => Ok(Pooling::Cls),
            Some(3) => Ok(Pooling::Last),
            other => Err(EngineError::UnsupportedPooling {
                key,
                value: other.map_or_else(|| "(not an integer)".to_owned(), |v| v.to_string()),
            }),
        }
    }

    /// The name OpenAI-style clients and the audit log see.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
        }
    }
}

/// Embeds each of `inputs` (token ids, each non-empty and within the context): runs them
/// through `model` in chunks of at most [`PROMPT_CHUNK`] tokens per forward pass, each in a
/// temporary slot of `cache`, and returns one L2-normalised vector per input.
pub fn embed(
    model: &Llama,
    cache: &mut KvCache,
    inputs: &[&[u32]],
    pooling: Pooling,
) -> Result<Vec<Vec<f32>>> {
    let d = model.config().d_model;
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        if input.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let slot = cache.allocate();
        let pooled = pool_one(model, cache, slot, input, pooling, d);
        cache.free(slot);
        let mut v = pooled?;
        normalise(&mut v);
        out.push(v);
    }
    Ok(out)
}

fn pool_one(
    model: &Llama,
    cache: &mut KvCache,
    slot: usize,
    input: &[u32],
    pooling: Pooling,
    d: usize,
) -> Result<Vec<f32>> {
    // Summed in f64: thousands of rows, and the mean must not depend on the chunking.
    let mut acc = vec![0f64; d];
    for (i, chunk) in input.chunks(PROMPT_CHUNK).enumerate() {
        let hidden = model.forward(
            &[SeqInput {
                slot,
                tokens: chunk,
            }],
            cache,
            Logits::Hidden,
        )?;
        let rows = hidden.chunks_exact(d);
        match pooling {
            Pooling::Mean => {
                for row in rows {
                    for (a, &h) in acc.iter_mut().zip(row) {
                        *a += f64::from(h);
                    }
                }
            }
            Pooling::Cls if i == 0 => {
                if let Some(row) = rows.into_iter().next() {
                    acc = row.iter().map(|&h| f64::from(h)).collect();
                }
            }
            Pooling::Cls => {}
            Pooling::Last => {
                if let Some(row) = rows.last() {
                    acc = row.iter().map(|&h| f64::from(h)).collect();
                }
            }
        }
    }
    if pooling == Pooling::Mean {
        let n = input.len() as f64;
        acc.iter_mut().for_each(|a| *a /= n);
    }
    Ok(acc.into_iter().map(|a| a as f32).collect())
}

/// Scales `v` to unit length (a zero vector stays zero).
fn normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
}
