//! The default model (SmolLM2-135M-Instruct, Q4_1): it must open, and have the shape and
//! metadata the engine and tokenizer rely on. Prints what it finds (run with --nocapture).

use std::collections::BTreeMap;

use airlock_gguf::{GgmlType, GgufError, GgufFile, Summary, Value};

use crate::common::default_model;

#[test]
fn default_model_parses_with_expected_shape() {
    let path = default_model();
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let md = f.metadata();
    eprintln!("{}", Summary::new(&f));

    assert!(matches!(f.version(), 2 | 3));
    assert_eq!(md.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(md.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(md.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(md.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(md.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    let tokens = md.get_array_str("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(
        md.get_array_i32("tokenizer.ggml.token_type").unwrap().len(),
        tokens.len()
    );
    assert!(
        md.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("im_start")
    );

    // Print the metadata the engine and tokenizer use (arrays by length only).
    for (k, v) in md.iter() {
        if k.starts_with("llama.") || k.starts_with("tokenizer.") || k.starts_with("general.") {
            let shown = match v {
                Value::Array(a) => format!("[{}; {}]", a.type_name(), a.len()),
                Value::String(s) if s.len() > 60 => {
                    format!("{:?}... ({} bytes)", &s[..60], s.len())
                }
                v => format!("{v:?}"),
            };
            eprintln!("  {k} = {shown}");
        }
    }

    // Tensor types: 30 layers × 9 tensors + token_embd + output_norm (+ output if untied).
    let mut by_type: BTreeMap<GgmlType, Vec<&str>> = BTreeMap::new();
    for t in f.tensors() {
        by_type.entry(t.ggml_type()).or_default().push(t.name());
    }
    for (ty, names) in &by_type {
        eprintln!(
            "  {ty}: {} tensors, e.g. {:?}",
            names.len(),
            &names[..names.len().min(3)]
        );
    }
    for l in 0..30 {
        for part in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            let t = f.require_tensor(&format!("blk.{l}.{part}.weight")).unwrap();
            if part.ends_with("norm") {
                assert_eq!(t.ggml_type(), GgmlType::F32, "{}", t.name());
                assert_eq!(t.dims(), [576]);
            }
        }
    }
    let q = f.require_tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims(), [576, 576]);
    let k = f.require_tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(k.dims(), [576, 192]);
    assert!(by_type.contains_key(&GgmlType::Q4_1));
    assert!(by_type.contains_key(&GgmlType::F32));

    // Token embeddings: [576, 49152]; every value of the first and last rows is finite, and
    // the whole tensor dequantizes to finite values.
    let emb = f.require_tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims(), [576, 49152]);
    eprintln!("  token_embd.weight: {}", emb.ggml_type());
    let all = f.dequantize_tensor(emb).unwrap();
    assert_eq!(all.len(), 576 * 49152);
    assert!(all.iter().all(|v| v.is_finite()));
    let row =
        airlock_gguf::dequantize_row(emb.ggml_type(), f.tensor_bytes(emb), 49151, 576).unwrap();
    assert_eq!(row, all[576 * 49151..]);
    let norm = f
        .dequantize_tensor(f.require_tensor("output_norm.weight").unwrap())
        .unwrap();
    assert!(norm.iter().all(|v| v.is_finite() && *v != 0.0));

    let s = Summary::new(&f);
    let text = s.to_string();
    assert!(text.contains("architecture:    llama"), "{text}");
    assert!(text.contains("chat template:   present"), "{text}");
    assert!(
        text.contains(&format!(
            "Q4_1   {:>4} tensors",
            by_type[&GgmlType::Q4_1].len()
        )),
        "{text}"
    );
    assert_eq!(s.architecture.as_deref(), Some("llama"));
    assert_eq!(s.block_count, Some(30));
    assert!(s.chat_template);
    assert_eq!(s.vocab_size, Some(49152));
    assert!(
        (130_000_000..140_000_000).contains(&s.parameters),
        "{}",
        s.parameters
    );
}

#[test]
fn truncated_default_model_fails_clearly() {
    let bytes = std::fs::read(default_model()).unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 1_000_000, 100] {
        let e = GgufFile::from_bytes(bytes[..cut].to_vec()).unwrap_err();
        assert!(
            matches!(
                e,
                GgufError::TensorOutOfBounds { .. }
                    | GgufError::Truncated { .. }
                    | GgufError::LengthBeyondFile { .. }
            ),
            "cut at {cut}: {e:?}"
        );
        eprintln!("cut at {cut}: {e}");
    }
}
