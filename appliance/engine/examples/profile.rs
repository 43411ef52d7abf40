//! Decode-speed probe: `cargo run --release -p airlock-engine --example profile -- MODEL [THREADS]`.
//! Prints the time of a 128-token prompt pass, of single-token decode steps, and of the
//! quantized matrix products alone (all weights once, as one decode step reads them).
#![allow(clippy::unwrap_used, reason = "a diagnostic tool")]

use std::time::Instant;

/// CPU seconds (user + system, all threads) of this process, from /proc/self/stat.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

use airlock_engine::{Engine, Logits, SeqInput, kernels};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: profile MODEL [THREADS]");
    let threads = args.next().map(|t| t.parse().unwrap());
    let e = Engine::load(&path, threads).unwrap();
    let m = e.model();
    if std::env::var_os("PROFILE_MATMULS_ONLY").is_some() {
        let steps = std::env::var("PROFILE_STEPS").map_or(64, |v| v.parse().unwrap());
        matmuls_only(m, steps);
        return;
    }
    if std::env::var_os("PROFILE_KERNELS_ONLY").is_some() {
        kernel_speed(&m.blocks[0].mlp.up);
        kernel_speed(&m.output);
        return;
    }
    let prompt: Vec<u32> = (0..128).map(|i| 100 + i).collect();
    let mut cache = m.new_cache();
    let slot = cache.allocate();
    let (t, c) = (Instant::now(), cpu_secs());
    m.forward(
        &[SeqInput {
            slot,
            tokens: &prompt,
        }],
        &mut cache,
        Logits::Last,
    )
    .unwrap();
    println!(
        "prompt 128: {:.1} ms wall, {:.1} ms cpu",
        t.elapsed().as_secs_f64() * 1e3,
        (cpu_secs() - c) * 1e3
    );
    let (t, c) = (Instant::now(), cpu_secs());
    let steps = std::env::var("PROFILE_STEPS").map_or(64, |v| v.parse().unwrap());
    let mut times = Vec::new();
    for i in 0..steps {
        let ts = Instant::now();
        m.forward(
            &[SeqInput {
                slot,
                tokens: &[200 + i],
            }],
            &mut cache,
            Logits::Last,
        )
        .unwrap();
        times.push(ts.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let (best, median) = (times[0], times[times.len() / 2]);
    let step = t.elapsed().as_secs_f64() / f64::from(steps);
    let cpu = (cpu_secs() - c) / f64::from(steps);
    println!(
        "decode step: {:.2} ms wall ({:.1} tok/s), {:.2} ms cpu, fastest step {:.2} ms, median {:.2} ms",
        step * 1e3,
        1.0 / step,
        cpu * 1e3,
        best * 1e3,
        median * 1e3
    );
    if std::env::var_os("PROFILE_DECODE_ONLY").is_some() {
        return;
    }
    kernel_speed(&m.blocks[0].mlp.up);
    kernel_speed(&m.output);
    matmuls_only(m, steps);
}

/// Every weight matrix multiplied once per step with one token, on a rayon worker as in a
/// forward pass: what a decode step costs without everything but the products.
fn matmuls_only(m: &airlock_engine::Llama, steps: u32) {
    let mut ws = vec![&m.output];
    for b in &m.blocks {
        ws.extend([
            &b.attn.wq,
            &b.attn.wk,
            &b.attn.wv,
            &b.attn.wo,
            &b.mlp.gate,
            &b.mlp.up,
            &b.mlp.down,
        ]);
    }
    let (t, c) = (Instant::now(), cpu_secs());
    let mut times = Vec::new();
    for _ in 0..steps {
        let ts = Instant::now();
        rayon::scope(|_| {
            for w in &ws {
                let x = vec![0.5f32; w.cols()];
                let mut out = vec![0f32; w.rows()];
                kernels::matmul_rows(w, &x, 1, &mut out);
            }
        });
        times.push(ts.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mm = t.elapsed().as_secs_f64() / f64::from(steps);
    println!(
        "matmuls cpu: {:.2} ms per step",
        (cpu_secs() - c) / f64::from(steps) * 1e3
    );
    let bytes: usize = ws.iter().map(|w| w.bytes().len()).sum();
    println!(
        "matmuls only: {:.2} ms per step ({:.1} GB/s of weights, {} MiB), fastest {:.2} ms, median {:.2} ms",
        mm * 1e3,
        bytes as f64 / mm / 1e9,
        bytes >> 20,
        times[0] * 1e3,
        times[times.len() / 2] * 1e3
    );
}

/// Single-thread kernel speed on one matrix (rows reused from cache for small matrices).
fn kernel_speed(w: &airlock_engine::QWeight) {
    use airlock_engine::kernels::{Isa, q8::Q8Row, row_dot_q8};
    let x = vec![0.5f32; w.cols()];
    let a = Q8Row::quantize(&x);
    let isa = Isa::best_supported();
    let reps = 200;
    let (t, c) = (Instant::now(), cpu_secs());
    let mut sink = 0f32;
    for _ in 0..reps {
        for r in 0..w.rows() {
            sink += row_dot_q8(isa, w.ggml_type(), w.row(r).unwrap(), &a).unwrap();
        }
    }
    let blocks = (w.rows() * w.cols() / 32 * reps) as f64;
    let (t4, c4) = (Instant::now(), cpu_secs());
    for _ in 0..reps {
        for r in (0..w.rows()).step_by(4) {
            let rs: [&[u8]; 4] = std::array::from_fn(|k| w.row(r + k).unwrap());
            let v = airlock_engine::kernels::rows4_dot_q8(isa, w.ggml_type(), &rs, &a).unwrap();
            sink += v[0];
        }
    }
    println!(
        "kernel {:?} four rows: {:.2} ns/block wall, {:.2} ns/block cpu",
        w.ggml_type(),
        t4.elapsed().as_secs_f64() * 1e9 / blocks,
        (cpu_secs() - c4) * 1e9 / blocks
    );
    println!(
        "kernel {:?}: {:.2} ns/block wall, {:.2} ns/block cpu ({sink})",
        w.ggml_type(),
        t.elapsed().as_secs_f64() * 1e9 / blocks,
        (cpu_secs() - c) * 1e9 / blocks
    );
}
