//! Rotary position embedding as llama.cpp applies it to `llama` models (`LLAMA_ROPE_TYPE_NORM`):
//! adjacent pairs `(x[2i], x[2i+1])` rotate by `pos · θ_i`, `θ_i = base^(-2i/d) / f_i`.
//!
//! GGUF conversion permutes the Q/K projection rows of Hugging Face checkpoints so that this
//! adjacent-pair form equals the half-split form they were trained with; no permutation here.
//! `f_i` are the optional per-frequency factors of `rope_freqs.weight` (Llama 3.1), else 1.

use burn::config::Config;
use burn::module::Module;
use std::sync::Arc;

use burn::tensor::Tensor;

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
}

impl RopeConfig {
    /// Builds the frequency table; `factors` (length `head_dim / 2`) divide the frequencies.
    pub fn init(&self, factors: Option<&[f32]>) -> Rope {
        let half = self.head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| {
                let f = self.theta.powf(-2.0 * i as f64 / self.head_dim as f64);
                let div = factors
                    .and_then(|v| v.get(i))
                    .map_or(1.0, |&x| f64::from(x));
                f * self.position_scale / div
            })
            .collect::<Vec<f64>>();
        Rope {
            inv_freq: Arc::from(inv_freq),
        }
    }
}

/// Frequencies of the rotary embedding.
#[derive(Module, Debug)]
pub struct Rope {
    /// `[head_dim / 2]`, scaled by the position scale.
    #[module(skip)]
    pub inv_freq: Arc<[f64]>,
}

impl Rope {
    /// Rotates `x`: `[heads, n, head_dim]` holding positions `start..start + n`.
    pub fn forward(&self, x: Tensor<3>, start: usize) -> Tensor<3> {
        fused::rope(x, start, &self.inv_freq)
    }
}
