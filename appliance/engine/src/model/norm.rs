//! RMSNorm (`llm_build_norm` with `LLM_FFN_RMS` in llama.cpp):
//! `y = x / sqrt(mean(x²) + eps) * w`.

use std::sync::Arc;

use airlock_gguf::GgufFile;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use super::dense_vector;
use crate::error::Result;
use crate::fused;

/// Configuration of an [`RmsNorm`].
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    /// Width of the normalised vectors.
    pub d_model: usize,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl RmsNormConfig {
    /// Loads the norm whose scale is the f32/f16 vector `name` of `file`.
    pub fn load(&self, file: &Arc<GgufFile>, name: &str, device: &Device) -> Result<RmsNorm> {
        let w = dense_vector(file, name, self.d_model)?;
        Ok(RmsNorm {
            weight: Param::from_tensor(Tensor::from_floats(w.as_slice(), device)),
            eps: self.eps,
        })
    }
}

/// Root-mean-square normalisation with a learned scale.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[d_model]`
    pub weight: Param<Tensor<1>>,
    /// Added to the mean square.
    pub eps: f64,
}

impl RmsNorm {
    /// `x`: `[tokens, d_model]` → same shape.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        fused::rms_norm(x, self.weight.val(), self.eps)
    }
}
