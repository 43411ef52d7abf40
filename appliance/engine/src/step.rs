//! One decode step of one sequence (one token in, the next token's logits out) as a single
//! backend op, so a GPU backend can record it once and replay it for every later token.
//!
//! Why: a decode step on a GPU is ~14 launches per layer (≈ 230 for a 16-layer model), each
//! small; through cubecl's launch path each costs ~15 µs of host time on an H100, so the step
//! is bound by launching, not by reading the weights (the 1B model decoded at 245 tok/s
//! where the weights allow ~4 000). A recorded graph replays every launch in one dispatch.
//!
//! A recording replays its launches exactly, scalars included, so everything that changes
//! from token to token (the token id, its position) is read by the kernels from a small device
//! buffer written before each replay, and the KV cache is passed at its full capacity (the
//! attention kernel reads the length from that buffer). The recorded arithmetic is the eager
//! path's, op for op (`cube/step.rs`), so a replayed step gives the logits an eager step gives.
//!
//! Backends without a graph path (flex) answer `None` and the model runs its eager step.
//!
//! Not a `#[backend_extension]` trait: the macro routes tensors and structs of tensors, not a
//! `Vec` of them, and a step takes a model's worth (norms, biases, the cache per layer); so
//! [`decode_step`] unwraps the dispatch tensors itself, as the macro's expansion does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::Tensor;

use crate::model::rope::RopeFreqs;
use crate::qweight::QWeight;

/// The sizes of a Llama-family decode step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDims {
    /// Residual width.
    pub d_model: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Output rows (the vocabulary).
    pub vocab: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
}

/// One block's matrices.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Query, key, value and output projections.
    pub wq: QWeight,
    /// See [`LayerWeights::wq`].
    pub wk: QWeight,
    /// See [`LayerWeights::wq`].
    pub wv: QWeight,
    /// See [`LayerWeights::wq`].
    pub wo: QWeight,
    /// Feed-forward gate, up and down.
    pub gate: QWeight,
    /// See [`LayerWeights::gate`].
    pub up: QWeight,
    /// See [`LayerWeights::gate`].
    pub down: QWeight,
}

/// What a decode step multiplies and how: the model's quantized matrices and sizes. The
/// dense tensors (norm weights, biases) and the KV cache travel as tensors beside it.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// Sizes.
    pub dims: StepDims,
    /// `token_embd`, rows decoded on the device.
    pub embed: QWeight,
    /// Per block.
    pub layers: Vec<LayerWeights>,
    /// The output head.
    pub output: QWeight,
    /// Rotary angles (the style says which pairs rotate).
    pub freqs: Arc<RopeFreqs>,
    /// Keys, values and queries rounded to f16 as llama.cpp's f16 cache (the eager path's
    /// `Attention::round_kv_f16`).
    pub round_kv_f16: bool,
}

/// Steps run through [`decode_step`], and of those, replays of a recording, since the
/// process started: what tells a test (and a curious operator) that the recorded path ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepCounts {
    /// Steps the backend's step op ran.
    pub steps: u64,
    /// Of those, steps that replayed a recording.
    pub replays: u64,
}

static STEPS: AtomicU64 = AtomicU64::new(0);
static REPLAYS: AtomicU64 = AtomicU64::new(0);

/// The counts so far.
pub fn counts() -> StepCounts {
    StepCounts {
        steps: STEPS.load(Ordering::Relaxed),
        replays: REPLAYS.load(Ordering::Relaxed),
    }
}

/// Counts a replay (the backend's step op calls it).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn count_replay() {
    REPLAYS.fetch_add(1, Ordering::Relaxed);
}

/// Embeds `token` at position `pos`, runs every block (writing its key and value at `pos` into
/// the cache) and returns the logits `[1, vocab]`; `None` when the tensors' backend has no
/// step op (flex: its eager step has no launch cost to save) or cannot take this model (the
/// caller then runs its eager step; nothing was written).
///
/// `norms` is `[attn_norm, ffn_norm]` per layer (`[d_model]` each, as `output_norm`); `biases`
/// is empty or `[q, k, v]` per layer (`[1, width]`); `kv` is `[k, v]` per layer,
/// `[kv_heads, capacity, head_dim]` each, positions `0..pos` written; `pos < capacity`.
#[allow(
    unused_variables,
    reason = "without a GPU feature no backend has a step op and every argument is unused"
)]
pub fn decode_step(
    output_norm: Tensor<1>,
    norms: Vec<Tensor<1>>,
    biases: Vec<Tensor<2>>,
    kv: Vec<Tensor<3>>,
    plan: Arc<StepPlan>,
    token: u32,
    pos: usize,
) -> Option<Tensor<2>> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
        fn cube<const D: usize>(t: Tensor<D>) -> Option<burn_cubecl::tensor::CubeTensor> {
            match t.into_dispatch().kind {
                DispatchTensorKind::Cube(BackendTensor::Float(t)) => Some(t),
                _ => None,
            }
        }
        let mut all = Vec::with_capacity(norms.len() + 1);
        all.push(cube(output_norm)?);
        let norms = norms.into_iter().map(cube).collect::<Option<Vec<_>>>()?;
        let biases = biases.into_iter().map(cube).collect::<Option<Vec<_>>>()?;
        let kv = kv.into_iter().map(cube).collect::<Option<Vec<_>>>()?;
        let logits =
            crate::cube::step::decode_step(all.remove(0), norms, biases, kv, &plan, token, pos)?;
        STEPS.fetch_add(1, Ordering::Relaxed);
        return Some(Tensor::from_dispatch(DispatchTensor {
            kind: DispatchTensorKind::Cube(BackendTensor::Float(logits)),
            autodiff: Default::default(),
        }));
    }
    #[allow(unreachable_code, reason = "reachable without a GPU feature")]
    None
}
