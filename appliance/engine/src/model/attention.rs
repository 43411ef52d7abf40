//! Grouped-query self-attention with a per-sequence KV cache.
//!
//! Query head `h` attends with key/value head `h / group` (llama.cpp's GQA mapping). The
//! `group` query heads sharing a key/value head are stacked into one matrix product per
//! key/value head, so keys and values are never repeated in memory (the tensor-op path, for
//! backends without fused ops; flex runs [`fused::attention`]).
//!
//! On the CPU (flex) every chunk, one decode token or a 512-token prompt chunk, runs through
//! [`fused::attention`], which computes each query row alone in a fixed order: a token's
//! output is bitwise the same however its sequence was split into chunks. That is what lets
//! the prefix cache (`crate::prefix`) resume a prompt from cached keys/values and still
//! produce exactly the tokens of a cold run (with token-invariant matrix products too: see
//! `crate::ops`). The tensor-op path (GPU features) is not chunk-invariant: reuse there may
//! change low-order bits.

use std::sync::Arc;

use airlock_gguf::GgufFile;
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::rope::Rope;
use super::{dense_vector, load_matrix};
use crate::error::Result;
use crate::fused;
use crate::kv_cache::KvCache;
use crate::ops::{q_linear, q_linear_multi};
use crate::qweight::QWeight;

/// Where one sequence's tokens sit in a batched forward pass.
#[derive(Debug, Clone, Copy)]
pub struct SeqSpan {
    /// KV-cache slot of the sequence.
    pub slot: usize,
    /// First row of the sequence in the batch's `[tokens, d_model]` activation.
    pub offset: usize,
    /// Number of new tokens.
    pub len: usize,
    /// Position of the first new token (tokens already in the cache).
    pub start: usize,
}

/// Configuration of an [`Attention`] block.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Residual width.
    pub d_model: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Load and add `blk.N.attn_{q,k,v}.bias` (`qwen2`); required when set.
    #[config(default = false)]
    pub qkv_bias: bool,
}

impl AttentionConfig {
    /// Loads `blk.{layer}.attn_{q,k,v,output}.weight`, and `attn_{q,k,v}.bias` if
    /// [`AttentionConfig::qkv_bias`] (a missing one is an error naming it).
    pub fn load(&self, file: &Arc<GgufFile>, layer: usize, device: &Device) -> Result<Attention> {
        let m =
            |n: &str, rows, cols| load_matrix(file, &format!("blk.{layer}.{n}.weight"), rows, cols);
        let (q, kv) = (
            self.n_heads * self.head_dim,
            self.n_kv_heads * self.head_dim,
        );
        let bias = |n: &str, len: usize| -> Result<Tensor<2>> {
            let v = dense_vector(file, &format!("blk.{layer}.{n}.bias"), len)?;
            // [1, len], broadcast over the tokens.
            Ok(Tensor::from_data(TensorData::new(v, [1, len]), device))
        };
        let biases = if self.qkv_bias {
            Some(QkvBias {
                q: bias("attn_q", q)?,
                k: bias("attn_k", kv)?,
                v: bias("attn_v", kv)?,
            })
        } else {
            None
        };
        Ok(Attention {
            biases,
            wq: m("attn_q", q, self.d_model)?,
            wk: m("attn_k", kv, self.d_model)?,
            wv: m("attn_v", kv, self.d_model)?,
            wo: m("attn_output", self.d_model, q)?,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            round_kv_f16: true,
        })
    }
}

/// The biases added to the query, key and value projections (`qwen2`), before RoPE.
#[derive(Module, Debug)]
pub struct QkvBias {
    /// `[1, n_heads * head_dim]`
    pub q: Tensor<2>,
    /// `[1, n_kv_heads * head_dim]`
    pub k: Tensor<2>,
    /// `[1, n_kv_heads * head_dim]`
    pub v: Tensor<2>,
}

/// Self-attention of one layer; projections stay quantized.
#[derive(Module, Debug)]
pub struct Attention {
    /// Projection biases (`qwen2`), none for `llama`.
    pub biases: Option<QkvBias>,
    /// `[n_heads * head_dim, d_model]`
    #[module(skip)]
    pub wq: QWeight,
    /// `[n_kv_heads * head_dim, d_model]`
    #[module(skip)]
    pub wk: QWeight,
    /// `[n_kv_heads * head_dim, d_model]`
    #[module(skip)]
    pub wv: QWeight,
    /// `[d_model, n_heads * head_dim]`
    #[module(skip)]
    pub wo: QWeight,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Round keys and values to f16 precision before caching (they stay f32 in our cache), as
    /// llama.cpp's default f16 KV cache stores them, and what multiplies them (queries,
    /// softmax weights) as its `ggml_mul_mat` converts them to the cache's f16 dot type.
    pub round_kv_f16: bool,
}

impl Attention {
    /// `x`: `[tokens, d_model]` holding the new tokens of every sequence in `spans` →
    /// `[tokens, d_model]`. Writes each sequence's keys/values into its cache slot.
    pub fn forward(
        &self,
        x: Tensor<2>,
        spans: &[SeqSpan],
        layer: usize,
        cache: &mut KvCache,
        rope: &Rope,
    ) -> Result<Tensor<2>> {
        let (h, kvh, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        // [tokens, h * hd], [tokens, kvh * hd] x2
        let (qd, kvd) = (h * hd, kvh * hd);
        let qkv = q_linear_multi(x, &[&self.wq, &self.wk, &self.wv]);
        let mut q = qkv.clone().narrow(1, 0, qd);
        let mut k = qkv.clone().narrow(1, qd, kvd);
        let mut v = qkv.narrow(1, qd + kvd, kvd);
        // llm_build_qwen2: `Qcur = ggml_add(Qcur, model.layers[il].bq)` (likewise K, V), in
        // f32, before RoPE.
        if let Some(b) = &self.biases {
            q = q.add(b.q.clone());
            k = k.add(b.k.clone());
            v = v.add(b.v.clone());
        }
        let mut outs = Vec::with_capacity(spans.len());
        for s in spans {
            let n = s.len;
            let heads = |t: Tensor<2>, nh: usize| {
                // [n, nh * hd] -> [nh, n, hd]
                t.narrow(0, s.offset, n)
                    .reshape([n, nh, hd])
                    .swap_dims(0, 1)
            };
            let qs = rope.forward(heads(q.clone(), h), s.start);
            // llama.cpp multiplies its f16 key cache with the queries converted to f16 (the
            // cache's dot type; `ggml_mul_mat` on an F16 `src0`): round them the same way.
            let qs = if self.round_kv_f16 {
                fused::round_f16(qs)
            } else {
                qs
            };
            let ks = rope.forward(heads(k.clone(), kvh), s.start);
            let vs = heads(v.clone(), kvh);
            crate::trace::tensor(|| format!("Qcur-{layer}"), &qs);
            crate::trace::tensor(|| format!("Kcur-{layer}"), &ks);
            crate::trace::tensor(|| format!("Vcur-{layer}"), &vs);
            // llama.cpp stores keys and values as f16 (its default KV cache type): round them
            // the same way, which halves our logit differences from its reference outputs.
            let (ks, vs) = if self.round_kv_f16 {
                (fused::round_f16(ks), fused::round_f16(vs))
            } else {
                (ks, vs)
            };
            // [kvh, L, hd] with L = start + n
            let (k_all, v_all) = cache.append(s.slot, layer, ks, vs)?;
            // [n, h * hd] in one pass over the cache, decode steps and prompts alike: on flex
            // it reproduces llama.cpp's arithmetic exactly (`kernels::ggml`), which batched
            // products and burn's softmax cannot (their last bits differ, and the 8-bit
            // activations downstream amplify that to ~0.8 in the logits); on a GPU it is one
            // kernel (`cube/fused.rs`).
            outs.push(fused::attention(
                qs,
                k_all,
                v_all,
                s.start,
                self.round_kv_f16,
            ));
        }
        let o = Tensor::cat(outs, 0);
        crate::trace::tensor(|| format!("kqv_out-{layer}"), &o);
        Ok(q_linear(o, &self.wo))
    }
}
