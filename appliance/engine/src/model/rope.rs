//! Rotary position embedding as llama.cpp applies it to `llama` models (`LLAMA_ROPE_TYPE_NORM`):
//! adjacent pairs `(x[2i], x[2i+1])` rotate by `pos · θ_i`, `θ_i = base^(-2i/d) / f_i`.
//!
//! GGUF conversion permutes the Q/K projection rows of Hugging Face checkpoints so that this
//! adjacent-pair form equals the half-split form they were trained with; no permutation here.
//! `f_i` are the optional per-frequency factors of `rope_freqs.weight` (Llama 3.1), else 1.
//!
//! `qwen2` (`LLAMA_ROPE_TYPE_NEOX`) rotates the half-split pairs `(x[i], x[i + d/2])` by the
//! same angles with the same arithmetic (ggml's `rope_f32` calls one `rotate_pairs` for both,
//! with a pair offset of `d/2` instead of 1): [`RopeStyle::Neox`].

use burn::config::Config;
use burn::module::Module;
use std::sync::{Arc, RwLock};

use burn::tensor::Tensor;

pub use crate::config::RopeStyle;
use crate::fused;

/// Configuration of a [`Rope`].
#[derive(Config, Debug)]
pub struct RopeConfig {
    /// Rotated width (the head size).
    pub head_dim: usize,
    /// Base frequency.
    pub theta: f64,
    /// Positions are multiplied by this (linear scaling; 1 = none).
    #[config(default = 1.0)]
    pub position_scale: f64,
    /// Which dimensions form the rotated pairs.
    #[config(default = "RopeStyle::Adjacent")]
    pub style: RopeStyle,
}

impl RopeConfig {
    /// Builds the frequency table; `factors` (length `head_dim / 2`) divide the frequencies.
    pub fn init(&self, factors: Option<&[f32]>) -> Rope {
        Rope {
            freqs: Arc::new(RopeFreqs {
                half: self.head_dim / 2,
                // ggml_compute_forward_rope_flt: `powf(freq_base, -2.0f/n_dims)`.
                theta_scale: (self.theta as f32).powf(-2.0 / self.head_dim as f32),
                freq_scale: self.position_scale as f32,
                factors: factors.map(|f| f.iter().take(self.head_dim / 2).copied().collect()),
                style: self.style,
                table: RwLock::new(Vec::new()),
            }),
        }
    }
}

/// The rotation angles, computed as ggml does (`ggml_rope_cache_init` and `rope_yarn` without
/// YaRN): in f32, `θ_0 = pos`, `θ_{i+1} = θ_i · base^(-2/d)`, angle `freq_scale · θ_i / f_i`,
/// then `cosf`/`sinf`. Computing them in f64 instead differs from llama.cpp in the last bit of
/// some rotated values, which is enough to flip 8-bit activation codes downstream.
///
/// An angle depends only on its position, yet every layer rotates queries and keys at the same
/// positions: the angles are computed once per position and kept in a table, which grows to the
/// highest position used (the forward pass refuses positions past the context length), at most
/// `context_length · head_dim / 2` pairs (2 MiB for SmolLM2's 8192 × 32).
#[derive(Debug)]
pub struct RopeFreqs {
    /// Rotated pairs (`head_dim / 2`).
    pub half: usize,
    /// `base^(-2/d)` in f32.
    pub theta_scale: f32,
    /// Linear position scaling (1 = none).
    pub freq_scale: f32,
    /// Per-pair frequency divisors (`rope_freqs.weight`), if any.
    pub factors: Option<Vec<f32>>,
    /// Which dimensions form pair `i`: `(2i, 2i + 1)` or `(i, i + half)`.
    pub style: RopeStyle,
    /// `(cos, sin)` of positions `0..len / half`, `half` pairs each.
    table: RwLock<Vec<(f32, f32)>>,
}

impl RopeFreqs {
    /// Appends `(cos, sin)` of every pair's angle at positions `start..start + n` to `out`
    /// (`n · half` values, position-major).
    pub fn angles(&self, start: usize, n: usize, out: &mut Vec<(f32, f32)>) {
        let (lo, hi) = (start * self.half, (start + n) * self.half);
        {
            // A poisoned lock still holds whole positions: entries are pushed a position at a
            // time and never changed.
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            if table.len() >= hi {
                out.extend_from_slice(&table[lo..hi]);
                return;
            }
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        while table.len() < hi {
            let pos = table.len() / self.half;
            self.compute(pos, &mut table);
        }
        out.extend_from_slice(&table[lo..hi]);
    }

    /// Appends `(cos, sin)` of every pair's angle at position `pos` to `out`.
    fn compute(&self, pos: usize, out: &mut Vec<(f32, f32)>) {
        let mut theta = pos as f32;
        for i in 0..self.half {
            let ff = self
                .factors
                .as_ref()
                .and_then(|f| f.get(i).copied())
                .unwrap_or(1.0);
            let t = self.freq_scale * (theta / ff);
            out.push((t.cos(), t.sin()));
            theta *= self.theta_scale;
        }
    }
}

/// Frequencies of the rotary embedding.
#[derive(Module, Debug)]
pub struct Rope {
    /// How angles are computed.
    #[module(skip)]
    pub freqs: Arc<RopeFreqs>,
}

impl Rope {
    /// Rotates `x`: `[heads, n, head_dim]` holding positions `start..start + n`.
    pub fn forward(&self, x: Tensor<3>, start: usize) -> Tensor<3> {
        fused::rope(x, start, &self.freqs)
    }
}
