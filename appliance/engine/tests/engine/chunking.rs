//! The forward pass is chunk-invariant: feeding a sequence in one pass, token by token, or in
//! random chunks (alone or beside another sequence's chunks in the same pass) gives bitwise
//! identical logits at every position. Batching ("batched equals solo") and the prefix cache
//! (a cached prefix is resumed with a short chunk where a cold run had one long chunk) rely on
//! it. Checked on the real default model (8-bit activations, f16-rounded KV) and on synthetic
//! Q4_0/Q4_1/Q8_0 models. Models whose matrices take the prompt GEMM (K-quants, dense types,
//! exact activations: see `airlock_engine::ops`) are chunk-invariant in attention but not in
//! their matrix products: for them the chunkings agree up to f32 rounding, checked too.

use std::sync::Arc;

use airlock_engine::{Llama, Logits, SeqInput};
use airlock_gguf::{GgmlType, GgufFile};
use burn::tensor::Device;

use crate::common::{Rng, Synth, synth_model};
use crate::fidelity::engine;

/// Splits `len` tokens into random chunks of 1..=`max` tokens.
fn random_chunks(rng: &mut Rng, len: usize, max: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let c = (1 + (rng.next_u64() % max as u64) as usize).min(left);
        out.push(c);
        left -= c;
    }
    out
}

/// Logits at every position of `tokens` fed in `chunks`; with `other`, a second sequence is
/// fed in the same passes (one token per pass, then idle), so batch composition varies too.
fn chunked(model: &Llama, tokens: &[u32], chunks: &[usize], other: Option<&[u32]>) -> Vec<f32> {
    let vocab = model.config().vocab_size;
    let mut cache = model.new_cache();
    let (slot, slot_b) = (cache.allocate(), cache.allocate());
    let mut out = Vec::new();
    let mut pos = 0;
    for (k, &c) in chunks.iter().enumerate() {
        let mut inputs = vec![SeqInput {
            slot,
            tokens: &tokens[pos..pos + c],
        }];
        if let Some(b) = other.filter(|b| k < b.len()) {
            // Before `a` (its rows come first in the pass) on even passes, after on odd ones.
            let input = SeqInput {
                slot: slot_b,
                tokens: &b[k..k + 1],
            };
            if k % 2 == 0 {
                inputs.insert(0, input);
            } else {
                inputs.push(input);
            }
        }
        let logits = model.forward(&inputs, &mut cache, Logits::All).unwrap();
        let a_first = inputs[0].slot == slot;
        let skip = if a_first { 0 } else { inputs[0].tokens.len() };
        out.extend_from_slice(&logits[skip * vocab..(skip + c) * vocab]);
        pos += c;
    }
    out
}

/// Asserts equality of two logit vectors (bitwise when `tol` is 0), naming the first
/// differing position.
fn assert_same(want: &[f32], got: &[f32], vocab: usize, what: &str, tol: f32) {
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let ok = if tol == 0.0 {
            w.to_bits() == g.to_bits()
        } else {
            (w - g).abs() <= tol
        };
        assert!(
            ok,
            "{what}: position {}, logit {}: {w} (one pass) vs {g}",
            i / vocab,
            i % vocab
        );
    }
}

/// One pass against token by token, random chunks, and random chunks beside another sequence;
/// bitwise when `tol` is 0.
fn check(model: &Llama, tokens: &[u32], other: &[u32], seed: u64, tol: f32) {
    let vocab = model.config().vocab_size;
    let n = tokens.len();
    let whole = chunked(model, tokens, &[n], None);
    let ones = vec![1; n];
    let got = chunked(model, tokens, &ones, None);
    assert_same(&whole, &got, vocab, "1-token chunks", tol);
    let mut rng = Rng::new(seed);
    for round in 0..3 {
        let chunks = random_chunks(&mut rng, n, 2 + round * 7);
        let what = format!("chunks {chunks:?}");
        let got = chunked(model, tokens, &chunks, None);
        assert_same(&whole, &got, vocab, &what, tol);
        let what = format!("chunks {chunks:?} beside another sequence");
        let got = chunked(model, tokens, &chunks, Some(other));
        assert_same(&whole, &got, vocab, &what, tol);
    }
}

#[test]
fn default_model_logits_do_not_depend_on_chunking() {
    let e = engine();
    let mut rng = Rng::new(71);
    let vocab = e.model().config().vocab_size as u64;
    // 45 tokens: long enough for 4-token tiles, short tails and several attention rows.
    let tokens: Vec<u32> = (0..45).map(|_| (rng.next_u64() % vocab) as u32).collect();
    let other: Vec<u32> = (0..9).map(|_| (rng.next_u64() % vocab) as u32).collect();
    check(e.model(), &tokens, &other, 72, 0.0);
}

fn synthetic(s: &Synth, exact: bool) {
    let file = Arc::new(GgufFile::from_bytes(synth_model(s)).unwrap());
    let model = Llama::load(&file, &Device::flex())
        .unwrap()
        .with_exact_activations(exact);
    let mut rng = Rng::new(s.seed + 7);
    let tokens: Vec<u32> = (0..37)
        .map(|_| (rng.next_u64() % s.vocab as u64) as u32)
        .collect();
    let other: Vec<u32> = (0..6)
        .map(|_| (rng.next_u64() % s.vocab as u64) as u32)
        .collect();
    // Bitwise where every matrix takes the 8-bit-activation kernels (Q4_0/Q4_1/Q8_0 and the
    // K-quants); else f32 rounding.
    let q8 = |t: GgmlType| {
        matches!(
            t,
            GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q8_0
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
        )
    };
    let invariant = !exact && q8(s.ty) && q8(s.down_ty) && q8(s.embd_ty);
    let tol = if invariant { 0.0 } else { 1e-3 };
    check(&model, &tokens, &other, s.seed + 8, tol);
}

fn base() -> Synth {
    Synth {
        arch: "llama",
        omit: &[],
        d_model: 64,
        d_ff: 96,
        n_heads: 4,
        n_kv_heads: 2,
        n_layers: 2,
        vocab: 40,
        ctx: 64,
        tied: true,
        ty: GgmlType::Q8_0,
        down_ty: GgmlType::Q8_0,
        embd_ty: GgmlType::Q8_0,
        rope_base: 10000.0,
        seed: 11,
    }
}

#[test]
fn synthetic_models_do_not_depend_on_chunking() {
    let models = [
        base(),
        Synth {
            d_model: 96,
            d_ff: 128,
            n_heads: 6,
            tied: false,
            ty: GgmlType::Q4_0,
            down_ty: GgmlType::Q4_1,
            embd_ty: GgmlType::Q4_1,
            seed: 12,
            ..base()
        },
        Synth {
            d_model: 256,
            d_ff: 512,
            n_heads: 8,
            tied: false,
            ty: GgmlType::Q4_K,
            down_ty: GgmlType::Q5_K,
            embd_ty: GgmlType::Q6_K,
            seed: 13,
            ..base()
        },
        Synth {
            n_kv_heads: 1,
            ty: GgmlType::F16,
            down_ty: GgmlType::BF16,
            embd_ty: GgmlType::F32,
            seed: 14,
            ..base()
        },
        // qwen2: Q/K/V biases and NEOX RoPE.
        Synth {
            arch: "qwen2",
            n_kv_heads: 1,
            seed: 15,
            ..base()
        },
    ];
    for s in &models {
        for exact in [false, true] {
            synthetic(s, exact);
        }
    }
}
