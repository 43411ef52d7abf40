//! Models the engine must refuse, each with the architecture, key or tensor named.

use std::sync::Arc;

use airlock_engine::{EngineError, Llama};
use airlock_gguf::write::GgufWriter;
use airlock_gguf::{GgmlType, GgufFile};
use burn::tensor::Device;

use crate::common::{Synth, synth_model};

fn base() -> Synth {
    Synth {
        arch: "llama",
        omit: &[],
        d_model: 64,
        d_ff: 96,
        n_heads: 4,
        n_kv_heads: 2,
        n_layers: 1,
        vocab: 16,
        ctx: 32,
        tied: true,
        ty: GgmlType::Q8_0,
        down_ty: GgmlType::Q8_0,
        embd_ty: GgmlType::Q8_0,
        rope_base: 10000.0,
        seed: 9,
    }
}

/// A writer holding `f`'s metadata, each entry passed through `entry`, and all its tensors.
fn rewrite(
    f: &GgufFile,
    entry: impl Fn(&str, &airlock_gguf::Value) -> (String, airlock_gguf::Value),
) -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        let (k, v) = entry(k, v);
        w.metadata(&k, v);
    }
    for t in f.tensors() {
        w.raw_tensor(
            t.name(),
            t.dims(),
            t.ggml_type().id(),
            f.tensor_bytes(t).to_vec(),
        );
    }
    w
}

fn finish(w: GgufWriter) -> Arc<GgufFile> {
    Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap())
}

/// Re-writes the synthetic model with one metadata key replaced or added.
fn with_key(key: &str, value: airlock_gguf::Value) -> Arc<GgufFile> {
    let f = GgufFile::from_bytes(synth_model(&base())).unwrap();
    let mut w = rewrite(&f, |k, v| {
        let v = if k == key { value.clone() } else { v.clone() };
        (k.to_owned(), v)
    });
    if f.metadata().get(key).is_none() {
        w.metadata(key, value);
    }
    finish(w)
}

fn load(f: Arc<GgufFile>) -> EngineError {
    Llama::load(&f, &Device::flex()).unwrap_err()
}

#[test]
fn other_architecture_is_named() {
    let e = load(with_key("general.architecture", "gpt2".into()));
    assert!(
        matches!(&e, EngineError::UnsupportedArchitecture { arch } if arch == "gpt2"),
        "{e}"
    );
    assert!(e.to_string().contains("general.architecture"), "{e}");
}

#[test]
fn yarn_rope_scaling_is_refused_by_key() {
    let e = load(with_key("llama.rope.scaling.type", "yarn".into()));
    assert!(
        matches!(&e, EngineError::Unsupported { key, value, .. } if key == "llama.rope.scaling.type" && value == "yarn"),
        "{e}"
    );
}

#[test]
fn mixture_of_experts_is_refused_by_key() {
    let e = load(with_key("llama.expert_count", 8u32.into()));
    assert!(
        matches!(&e, EngineError::Unsupported { key, .. } if key == "llama.expert_count"),
        "{e}"
    );
}

#[test]
fn partial_rope_is_refused_by_key() {
    let e = load(with_key("llama.rope.dimension_count", 8u32.into()));
    assert!(
        matches!(&e, EngineError::Unsupported { key, .. } if key == "llama.rope.dimension_count"),
        "{e}"
    );
}

#[test]
fn kv_heads_must_divide_heads() {
    let e = load(with_key("llama.attention.head_count_kv", 3u32.into()));
    assert!(
        matches!(&e, EngineError::InvalidConfig { key, .. } if key == "llama.attention.head_count_kv"),
        "{e}"
    );
}

#[test]
fn wrong_tensor_shape_is_named() {
    let e = load(with_key("llama.feed_forward_length", 128u32.into()));
    assert!(
        matches!(&e, EngineError::TensorShape { name, .. } if name == "blk.0.ffn_gate.weight"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let e = load(with_key("llama.block_count", 2u32.into()));
    assert!(e.to_string().contains("blk.1."), "{e}");
}

#[test]
fn qwen2_missing_bias_is_named() {
    let s = Synth {
        arch: "qwen2",
        omit: &["blk.0.attn_k.bias"],
        ..base()
    };
    let f = Arc::new(GgufFile::from_bytes(synth_model(&s)).unwrap());
    let e = load(f);
    assert!(
        matches!(&e, EngineError::Gguf(airlock_gguf::GgufError::TensorNotFound { name }) if name == "blk.0.attn_k.bias"),
        "{e}"
    );
}

/// A `llama` file carrying projection biases: llama.cpp would add them, we refuse (naming the
/// tensor) rather than compute a different model by ignoring them.
#[test]
fn llama_with_bias_is_refused_by_tensor() {
    let f = GgufFile::from_bytes(synth_model(&Synth {
        arch: "qwen2",
        ..base()
    }))
    .unwrap();
    let w = rewrite(&f, |k, v| {
        let k = k.replace("qwen2", "llama");
        let v = if k == "general.architecture" {
            "llama".into()
        } else {
            v.clone()
        };
        (k, v)
    });
    let e = load(finish(w));
    assert!(
        matches!(&e, EngineError::Unsupported { arch, key, .. } if arch == "llama" && key == "blk.0.attn_q.bias"),
        "{e}"
    );
}

/// llm_build_qwen2 adds an optional `output.bias` to the logits; we do not, so we refuse.
#[test]
fn qwen2_output_bias_is_refused_by_tensor() {
    let f = GgufFile::from_bytes(synth_model(&Synth {
        arch: "qwen2",
        ..base()
    }))
    .unwrap();
    let mut w = rewrite(&f, |k, v| (k.to_owned(), v.clone()));
    w.tensor_from_f32("output.bias", &[16], GgmlType::F32, &[0.5; 16])
        .unwrap();
    let e = load(finish(w));
    assert!(
        matches!(&e, EngineError::Unsupported { arch, key, .. } if arch == "qwen2" && key == "output.bias"),
        "{e}"
    );
}
