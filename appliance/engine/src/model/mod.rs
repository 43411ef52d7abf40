//! The `llama` architecture (SmolLM2, Llama 2/3, Mistral): token embedding, `n_layers` blocks
//! of pre-norm grouped-query attention and SwiGLU MLP, final RMSNorm, tied or separate output
//! head; and `qwen2` (Qwen2, Qwen2.5), the same graph with Q/K/V projection biases and NEOX
//! RoPE ([`crate::config::Architecture`] says which).
//!
//! Tensors are burn's runtime-dispatched `Tensor<D>` on a [`Device`]: the same code runs on any
//! backend that implements [`crate::ops::QuantizedMatmul`] (flex, the CPU backend; burn's cube
//! backend with the `wgpu`/`cuda` features, see [`crate::device`]).
//! Tensor names follow llama.cpp (`token_embd`, `blk.N.attn_q`, `output_norm`, `output`).

pub mod attention;
pub mod mlp;
pub mod norm;
pub mod rope;

use std::sync::Arc;

use airlock_gguf::{GgmlType, GgufFile};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use self::attention::{Attention, AttentionConfig, SeqSpan};
use self::mlp::{Mlp, MlpConfig};
use self::norm::{RmsNorm, RmsNormConfig};
use self::rope::{Rope, RopeConfig};
use crate::config::LlamaConfig;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::ops::q_linear;
use crate::qweight::QWeight;
use crate::step::{self, LayerWeights, StepDims, StepPlan};
use crate::trace;

/// New tokens of one sequence in a batched forward pass.
#[derive(Debug, Clone, Copy)]
pub struct SeqInput<'a> {
    /// The sequence's KV-cache slot ([`KvCache::allocate`]).
    pub slot: usize,
    /// Tokens to append (a whole prompt, a prompt chunk, or one sampled token).
    pub tokens: &'a [u32],
}

/// Which positions' logits [`Llama::forward`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// The last new token of each sequence: `[sequences, vocab]` (generation).
    Last,
    /// Every new token: `[tokens, vocab]` (scoring, teacher-forced tests).
    All,
    /// No logits: every new token's final hidden state, after the output norm, `[tokens,
    /// d_model]` (embeddings; llama.cpp's `result_norm`).
    Hidden,
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block {
    /// Pre-attention norm (`attn_norm`).
    pub attn_norm: RmsNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Pre-MLP norm (`ffn_norm`).
    pub ffn_norm: RmsNorm,
    /// Feed-forward block.
    pub mlp: Mlp,
}

/// A loaded Llama-family model.
#[derive(Module, Debug)]
pub struct Llama {
    /// `[vocab, d_model]`, rows decoded on lookup.
    #[module(skip)]
    pub embed: QWeight,
    /// The transformer blocks.
    pub blocks: Vec<Block>,
    /// Final norm (`output_norm`).
    pub norm: RmsNorm,
    /// `[vocab, d_model]` (the embedding itself when tied).
    #[module(skip)]
    pub output: QWeight,
    /// Rotary embedding frequencies.
    pub rope: Rope,
    /// Hyper-parameters.
    #[module(skip)]
    pub config: LlamaConfig,
    /// Where the tensors live.
    #[module(skip)]
    pub device: Device,
    /// Run a lone sequence's one-token step as one recorded op where the backend has one
    /// ([`crate::step`]; the GPU backends); `false` runs every step op by op.
    #[module(skip)]
    pub step_graph: bool,
}

impl Llama {
    /// Loads a `llama` model from `file` onto `device`, weights left quantized in the mapping.
    pub fn load(file: &Arc<GgufFile>, device: &Device) -> Result<Llama> {
        let llama = Llama::load_exact(file, device)?;
        Ok(if *device == Device::flex() {
            llama.with_cpu_layout()
        } else {
            llama
        })
    }

    /// [`Llama::load`] without the CPU's interleaved copies of the weights: for a model that
    /// multiplies with f32 activations ([`Llama::with_exact_activations`]), which never reads
    /// them.
    pub(crate) fn load_exact(file: &Arc<GgufFile>, device: &Device) -> Result<Llama> {
        let config = LlamaConfig::from_gguf(file)?;
        let c = &config;
        let embed = load_matrix(file, "token_embd.weight", c.vocab_size, c.d_model)?;
        let output = match file.tensor("output.weight") {
            Some(_) => load_matrix(file, "output.weight", c.vocab_size, c.d_model)?,
            None => embed.clone(),
        };
        refuse_unused_biases(file, c)?;
        let norm_cfg = RmsNormConfig::new(c.d_model, c.rms_eps);
        let attn_cfg = AttentionConfig::new(c.d_model, c.n_heads, c.n_kv_heads, c.head_dim)
            .with_qkv_bias(c.arch.has_qkv_bias());
        let mlp_cfg = MlpConfig::new(c.d_model, c.d_ff);
        let blocks = (0..c.n_layers)
            .map(|l| {
                Ok(Block {
                    attn_norm: norm_cfg.load(file, &format!("blk.{l}.attn_norm.weight"), device)?,
                    attn: attn_cfg.load(file, l, device)?,
                    ffn_norm: norm_cfg.load(file, &format!("blk.{l}.ffn_norm.weight"), device)?,
                    mlp: mlp_cfg.load(file, l)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = norm_cfg.load(file, "output_norm.weight", device)?;
        let factors = match file.tensor("rope_freqs.weight") {
            Some(_) => Some(dense_vector(file, "rope_freqs.weight", c.head_dim / 2)?),
            None => None,
        };
        let rope = RopeConfig::new(c.head_dim, c.rope_theta)
            .with_position_scale(c.rope_position_scale)
            .with_style(c.arch.rope_style())
            .init(factors.as_deref());
        Ok(Llama {
            embed,
            blocks,
            norm,
            output,
            rope,
            config,
            device: device.clone(),
            step_graph: true,
        })
    }

    /// Multiplies every weight with f32 activations and keeps keys/values unrounded (`true`)
    /// instead of llama.cpp's 8-bit activations for Q4_0/Q4_1/Q8_0 weights and keys/values
    /// rounded to f16 as its f16 KV cache stores them (`false`, the default; the cache holds
    /// f32 either way): exact arithmetic on the decoded weights, for tests against an f64
    /// reference; slower.
    pub fn with_exact_activations(mut self, exact: bool) -> Llama {
        let set = |w: &mut QWeight| *w = w.clone().with_exact_activations(exact);
        set(&mut self.embed);
        set(&mut self.output);
        for b in &mut self.blocks {
            b.attn.round_kv_f16 = !exact;
            for w in [
                &mut b.attn.wq,
                &mut b.attn.wk,
                &mut b.attn.wv,
                &mut b.attn.wo,
            ] {
                set(w);
            }
            for w in [&mut b.mlp.gate, &mut b.mlp.up, &mut b.mlp.down] {
                set(w);
            }
        }
        self
    }

    /// Interleaves the rows of every matrix whose CPU kernel is faster that way
    /// ([`QWeight::with_interleaved_rows`]), matrices in parallel.
    fn with_cpu_layout(mut self) -> Llama {
        let mut ws: Vec<&mut QWeight> = vec![&mut self.output];
        for b in &mut self.blocks {
            ws.extend([
                &mut b.attn.wq,
                &mut b.attn.wk,
                &mut b.attn.wv,
                &mut b.attn.wo,
            ]);
            ws.extend([&mut b.mlp.gate, &mut b.mlp.up, &mut b.mlp.down]);
        }
        ws.into_par_iter()
            .for_each(|w| *w = w.clone().with_interleaved_rows());
        self
    }

    /// Runs a lone sequence's one-token steps as one recorded op where the backend has one
    /// (`true`, the default) or op by op (`false`: to compare the two).
    pub fn with_step_graph(mut self, on: bool) -> Llama {
        self.step_graph = on;
        self
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// A KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config, &self.device)
    }

    /// Runs the new tokens of every sequence in `batch` through the model, appending their
    /// keys/values to each sequence's slot, and returns logits (`f32`, row-major) as `which`
    /// says: `[batch.len(), vocab]` or `[total tokens, vocab]`.
    ///
    /// Fails without touching the cache if a token is out of range, a slot is unknown or a
    /// sequence would pass the context length.
    pub fn forward(
        &self,
        batch: &[SeqInput<'_>],
        cache: &mut KvCache,
        which: Logits,
    ) -> Result<Vec<f32>> {
        // The whole pass runs on one of rayon's workers: the kernels' parallel loops then fork
        // from a worker (the other workers steal halves while this one keeps computing) instead
        // of each loop handing its work to the pool and putting the caller to sleep until the
        // pool wakes it (two cross-thread wake-ups per matrix product, ~150 per decode step).
        rayon::scope(|_| self.forward_on_worker(batch, cache, which))
    }

    fn forward_on_worker(
        &self,
        batch: &[SeqInput<'_>],
        cache: &mut KvCache,
        which: Logits,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut spans = Vec::with_capacity(batch.len());
        let mut offset = 0;
        for s in batch {
            if s.tokens.is_empty() {
                return Err(EngineError::EmptyPrompt);
            }
            if let Some(&id) = s.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(EngineError::TokenOutOfRange {
                    id,
                    vocab: c.vocab_size,
                });
            }
            if spans.iter().any(|p: &SeqSpan| p.slot == s.slot) {
                // One slot twice in a batch would write the same positions twice.
                return Err(EngineError::DuplicateSlot { slot: s.slot });
            }
            let start = cache
                .len(s.slot)
                .ok_or(EngineError::UnknownSequence { id: s.slot as u64 })?;
            if start + s.tokens.len() > c.context_length {
                return Err(EngineError::ContextOverflow {
                    needed: start + s.tokens.len(),
                    prompt: start,
                    max_new: s.tokens.len(),
                    limit: c.context_length,
                });
            }
            spans.push(SeqSpan {
                slot: s.slot,
                offset,
                len: s.tokens.len(),
                start,
            });
            offset += s.tokens.len();
        }
        for s in &spans {
            cache.reserve(s.slot, s.len)?;
        }
        if let ([s], [seq]) = (&spans[..], batch)
            && s.len == 1
            && which != Logits::Hidden
            && let Some(logits) = self.recorded_step(s, seq.tokens[0], cache)?
        {
            cache.commit(s.slot, 1)?;
            return Ok(logits);
        }
        let total = offset;
        // [tokens, d_model]
        let mut emb = Vec::with_capacity(total * c.d_model);
        for &t in batch.iter().flat_map(|s| s.tokens) {
            let row = self
                .embed
                .dequantize_row(t as usize)
                .unwrap_or_else(|| vec![0.0; c.d_model]);
            emb.extend_from_slice(&row);
        }
        let mut x = Tensor::<2>::from_data(TensorData::new(emb, [total, c.d_model]), &self.device);
        trace::tensor(|| "inp_embd".into(), &x);
        for (l, b) in self.blocks.iter().enumerate() {
            let h = b.attn_norm.forward(x.clone());
            trace::tensor(|| format!("attn_norm-{l}"), &h);
            let a = b.attn.forward(h, &spans, l, cache, &self.rope)?;
            trace::tensor(|| format!("attn_out-{l}"), &a);
            if trace::enabled() {
                // The feed-forward half op by op, to record its intermediates (bitwise what
                // the fused op computes: test `ffn`).
                x = x.add(a);
                trace::tensor(|| format!("ffn_inp-{l}"), &x);
                let h = b.ffn_norm.forward(x.clone());
                trace::tensor(|| format!("ffn_norm-{l}"), &h);
                let m = b.mlp.forward(h);
                trace::tensor(|| format!("ffn_out-{l}"), &m);
                x = x.add(m);
            } else {
                x = b.mlp.forward_residual(x, a, &b.ffn_norm);
            }
            trace::tensor(|| format!("l_out-{l}"), &x);
        }
        for s in &spans {
            cache.commit(s.slot, s.len)?;
        }
        let x = match which {
            Logits::All | Logits::Hidden => x,
            Logits::Last => {
                let rows = spans
                    .iter()
                    .map(|s| x.clone().narrow(0, s.offset + s.len - 1, 1))
                    .collect();
                Tensor::cat(rows, 0)
            }
        };
        // [rows, vocab]
        let x = self.norm.forward(x);
        trace::tensor(|| "result_norm".into(), &x);
        if which == Logits::Hidden {
            return Ok(x.into_data().try_into_vec::<f32>().unwrap_or_default());
        }
        let logits = q_linear(x, &self.output);
        Ok(logits.into_data().try_into_vec::<f32>().unwrap_or_default())
    }
}

impl Llama {
    /// One token of one sequence through the backend's recorded step ([`crate::step`]): its
    /// logits, or `None` where the backend has none (flex), tracing is on (the trace records
    /// the eager ops), or it is turned off ([`Llama::with_step_graph`]).
    ///
    /// A device that failed the step is [`EngineError::BackendFailed`]: the step wrote this
    /// sequence's cache, so the eager step cannot take over.
    fn recorded_step(&self, s: &SeqSpan, token: u32, cache: &KvCache) -> Result<Option<Vec<f32>>> {
        if !self.step_graph || trace::enabled() || self.device == Device::flex() {
            return Ok(None);
        }
        let c = &self.config;
        let Some(kv) = cache.tensors(s.slot) else {
            return Ok(None);
        };
        let norms: Vec<Tensor<1>> = self
            .blocks
            .iter()
            .flat_map(|b| [b.attn_norm.weight.val(), b.ffn_norm.weight.val()])
            .collect();
        let biases: Vec<Tensor<2>> = self
            .blocks
            .iter()
            .filter_map(|b| b.attn.biases.as_ref())
            .flat_map(|b| [b.q.clone(), b.k.clone(), b.v.clone()])
            .collect();
        let plan = StepPlan {
            dims: StepDims {
                d_model: c.d_model,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                d_ff: c.d_ff,
                vocab: c.vocab_size,
                eps: c.rms_eps,
            },
            embed: self.embed.clone(),
            layers: self
                .blocks
                .iter()
                .map(|b| LayerWeights {
                    wq: b.attn.wq.clone(),
                    wk: b.attn.wk.clone(),
                    wv: b.attn.wv.clone(),
                    wo: b.attn.wo.clone(),
                    gate: b.mlp.gate.clone(),
                    up: b.mlp.up.clone(),
                    down: b.mlp.down.clone(),
                })
                .collect(),
            output: self.output.clone(),
            freqs: Arc::clone(&self.rope.freqs),
            round_kv_f16: self.blocks.first().is_some_and(|b| b.attn.round_kv_f16),
        };
        let Some(logits) = step::decode_step(
            self.norm.weight.val(),
            norms,
            biases,
            kv,
            Arc::new(plan),
            token,
            s.start,
        ) else {
            return Ok(None);
        };
        let failed = |message: String| EngineError::BackendFailed {
            backend: "gpu",
            message: format!("recorded decode step: {message}"),
        };
        let data = logits.try_into_data().map_err(|e| failed(e.to_string()))?;
        data.try_into_vec::<f32>()
            .map(Some)
            .map_err(|e| failed(format!("{e:?}")))
    }
}

/// Loads the matrix `name` as `[rows, cols]`, checking its shape.
pub(crate) fn load_matrix(
    file: &Arc<GgufFile>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<QWeight> {
    let info = file.require_tensor(name)?;
    if info.dims() != [cols as u64, rows as u64] {
        return Err(EngineError::TensorShape {
            name: name.to_owned(),
            expected: vec![cols as u64, rows as u64],
            got: info.dims().to_vec(),
        });
    }
    QWeight::new(file, info)
}

/// Loads the vector `name` (`len` values of any type) as f32: norms are tiny and dense.
/// Fails on a bias tensor the architecture's graph does not add: llama.cpp adds optional
/// biases where present (`bq`/`bk`/`bv`/`bo` in `llama`, `bo` and `output_b` in `qwen2`);
/// ignoring one here would silently compute another model. Fail closed instead (names it).
fn refuse_unused_biases(file: &GgufFile, c: &LlamaConfig) -> Result<()> {
    const PROJECTIONS: [&str; 7] = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    for l in 0..c.n_layers {
        for p in PROJECTIONS {
            let used = c.arch.has_qkv_bias() && matches!(p, "attn_q" | "attn_k" | "attn_v");
            let name = format!("blk.{l}.{p}.bias");
            if !used && file.tensor(&name).is_some() {
                return Err(EngineError::Unsupported {
                    arch: c.arch.name().to_owned(),
                    key: name,
                    value: "present".to_owned(),
                    reason: "a bias tensor this architecture's graph does not add",
                });
            }
        }
    }
    // llm_build_qwen2 adds an optional `output.bias` to the logits; no file we serve has one.
    if file.tensor("output.bias").is_some() {
        return Err(EngineError::Unsupported {
            arch: c.arch.name().to_owned(),
            key: "output.bias".to_owned(),
            value: "present".to_owned(),
            reason: "a bias tensor this architecture's graph does not add",
        });
    }
    Ok(())
}

pub(crate) fn dense_vector(file: &Arc<GgufFile>, name: &str, len: usize) -> Result<Vec<f32>> {
    let info = file.require_tensor(name)?;
    if info.dims() != [len as u64] {
        return Err(EngineError::TensorShape {
            name: name.to_owned(),
            expected: vec![len as u64],
            got: info.dims().to_vec(),
        });
    }
    if !matches!(
        info.ggml_type(),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16
    ) {
        return Err(EngineError::TensorType {
            name: name.to_owned(),
            ty: info.ggml_type(),
            reason: "vectors must be F32, F16 or BF16",
        });
    }
    Ok(file.dequantize_tensor(info)?)
}
