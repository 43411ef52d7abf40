//! [`LlamaConfig`]: the hyper-parameters of a Llama-family GGUF, read from its `<arch>.*`
//! metadata, and [`Architecture`]: what each supported `general.architecture` changes in the
//! computation (RoPE pairing, Q/K/V biases), so the model asks one description instead of
//! comparing architecture names.
//!
//! Keys follow llama.cpp's `llama-arch.cpp` / `llama-model.cpp` (`LLM_KV_*`). Anything that
//! would change the computation in a way this engine does not implement (MoE experts, partial
//! RoPE, YaRN/LongRoPE scaling, separate key/value head sizes) is refused with the key named,
//! never silently approximated.

use airlock_gguf::{GgufFile, Metadata};
use burn::config::Config;

use crate::error::{EngineError, Result};

/// The architectures this engine runs (`general.architecture`).
pub const SUPPORTED_ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

/// A supported `general.architecture`: the same Llama graph with the differences llama.cpp's
/// `llama-model.cpp` builds for it (`llm_build_llama`, `llm_build_qwen2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Architecture {
    /// `llama` (SmolLM2, Llama 2/3, Mistral): no projection biases, adjacent-pair RoPE.
    Llama,
    /// `qwen2` (Qwen2, Qwen2.5): `attn_{q,k,v}.bias` added after the projections, half-split
    /// (NEOX) RoPE (`LLAMA_ROPE_TYPE_NEOX` in `llama_model_rope_type`).
    Qwen2,
}

/// How RoPE pairs the dimensions of a head of width `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RopeStyle {
    /// `(x[2i], x[2i+1])` (`LLAMA_ROPE_TYPE_NORM`; GGUF conversion permutes llama's Q/K rows).
    Adjacent,
    /// `(x[i], x[i + d/2])` (`LLAMA_ROPE_TYPE_NEOX`, the Hugging Face layout, unpermuted).
    Neox,
}

impl Architecture {
    /// The architecture named `name` (`general.architecture`), if supported.
    pub fn from_name(name: &str) -> Option<Architecture> {
        match name {
            "llama" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            _ => None,
        }
    }

    /// The `general.architecture` value, also the prefix of its metadata keys.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// How RoPE pairs dimensions.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Architecture::Llama => RopeStyle::Adjacent,
            Architecture::Qwen2 => RopeStyle::Neox,
        }
    }

    /// Whether `blk.N.attn_{q,k,v}.bias` are required (and added). Any other projection bias,
    /// and these in a `llama` file (llama.cpp would add them there; no model we serve has
    /// them), is refused at load with the tensor named rather than ignored.
    pub fn has_qkv_bias(self) -> bool {
        match self {
            Architecture::Llama => false,
            Architecture::Qwen2 => true,
        }
    }
}

/// Hyper-parameters of a Llama-family model.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture`.
    #[config(default = "Architecture::Llama")]
    pub arch: Architecture,
    /// Transformer blocks (`llama.block_count`).
    pub n_layers: usize,
    /// Residual stream width (`llama.embedding_length`).
    pub d_model: usize,
    /// MLP hidden width (`llama.feed_forward_length`).
    pub d_ff: usize,
    /// Query heads (`llama.attention.head_count`).
    pub n_heads: usize,
    /// Key/value heads (`llama.attention.head_count_kv`, default `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head (`d_model / n_heads`).
    pub head_dim: usize,
    /// Vocabulary size (`llama.vocab_size`, else the embedding's rows).
    pub vocab_size: usize,
    /// Trained context window (`llama.context_length`).
    pub context_length: usize,
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f64,
    /// RoPE base frequency (`llama.rope.freq_base`, default 10000).
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Linear RoPE position scale (`1 / llama.rope.scaling.factor` for `linear` scaling).
    #[config(default = 1.0)]
    pub rope_position_scale: f64,
}

impl LlamaConfig {
    /// Reads and checks the configuration of `file` (an architecture of
    /// [`SUPPORTED_ARCHITECTURES`]; keys under its name).
    pub fn from_gguf(file: &GgufFile) -> Result<LlamaConfig> {
        let md = file.metadata();
        let name = md.get_str("general.architecture")?;
        let Some(architecture) = Architecture::from_name(name) else {
            return Err(EngineError::UnsupportedArchitecture {
                arch: name.to_owned(),
            });
        };
        let r = Reader {
            md,
            arch: architecture.name(),
        };
        let n_layers = r.positive("block_count")?;
        let d_model = r.positive("embedding_length")?;
        let d_ff = r.positive("feed_forward_length")?;
        let n_heads = r.positive("attention.head_count")?;
        let n_kv_heads = r.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads);
        if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(r.invalid(
                "attention.head_count_kv",
                format!("{n_kv_heads} does not divide head_count {n_heads}"),
            ));
        }
        if !d_model.is_multiple_of(n_heads) || !(d_model / n_heads).is_multiple_of(2) {
            return Err(r.invalid(
                "attention.head_count",
                format!("{n_heads} heads do not split embedding_length {d_model} into even widths"),
            ));
        }
        let head_dim = d_model / n_heads;
        for key in ["attention.key_length", "attention.value_length"] {
            if let Some(v) = r.opt_usize(key)?
                && v != head_dim
            {
                return Err(r.unsupported(
                    key,
                    v,
                    "head size other than embedding_length / head_count",
                ));
            }
        }
        if let Some(v) = r.opt_usize("rope.dimension_count")?
            && v != head_dim
        {
            return Err(r.unsupported("rope.dimension_count", v, "partial rotary embedding"));
        }
        if let Some(v) = r.opt_usize("expert_count")?
            && v > 0
        {
            return Err(r.unsupported("expert_count", v, "mixture of experts"));
        }
        let rope_theta = r.opt_f32("rope.freq_base")?.unwrap_or(10000.0);
        if !(rope_theta.is_finite() && rope_theta > 1.0) {
            return Err(r.invalid("rope.freq_base", format!("{rope_theta} is not > 1")));
        }
        let rope_position_scale = r.rope_position_scale()?;
        let rms_eps = r
            .opt_f32("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(r.invalid("attention.layer_norm_rms_epsilon", format!("{rms_eps}")));
        }
        let embd = file.require_tensor("token_embd.weight")?;
        let embd_rows = usize::try_from(embd.n_rows()).unwrap_or(0);
        let vocab_size = r.opt_usize("vocab_size")?.unwrap_or(embd_rows);
        if vocab_size == 0 {
            return Err(r.invalid("vocab_size", "0".into()));
        }
        let context_length = r.positive("context_length")?;
        Ok(LlamaConfig {
            arch: architecture,
            n_layers,
            d_model,
            d_ff,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            context_length,
            rms_eps: f64::from(rms_eps),
            rope_theta: f64::from(rope_theta),
            rope_position_scale,
        })
    }

    /// Width of the key (and value) projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

struct Reader<'a> {
    md: &'a Metadata,
    arch: &'a str,
}

impl Reader<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    fn invalid(&self, k: &str, reason: String) -> EngineError {
        EngineError::InvalidConfig {
            arch: self.arch.to_owned(),
            key: self.key(k),
            reason,
        }
    }
    fn unsupported(&self, k: &str, v: impl ToString, reason: &'static str) -> EngineError {
        EngineError::Unsupported {
            arch: self.arch.to_owned(),
            key: self.key(k),
            value: v.to_string(),
            reason,
        }
    }
    fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        let key = self.key(k);
        if !self.md.contains_key(&key) {
            return Ok(None);
        }
        Ok(Some(self.md.get_usize(&key)?))
    }
    fn opt_f32(&self, k: &str) -> Result<Option<f32>> {
        let key = self.key(k);
        if !self.md.contains_key(&key) {
            return Ok(None);
        }
        Ok(Some(self.md.get_f32(&key)?))
    }
    fn positive(&self, k: &str) -> Result<usize> {
        match self.opt_usize(k)? {
            None => Err(self.invalid(k, "missing".into())),
            Some(0) => Err(self.invalid(k, "must be positive".into())),
            Some(v) => Ok(v),
        }
    }
    fn rope_position_scale(&self) -> Result<f64> {
        let ty_key = self.key("rope.scaling.type");
        let ty = match self.md.get(&ty_key) {
            None => "none".to_owned(),
            Some(_) => self.md.get_str(&ty_key)?.to_owned(),
        };
        let factor = self.opt_f32("rope.scaling.factor")?;
        match ty.as_str() {
            "none" => Ok(1.0),
            "linear" => match factor {
                None => Ok(1.0),
                Some(f) if f.is_finite() && f > 0.0 => Ok(1.0 / f64::from(f)),
                Some(f) => Err(self.invalid("rope.scaling.factor", format!("{f}"))),
            },
            other => Err(self.unsupported(
                "rope.scaling.type",
                other,
                "only linear RoPE scaling is implemented",
            )),
        }
    }
}
