//! SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use std::sync::Arc;

use airlock_gguf::GgufFile;
use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use super::load_matrix;
use super::norm::RmsNorm;
use crate::error::Result;
use crate::fused_ffn;
use crate::ops::{q_linear, q_linear_multi};
use crate::qweight::QWeight;

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Residual width.
    pub d_model: usize,
    /// Hidden width.
    pub d_ff: usize,
}

impl MlpConfig {
    /// Loads `blk.{layer}.ffn_{gate,up,down}.weight`.
    pub fn load(&self, file: &Arc<GgufFile>, layer: usize) -> Result<Mlp> {
        let m =
            |n: &str, rows, cols| load_matrix(file, &format!("blk.{layer}.{n}.weight"), rows, cols);
        Ok(Mlp {
            gate: m("ffn_gate", self.d_ff, self.d_model)?,
            up: m("ffn_up", self.d_ff, self.d_model)?,
            down: m("ffn_down", self.d_model, self.d_ff)?,
        })
    }
}

/// The feed-forward block of one layer; weights stay quantized.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[d_ff, d_model]`
    #[module(skip)]
    pub gate: QWeight,
    /// `[d_ff, d_model]`
    #[module(skip)]
    pub up: QWeight,
    /// `[d_model, d_ff]`
    #[module(skip)]
    pub down: QWeight,
}

impl Mlp {
    /// The feed-forward half of a block: `h + forward(norm(h))` with `h = x + a` (the residual
    /// stream plus the attention output), all `[tokens, d_model]`. One fused op
    /// ([`crate::fused_ffn`]), bitwise equal on flex to the tensor ops it replaces
    /// ([`Mlp::forward`], which a trace runs op by op).
    pub fn forward_residual(&self, x: Tensor<2>, a: Tensor<2>, norm: &RmsNorm) -> Tensor<2> {
        fused_ffn::ffn_residual(
            x,
            a,
            norm.weight.val(),
            norm.eps,
            [&self.gate, &self.up, &self.down],
        )
    }

    /// `x`: `[tokens, d_model]` → `[tokens, d_model]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        // [tokens, 2 * d_ff] (gate | up) -> [tokens, d_ff], as llama.cpp's `ggml_swiglu`.
        let gu = q_linear_multi(x, &[&self.gate, &self.up]);
        let h = crate::fused::swiglu(gu);
        q_linear(h, &self.down)
    }
}
