use airlock_gguf::GgmlType;
use airlock_gguf::write::GgufWriter;

pub use airlock_testkit::{Rng, default_model, ids, reference};

/// Shape and encodings of a synthetic Llama-family model.
#[derive(Debug, Clone)]
pub struct Synth {
    /// `general.architecture`: `llama`, or `qwen2` (adds `attn_{q,k,v}.bias`).
    pub arch: &'static str,
    /// Tensors left out of the file (refusal tests).
    pub omit: &'static [&'static str],
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub n_layers: usize,
    pub vocab: usize,
    pub ctx: usize,
    pub tied: bool,
    /// Type of the projection matrices (q, k, v, o, gate, up).
    pub ty: GgmlType,
    /// Type of ffn_down (its rows are `d_ff` long).
    pub down_ty: GgmlType,
    /// Type of the embedding and the output head.
    pub embd_ty: GgmlType,
    pub rope_base: f32,
    pub seed: u64,
}

/// Writes a random Llama-family model as GGUF bytes (weights quantized as `Synth` says).
pub fn synth_model(s: &Synth) -> Vec<u8> {
    let mut rng = Rng::new(s.seed);
    let hd = s.d_model / s.n_heads;
    let mut w = GgufWriter::new();
    let a = s.arch;
    w.metadata("general.architecture", a)
        .metadata("general.name", "synthetic")
        .metadata(&format!("{a}.block_count"), s.n_layers as u32)
        .metadata(&format!("{a}.context_length"), s.ctx as u32)
        .metadata(&format!("{a}.embedding_length"), s.d_model as u32)
        .metadata(&format!("{a}.feed_forward_length"), s.d_ff as u32)
        .metadata(&format!("{a}.attention.head_count"), s.n_heads as u32)
        .metadata(&format!("{a}.attention.head_count_kv"), s.n_kv_heads as u32)
        .metadata(&format!("{a}.rope.freq_base"), s.rope_base)
        .metadata(&format!("{a}.rope.dimension_count"), hd as u32)
        .metadata(&format!("{a}.attention.layer_norm_rms_epsilon"), 1e-5f32)
        .metadata(&format!("{a}.vocab_size"), s.vocab as u32);
    let mut mat = |w: &mut GgufWriter, name: &str, rows: usize, cols: usize, ty: GgmlType| {
        let scale = 1.0 / (cols as f32).sqrt() * 1.7;
        let v = rng.vec(rows * cols, scale);
        if !s.omit.contains(&name) {
            w.tensor_from_f32(name, &[cols as u64, rows as u64], ty, &v)
                .unwrap();
        }
    };
    mat(&mut w, "token_embd.weight", s.vocab, s.d_model, s.embd_ty);
    let kv = s.n_kv_heads * hd;
    for l in 0..s.n_layers {
        mat(
            &mut w,
            &format!("blk.{l}.attn_q.weight"),
            s.d_model,
            s.d_model,
            s.ty,
        );
        mat(
            &mut w,
            &format!("blk.{l}.attn_k.weight"),
            kv,
            s.d_model,
            s.ty,
        );
        mat(
            &mut w,
            &format!("blk.{l}.attn_v.weight"),
            kv,
            s.d_model,
            s.ty,
        );
        if a == "qwen2" {
            // Biases of the order of the projections' outputs, so a wrong one shows.
            let mut bias_rng = Rng::new(s.seed ^ (0x5eed + l as u64));
            for (n, len) in [("attn_q", s.d_model), ("attn_k", kv), ("attn_v", kv)] {
                let name = format!("blk.{l}.{n}.bias");
                let v = bias_rng.vec(len, 0.8);
                if !s.omit.contains(&name.as_str()) {
                    w.tensor_from_f32(&name, &[len as u64], GgmlType::F32, &v)
                        .unwrap();
                }
            }
        }
        mat(
            &mut w,
            &format!("blk.{l}.attn_output.weight"),
            s.d_model,
            s.d_model,
            s.ty,
        );
        mat(
            &mut w,
            &format!("blk.{l}.ffn_gate.weight"),
            s.d_ff,
            s.d_model,
            s.ty,
        );
        mat(
            &mut w,
            &format!("blk.{l}.ffn_up.weight"),
            s.d_ff,
            s.d_model,
            s.ty,
        );
        mat(
            &mut w,
            &format!("blk.{l}.ffn_down.weight"),
            s.d_model,
            s.d_ff,
            s.down_ty,
        );
    }
    let mut norm_rng = Rng::new(s.seed ^ 0xabcd);
    let mut norm = |w: &mut GgufWriter, name: &str| {
        let v: Vec<f32> = (0..s.d_model).map(|_| norm_rng.f32_in(0.5, 1.5)).collect();
        w.tensor_from_f32(name, &[s.d_model as u64], GgmlType::F32, &v)
            .unwrap();
    };
    for l in 0..s.n_layers {
        norm(&mut w, &format!("blk.{l}.attn_norm.weight"));
        norm(&mut w, &format!("blk.{l}.ffn_norm.weight"));
    }
    norm(&mut w, "output_norm.weight");
    if !s.tied {
        mat(&mut w, "output.weight", s.vocab, s.d_model, s.embd_ty);
    }
    w.to_bytes()
}
