//! The engine against a naive f64 forward pass written from the llama.cpp graphs
//! (`llm_build_llama`; `llm_build_qwen2`: Q/K/V biases added after the projections, RoPE on
//! half-split pairs `(i, i + d/2)`): plain loops over dequantized weights, no burn, no kernels.
//!
//! Tolerance (exact f32 activations): |engine − reference| ≤ 1e-4 · max(1, max |reference|) on
//! every logit; with llama.cpp-style 8-bit activations 5e-2 (see [`check_with`]). The engine
//! computes in f32 (the reference in f64) over the same dequantized weights, so the difference
//! is accumulated f32 rounding only (observed ≈ 3e-6 absolute, 1e-6 relative); a wrong RoPE pair, GQA head
//! mapping, mask or norm moves logits by O(1).

use std::sync::Arc;

use airlock_engine::{Llama, Logits, SeqInput};
use airlock_gguf::{GgmlType, GgufFile};
use burn::tensor::Device;

use crate::common::{Rng, Synth, synth_model};

/// Looks a tensor up by name and returns it dequantized to f64.
type Weights = Box<dyn Fn(&str) -> Vec<f64>>;

/// Dequantized f64 weights of a synthetic model.
struct RefModel {
    s: Synth,
    get: Weights,
}

impl RefModel {
    fn new(s: &Synth, file: Arc<GgufFile>) -> RefModel {
        RefModel {
            s: s.clone(),
            get: Box::new(move |name| {
                let t = file.require_tensor(name).unwrap();
                file.dequantize_tensor(t)
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect()
            }),
        }
    }

    /// Logits at every position of `tokens`, `[tokens.len()][vocab]`.
    fn forward(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let s = &self.s;
        let (d, hd) = (s.d_model, s.d_model / s.n_heads);
        let group = s.n_heads / s.n_kv_heads;
        let kvd = s.n_kv_heads * hd;
        let matvec = |w: &[f64], x: &[f64], rows: usize| -> Vec<f64> {
            let cols = x.len();
            (0..rows)
                .map(|r| (0..cols).map(|c| w[r * cols + c] * x[c]).sum())
                .collect()
        };
        let rms = |x: &[f64], w: &[f64]| -> Vec<f64> {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
            let k = 1.0 / (ms + 1e-5f32 as f64).sqrt();
            x.iter().zip(w).map(|(v, g)| v * k * g).collect()
        };
        let qwen2 = s.arch == "qwen2";
        let rope = |v: &mut [f64], pos: usize| {
            for h in 0..v.len() / hd {
                for i in 0..hd / 2 {
                    let theta = pos as f64 * (s.rope_base as f64).powf(-2.0 * i as f64 / hd as f64);
                    let (sn, cs) = theta.sin_cos();
                    // llama: adjacent pairs; qwen2 (NEOX): first half with second half.
                    let (i0, i1) = if qwen2 {
                        (h * hd + i, h * hd + i + hd / 2)
                    } else {
                        (h * hd + 2 * i, h * hd + 2 * i + 1)
                    };
                    let (a, b) = (v[i0], v[i1]);
                    v[i0] = a * cs - b * sn;
                    v[i1] = a * sn + b * cs;
                }
            }
        };
        let add = |v: &mut [f64], b: &[f64]| {
            for (x, y) in v.iter_mut().zip(b) {
                *x += y;
            }
        };
        let embd = (self.get)("token_embd.weight");
        let out_w = if s.tied {
            embd.clone()
        } else {
            (self.get)("output.weight")
        };
        let mut xs: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| embd[t as usize * d..][..d].to_vec())
            .collect();
        for l in 0..s.n_layers {
            let g = |n: &str| (self.get)(&format!("blk.{l}.{n}.weight"));
            let (wq, wk, wv, wo) = (g("attn_q"), g("attn_k"), g("attn_v"), g("attn_output"));
            let (wg, wu, wd) = (g("ffn_gate"), g("ffn_up"), g("ffn_down"));
            let (an, fnw) = (g("attn_norm"), g("ffn_norm"));
            let bias = |n: &str| -> Vec<f64> {
                if qwen2 {
                    (self.get)(&format!("blk.{l}.{n}.bias"))
                } else {
                    vec![0.0; if n == "attn_q" { d } else { kvd }]
                }
            };
            let (bq, bk, bv) = (bias("attn_q"), bias("attn_k"), bias("attn_v"));
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            let mut qs = Vec::new();
            for (p, x) in xs.iter().enumerate() {
                let h = rms(x, &an);
                let mut q = matvec(&wq, &h, d);
                let mut k = matvec(&wk, &h, kvd);
                let mut v = matvec(&wv, &h, kvd);
                add(&mut q, &bq);
                add(&mut k, &bk);
                add(&mut v, &bv);
                rope(&mut q, p);
                rope(&mut k, p);
                qs.push(q);
                ks.push(k);
                vs.push(v);
            }
            for p in 0..xs.len() {
                let mut att = vec![0f64; d];
                for head in 0..s.n_heads {
                    let kvh = head / group;
                    let q = &qs[p][head * hd..][..hd];
                    let scores: Vec<f64> = (0..=p)
                        .map(|j| {
                            let k = &ks[j][kvh * hd..][..hd];
                            q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (j, ej) in e.iter().enumerate() {
                        for c in 0..hd {
                            att[head * hd + c] += ej / z * vs[j][kvh * hd + c];
                        }
                    }
                }
                let o = matvec(&wo, &att, d);
                for (x, o) in xs[p].iter_mut().zip(o) {
                    *x += o;
                }
                let h = rms(&xs[p], &fnw);
                let gate = matvec(&wg, &h, s.d_ff);
                let up = matvec(&wu, &h, s.d_ff);
                let act: Vec<f64> = gate
                    .iter()
                    .zip(&up)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let dn = matvec(&wd, &act, d);
                for (x, o) in xs[p].iter_mut().zip(dn) {
                    *x += o;
                }
            }
        }
        let on = (self.get)("output_norm.weight");
        xs.iter()
            .map(|x| matvec(&out_w, &rms(x, &on), s.vocab))
            .collect()
    }
}

fn max_abs(v: &[Vec<f64>]) -> f64 {
    v.iter().flatten().fold(0f64, |m, x| m.max(x.abs()))
}

/// Runs `s` two ways: (a) two sequences batched, the first prefilled in one chunk then
/// decoded token by token, the second fed in uneven chunks; (b) all positions at once with
/// `Logits::All`. Every logit is compared with the f64 reference.
fn check(s: Synth) {
    check_with(s.clone(), true);
    check_with(s, false);
}

/// `exact`: f32 activations and f32 keys/values, tolerance 1e-4 (relative to the largest logit). Otherwise 8-bit
/// activations for Q4_0/Q4_1/Q8_0 (blocks of 32) and K-quant (blocks of 256) weights as
/// llama.cpp: each product then carries ≈ 0.4 %
/// relative rounding per activation block, so the tolerance is 5e-2 — still far below the
/// O(1) error of any wrong head mapping, mask, RoPE pair or norm.
fn check_with(s: Synth, exact: bool) {
    let file = Arc::new(GgufFile::from_bytes(synth_model(&s)).unwrap());
    let model = Llama::load(&file, &Device::flex())
        .unwrap()
        .with_exact_activations(exact);
    let reference = RefModel::new(&s, Arc::clone(&file));
    let mut rng = Rng::new(s.seed + 1);
    let a: Vec<u32> = (0..13)
        .map(|_| (rng.next_u64() % s.vocab as u64) as u32)
        .collect();
    let b: Vec<u32> = (0..11)
        .map(|_| (rng.next_u64() % s.vocab as u64) as u32)
        .collect();
    let (ra, rb) = (reference.forward(&a), reference.forward(&b));
    let rel = if exact { 1e-4 } else { 5e-2 };
    let tol = rel * max_abs(&ra).max(max_abs(&rb)).max(1.0);
    let vocab = s.vocab;
    let mut worst = 0f64;
    let mut cmp = |got: &[f32], want: &[f64], what: &str| {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let diff = (f64::from(*g) - w).abs();
            worst = worst.max(diff);
            assert!(
                diff <= tol,
                "{s:?}: {what}: logit {i}: engine {g}, reference {w}, tolerance {tol}"
            );
        }
    };

    // (b) all positions of `a` in one pass (prompt path: multi-token kernels, or GEMM on decoded
    // bands for dense types and exact activations).
    let mut cache = model.new_cache();
    let slot = cache.allocate();
    let all = model
        .forward(&[SeqInput { slot, tokens: &a }], &mut cache, Logits::All)
        .unwrap();
    for (p, row) in all.chunks_exact(vocab).enumerate() {
        cmp(row, &ra[p], &format!("all-positions pass, position {p}"));
    }

    // (a) batched: a[..9] and b[..3] together, then decode steps / chunks together.
    let mut cache = model.new_cache();
    let (sa, sb) = (cache.allocate(), cache.allocate());
    let (mut pa, mut pb) = (9, 3);
    let out = model
        .forward(
            &[
                SeqInput {
                    slot: sa,
                    tokens: &a[..pa],
                },
                SeqInput {
                    slot: sb,
                    tokens: &b[..pb],
                },
            ],
            &mut cache,
            Logits::Last,
        )
        .unwrap();
    cmp(&out[..vocab], &ra[pa - 1], "batched prefill, sequence a");
    cmp(&out[vocab..], &rb[pb - 1], "batched prefill, sequence b");
    while pa < a.len() {
        let nb = if pb + 2 <= b.len() { 2 } else { b.len() - pb };
        let mut inputs = vec![SeqInput {
            slot: sa,
            tokens: &a[pa..pa + 1],
        }];
        if nb > 0 {
            inputs.push(SeqInput {
                slot: sb,
                tokens: &b[pb..pb + nb],
            });
        }
        let out = model.forward(&inputs, &mut cache, Logits::Last).unwrap();
        cmp(
            &out[..vocab],
            &ra[pa],
            &format!("decode step, sequence a, position {pa}"),
        );
        if nb > 0 {
            cmp(
                &out[vocab..],
                &rb[pb + nb - 1],
                &format!("chunk, sequence b, position {}", pb + nb - 1),
            );
        }
        pa += 1;
        pb += nb;
    }
    eprintln!(
        "{} {:?}/{:?}/{:?}: max |diff| {worst:.2e} (tolerance {tol:.2e})",
        s.arch, s.ty, s.down_ty, s.embd_ty
    );
}

fn base() -> Synth {
    Synth {
        arch: "llama",
        omit: &[],
        d_model: 64,
        d_ff: 96,
        n_heads: 4,
        n_kv_heads: 4,
        n_layers: 2,
        vocab: 40,
        ctx: 64,
        tied: true,
        ty: GgmlType::Q8_0,
        down_ty: GgmlType::Q8_0,
        embd_ty: GgmlType::Q8_0,
        rope_base: 10000.0,
        seed: 1,
    }
}

#[test]
fn gqa_1_tied_q8_0() {
    check(base());
}

#[test]
fn gqa_3_untied_q4_0_q4_1() {
    check(Synth {
        d_model: 96,
        d_ff: 128,
        n_heads: 6,
        n_kv_heads: 2,
        tied: false,
        ty: GgmlType::Q4_0,
        down_ty: GgmlType::Q4_1,
        embd_ty: GgmlType::Q4_1,
        seed: 2,
        ..base()
    });
}

#[test]
fn gqa_4_untied_k_quants() {
    check(Synth {
        d_model: 256,
        d_ff: 512,
        n_heads: 8,
        n_kv_heads: 2,
        tied: false,
        ty: GgmlType::Q4_K,
        down_ty: GgmlType::Q5_K,
        embd_ty: GgmlType::Q6_K,
        rope_base: 100000.0,
        seed: 3,
        ..base()
    });
}

#[test]
fn gqa_4_tied_dense_types() {
    check(Synth {
        n_heads: 4,
        n_kv_heads: 1,
        ty: GgmlType::F16,
        down_ty: GgmlType::BF16,
        embd_ty: GgmlType::F32,
        seed: 4,
        ..base()
    });
}

// qwen2: Q/K/V biases, NEOX RoPE (Qwen2.5's GQA ratios: 7, 6, 4 query heads per KV head).

#[test]
fn qwen2_gqa_1_tied_q8_0() {
    check(Synth {
        arch: "qwen2",
        rope_base: 1000000.0,
        seed: 21,
        ..base()
    });
}

#[test]
fn qwen2_gqa_7_untied_q4_0_q4_1() {
    check(Synth {
        arch: "qwen2",
        d_model: 224,
        d_ff: 160,
        n_heads: 7,
        n_kv_heads: 1,
        tied: false,
        ty: GgmlType::Q4_0,
        down_ty: GgmlType::Q4_1,
        embd_ty: GgmlType::Q8_0,
        rope_base: 1000000.0,
        seed: 22,
        ..base()
    });
}

#[test]
fn qwen2_gqa_4_untied_k_quants() {
    check(Synth {
        arch: "qwen2",
        d_model: 256,
        d_ff: 512,
        n_heads: 8,
        n_kv_heads: 2,
        tied: false,
        ty: GgmlType::Q4_K,
        down_ty: GgmlType::Q6_K,
        embd_ty: GgmlType::Q6_K,
        seed: 23,
        ..base()
    });
}

#[test]
fn qwen2_gqa_2_tied_dense_types() {
    check(Synth {
        arch: "qwen2",
        n_heads: 4,
        n_kv_heads: 2,
        ty: GgmlType::F16,
        down_ty: GgmlType::BF16,
        embd_ty: GgmlType::F32,
        seed: 24,
        ..base()
    });
}
