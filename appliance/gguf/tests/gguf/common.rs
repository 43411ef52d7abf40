use airlock_gguf::GgmlType;
use airlock_gguf::write::GgufWriter;

pub use airlock_testkit::{Rng, default_model};

/// A small valid file: a few metadata pairs and three tensors of different types.
pub fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", "llama")
        .metadata("general.name", "tiny")
        .metadata("llama.block_count", 2u32)
        .metadata("llama.rope.freq_base", 10000.0f32)
        .metadata("tokenizer.ggml.tokens", vec!["<s>", "a", "b"])
        .metadata("tokenizer.ggml.token_type", vec![3i32, 1, 1]);
    let mut rng = Rng::new(7);
    let v: Vec<f32> = (0..64 * 2).map(|_| rng.f32_in(-1.0, 1.0)).collect();
    w.tensor_from_f32("a.weight", &[64, 2], GgmlType::Q4_1, &v)
        .unwrap()
        .tensor_from_f32("b.weight", &[64], GgmlType::F32, &v[..64])
        .unwrap()
        .tensor_from_f32("c.weight", &[32, 2], GgmlType::Q8_0, &v[..64])
        .unwrap();
    w
}
