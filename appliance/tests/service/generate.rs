//! `airlock generate` and `airlock models inspect` on the real default model (inspect also on a
//! synthetic `qwen2` file).
use airlock_testkit::{default_model, reference};

use crate::common::airlock;

#[test]
fn chat_at_temperature_zero_streams_llama_cpps_answer_and_a_timing_line() {
    let model = default_model();
    let r = reference();
    let case = &r["chat"][0];
    let prompt = case["messages"][0]["content"].as_str().expect("prompt");
    let out = airlock(&[
        "generate",
        "--model",
        model.to_str().expect("utf-8"),
        "--chat",
        "--prompt",
        prompt,
        "--temperature",
        "0",
        "--threads",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), case["text"].as_str().expect("text"));
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    let fields: Vec<&str> = last.split(' ').collect();
    assert_eq!(fields[0], "timing:", "{last}");
    let keys: Vec<&str> = fields[1..]
        .iter()
        .map(|f| f.split('=').next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "prompt_tokens",
            "prompt_tps",
            "gen_tokens",
            "gen_tps",
            "ttft_ms"
        ],
        "{last}"
    );
    assert_eq!(fields[1], "prompt_tokens=42", "{last}");
    assert_eq!(fields[3], "gen_tokens=40", "{last}");
}

#[test]
fn ignore_eos_generates_exactly_max_tokens() {
    let model = default_model();
    let out = airlock(&[
        "generate",
        "--model",
        model.to_str().expect("utf-8"),
        "--prompt",
        "Hello",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        "--ignore-eos",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("gen_tokens=12 "), "{stderr}");
}

#[test]
fn prompt_beyond_the_context_is_a_one_line_error() {
    let model = default_model();
    let out = airlock(&[
        "generate",
        "--model",
        model.to_str().expect("utf-8"),
        "--prompt",
        "Hello",
        "--max-tokens",
        "9000",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("context length exceeded") && stderr.contains("8192"),
        "{stderr}"
    );
}

#[test]
fn models_inspect_summarises_the_default_model() {
    let model = default_model();
    let out = airlock(&["models", "inspect", model.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "architecture:    llama",
        "layers:          30",
        "Q4_1",
        "Q8_0",
        "chat template:   present",
        "tokenizer:       gpt2 (49152 tokens)",
        "engine:          supported",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
}

#[test]
fn models_inspect_on_a_truncated_file_fails_with_a_clear_message() {
    let model = default_model();
    let dir = tempfile::tempdir().expect("tempdir");
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&model).expect("read model");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let out = airlock(&["models", "inspect", cut.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cut.gguf"), "{stderr}");
    assert!(
        stderr.contains("lies beyond the end of the file")
            && stderr.contains("truncated or corrupt file"),
        "{stderr}"
    );
}

/// A `qwen2` file (metadata and embedding of a synthetic model; no weights needed to read the
/// configuration) is summarised as qwen2 and reported supported by the engine.
#[test]
fn models_inspect_reports_a_qwen2_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("qwen2.gguf");
    let mut g = airlock_gguf::write::GgufWriter::new();
    g.metadata("general.architecture", "qwen2")
        .metadata("qwen2.block_count", 2u32)
        .metadata("qwen2.context_length", 128u32)
        .metadata("qwen2.embedding_length", 64u32)
        .metadata("qwen2.feed_forward_length", 96u32)
        .metadata("qwen2.attention.head_count", 4u32)
        .metadata("qwen2.attention.head_count_kv", 2u32)
        .metadata("qwen2.rope.freq_base", 1_000_000f32)
        .metadata("qwen2.attention.layer_norm_rms_epsilon", 1e-6f32);
    let embd: Vec<f32> = (0..64 * 40).map(|i| (i as f32).sin()).collect();
    g.tensor_from_f32(
        "token_embd.weight",
        &[64, 40],
        airlock_gguf::GgmlType::Q8_0,
        &embd,
    )
    .expect("tensor");
    g.write_to(&p).expect("write gguf");
    let out = airlock(&["models", "inspect", p.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "architecture:    qwen2",
        "layers:          2",
        "engine:          supported (heads 4 / kv 2, head size 16, ffn 96, vocab 40)",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
}

/// `airlock doctor` on this (CPU-only) build: the CPU runs, the machine's NVIDIA facts are
/// reported either way, and asking for CUDA fails with the reason and exit 1.
#[test]
fn doctor_reports_each_backend_and_fails_for_one_that_cannot_run() {
    let out = airlock(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("build: backends cpu"), "{stdout}");
    assert!(stdout.contains("cpu: runs here"), "{stdout}");
    for fact in ["nvidia driver:", "device nodes:", "libcuda:", "libdevice:"] {
        assert!(stdout.contains(fact), "no {fact:?} line: {stdout}");
    }
    if !cfg!(feature = "cuda") {
        let out = airlock(&["doctor", "--device", "cuda"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("cuda: cannot run here: backend cuda is not built in"),
            "{stdout}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot run here: cuda"),
            "stderr names the backend"
        );
    }
}
