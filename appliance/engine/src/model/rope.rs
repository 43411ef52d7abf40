//! Rotary position embedding as llama.cpp applies it to `llama` models (`LLAMA_ROPE_TYPE_NORM`):
//! adjacent pairs `(x[2i], x[2i+1])` rotate by `pos · θ_i`, `θ_i = base^(-2i/d) / f_i`.
//!
//! GGUF conversion permutes the Q/K projection rows of Hugging Face checkpoints so that this
//! adjacent-pair form equals the half-split form they were trained with; no permutation here.
//! `f_i` are the optional per-frequency factors of `rope_freqs.weight` (Llama 3.1), else 1.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

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
            .collect();
        Rope { inv_freq }
    }
}

/// Frequencies of the rotary embedding.
#[derive(Module, Debug)]
pub struct Rope {
    /// `[head_dim / 2]`, scaled by the position scale.
    pub inv_freq: Vec<f64>,
}

impl Rope {
    /// Rotates `x`: `[heads, n, head_dim]` holding positions `start..start + n`.
    pub fn forward(&self, x: Tensor<3>, start: usize, device: &Device) -> Tensor<3> {
        let [heads, n, hd] = x.dims();
        let half = hd / 2;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in start..start + n {
            for &f in &self.inv_freq {
                let (s, c) = (p as f64 * f).sin_cos();
                cos.push(c as f32);
                sin.push(s as f32);
            }
        }
        // [1, n, half, 1]
        let cos = Tensor::<4>::from_data(TensorData::new(cos, [1, n, half, 1]), device);
        let sin = Tensor::<4>::from_data(TensorData::new(sin, [1, n, half, 1]), device);
        // [heads, n, half, 2]
        let pairs = x.reshape([heads, n, half, 2]);
        let x0 = pairs.clone().narrow(3, 0, 1);
        let x1 = pairs.narrow(3, 1, 1);
        let y0 = x0.clone().mul(cos.clone()).sub(x1.clone().mul(sin.clone()));
        let y1 = x0.mul(sin).add(x1.mul(cos));
        Tensor::cat(vec![y0, y1], 3).reshape([heads, n, hd])
    }
}
