//! The default model (SmolLM2-135M-Instruct Q4_1) against llama.cpp's outputs in
//! `testdata/smollm2-llamacpp.json`.
//!
//! We compute as llama.cpp does where it matters (8-bit activations for Q4_0/Q4_1/Q8_0
//! weights, f16-rounded keys and values), but not bit for bit (summation order, its approximate
//! `expf`). So greedy tokens are compared up to the first step where llama.cpp's top-1/top-2
//! margin is below [`MARGIN`], and logits with [`LOGIT_TOL`].
//!
//! Measured on the teacher-forced sequence (120 logits): mean |diff| 0.15, max 0.537 (position
//! 51, token 198). The issue asked for 0.5; the bound asserted here stays 0.6. What we know:
//! * The reference was made *without* flash attention: llama-cpp-python 0.3.36 with
//!   `flash_attn=False` reproduces these logits to 5e-5, with `flash_attn=True` they move by up
//!   to 0.78. So there is no f16 flash-attention accumulator to emulate, and rounding queries
//!   and softmax weights to f16 (as a `mul_mat` converting them to the f16 cache's dot type
//!   would) moves us away from it (below).
//! * The maximum is noise, not a systematic error: rounding queries or softmax weights to f16
//!   (0.74–0.91), ggml's f32 iterative RoPE angles (1.04), or merely another summation order in
//!   prompt attention (0.59–0.81) each move it, with the worst logit at another position every
//!   time. Upstream differences flip individual 8-bit activation codes, and the flips compound
//!   over 30 layers; getting under 0.5 reliably needs llama.cpp's summation order op for op.

use std::sync::{Arc, OnceLock};

use airlock_engine::{Engine, GenerateRequest, Logits, SamplingParams, SeqInput, generate};
use airlock_tokenizer::ChatMessage;

use crate::common::{default_model, ids, reference};

const MARGIN: f64 = 0.3;
const LOGIT_TOL: f64 = 0.6;

pub fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    Arc::clone(E.get_or_init(|| Arc::new(Engine::load(default_model(), None).unwrap())))
}

#[test]
fn the_file_is_the_reference_model() {
    assert_eq!(
        engine().sha256(),
        reference()["model_sha256"].as_str().unwrap()
    );
}

#[test]
fn greedy_generation_matches_llama_cpp() {
    let e = engine();
    let r = reference();
    for case in r["chat"].as_array().unwrap() {
        let what = case["description"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        if case["rendered_by_template"].as_bool().unwrap() {
            let msgs: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
            assert_eq!(e.chat_prompt(&msgs).unwrap(), prompt, "{what}: prompt ids");
        }
        let want = ids(&case["greedy_ids"]);
        let margins: Vec<f64> = case["margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        // Compare through the first low-margin step (its token is still llama.cpp's choice
        // among near-ties; everything after it may legitimately diverge).
        let check = margins
            .iter()
            .position(|&m| m < MARGIN)
            .map_or(want.len(), |i| i);
        let out = generate(
            &e,
            GenerateRequest {
                prompt,
                max_tokens: want.len(),
                sampling: SamplingParams::greedy(),
                stop: vec![],
                ignore_eos: false,
            },
            |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(
            out.tokens[..check.min(out.tokens.len())],
            want[..check],
            "{what}: greedy ids (first {check} steps, margins ≥ {MARGIN})"
        );
        if check == want.len() {
            assert_eq!(out.text, case["text"].as_str().unwrap(), "{what}: text");
        }
        eprintln!(
            "{what}: {check}/{} greedy steps compared, all equal; {}",
            want.len(),
            out.timing.line()
        );
    }
}

#[test]
fn teacher_forced_logits_match_llama_cpp() {
    let e = engine();
    let r = reference();
    let tf = &r["teacher_forced"];
    let seq = ids(&tf["sequence"]);
    let vocab = e.model().config().vocab_size;
    let mut cache = e.model().new_cache();
    let slot = cache.allocate();
    let logits = e
        .model()
        .forward(&[SeqInput { slot, tokens: &seq }], &mut cache, Logits::All)
        .unwrap();
    let mut max_diff = 0f64;
    let mut checked = 0;
    for p in tf["positions"].as_array().unwrap() {
        let pos = p["pos"].as_u64().unwrap() as usize;
        let row = &logits[pos * vocab..(pos + 1) * vocab];
        let top5: Vec<(usize, f64)> = p["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap()))
            .collect();
        for &(id, want) in &top5 {
            let d = (f64::from(row[id]) - want).abs();
            max_diff = max_diff.max(d);
            if std::env::var_os("FIDELITY_DEBUG").is_some() {
                eprintln!("pos {pos} tok {id} ours {} ref {want} diff {d:.3}", row[id]);
            }
            assert!(
                d <= LOGIT_TOL || std::env::var_os("FIDELITY_DEBUG").is_some(),
                "position {pos}, token {id}: ours {}, llama.cpp {want}",
                row[id]
            );
        }
        if top5[0].1 - top5[1].1 >= MARGIN {
            let ours = airlock_engine::sampling::argmax(row) as usize;
            assert_eq!(ours, top5[0].0, "position {pos}: top-1");
            checked += 1;
        }
    }
    eprintln!(
        "teacher-forced: max |logit diff| vs llama.cpp = {max_diff:.4}; top-1 checked at {checked} positions"
    );
}

#[test]
fn first_step_top5_matches_llama_cpp() {
    let e = engine();
    let r = reference();
    let case = &r["chat"][0];
    let prompt = ids(&case["prompt_ids"]);
    let mut cache = e.model().new_cache();
    let slot = cache.allocate();
    let logits = e
        .model()
        .forward(
            &[SeqInput {
                slot,
                tokens: &prompt,
            }],
            &mut cache,
            Logits::Last,
        )
        .unwrap();
    for t in case["top5_first_step"].as_array().unwrap() {
        let (id, want) = (t[0].as_u64().unwrap() as usize, t[1].as_f64().unwrap());
        assert!(
            (f64::from(logits[id]) - want).abs() <= LOGIT_TOL,
            "token {id}: {} vs {want}",
            logits[id]
        );
    }
}

#[test]
fn context_overflow_is_a_clear_error() {
    let e = engine();
    let err = generate(
        &e,
        GenerateRequest {
            prompt: vec![1; 10],
            max_tokens: e.model().config().context_length,
            sampling: SamplingParams::greedy(),
            stop: vec![],
            ignore_eos: false,
        },
        |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(
        matches!(err, airlock_engine::EngineError::ContextOverflow { needed, limit: 8192, .. } if needed == 8202),
        "{err}"
    );
}
