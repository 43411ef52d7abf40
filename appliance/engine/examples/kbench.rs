//! K-quant matrix-product probe on model-shaped matrices of random blocks, no model file needed:
//! `cargo run --release -p airlock-engine --example kbench -- [LAYERS] [TOKENS]`.
//!
//! Builds the matrices of a Llama-3.2-1B-shaped Q4_K_M model (d 2048, ffn 8192, 32/8 heads,
//! vocab 128256; Q4_K projections, Q6_K for `attn_v`, `ffn_down` and the output head, as
//! llama.cpp's Q4_K_M mix does in about half the layers) and times one decode step's products
//! (each weight read once: GB/s of weights) and a prompt chunk of TOKENS tokens.
#![allow(clippy::unwrap_used, reason = "a diagnostic tool")]

use std::sync::Arc;
use std::time::Instant;

use airlock_engine::QWeight;
use airlock_engine::kernels;
use airlock_gguf::write::GgufWriter;
use airlock_gguf::{GgmlType, GgufFile};

/// Random blocks of `ty` with finite f16 scales (0.01 and 0.004).
fn random_blocks(ty: GgmlType, n: usize, state: &mut u64) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut v = vec![0u8; n / ty.block_size() * bb];
    for c in v.chunks_exact_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        c.copy_from_slice(&state.to_le_bytes());
    }
    let (d, m) = (
        half::f16::from_f32(0.01).to_le_bytes(),
        half::f16::from_f32(0.004).to_le_bytes(),
    );
    for b in v.chunks_exact_mut(bb) {
        if ty == GgmlType::Q6_K {
            b[bb - 2..].copy_from_slice(&d);
        } else {
            b[..2].copy_from_slice(&d);
            b[2..4].copy_from_slice(&m);
        }
    }
    v
}

/// CPU seconds (user + system, all threads) of this process, from /proc/self/stat: robust to
/// other processes sharing the cores, unlike wall time.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    // On a pool worker, as the engine runs a forward pass: from a foreign thread every parallel
    // product would pay a wake-up of the pool (tens of microseconds) that the engine does not.
    rayon::scope(|_| probe());
}

fn probe() {
    let mut args = std::env::args().skip(1);
    let layers: usize = args.next().map_or(16, |v| v.parse().unwrap());
    let tokens: usize = args.next().map_or(64, |v| v.parse().unwrap());
    let (d, ff, kv, vocab) = (2048usize, 8192usize, 512usize, 128_256usize);
    let mut w = GgufWriter::new();
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut add = |w: &mut GgufWriter, name: String, rows: usize, cols: usize, ty: GgmlType| {
        let data = random_blocks(ty, rows * cols, &mut state);
        w.tensor(&name, &[cols as u64, rows as u64], ty, data)
            .unwrap();
    };
    for l in 0..layers {
        let big = if l % 2 == 0 {
            GgmlType::Q6_K
        } else {
            GgmlType::Q4_K
        };
        add(&mut w, format!("{l}.q"), d, d, GgmlType::Q4_K);
        add(&mut w, format!("{l}.k"), kv, d, GgmlType::Q4_K);
        add(&mut w, format!("{l}.v"), kv, d, big);
        add(&mut w, format!("{l}.o"), d, d, GgmlType::Q4_K);
        add(&mut w, format!("{l}.gate"), ff, d, GgmlType::Q4_K);
        add(&mut w, format!("{l}.up"), ff, d, GgmlType::Q4_K);
        add(&mut w, format!("{l}.down"), d, ff, big);
    }
    add(&mut w, "output".into(), vocab, d, GgmlType::Q6_K);
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
    let interleave = std::env::var_os("KBENCH_ROWWISE").is_none();
    let q = |name: &str| {
        let w = QWeight::new(&file, file.tensor(name).unwrap()).unwrap();
        if interleave {
            w.with_interleaved_rows()
        } else {
            w
        }
    };
    // The groups a forward pass multiplies: q|k|v, o, gate|up, down per layer, then the head.
    let mut groups: Vec<Vec<QWeight>> = Vec::new();
    for l in 0..layers {
        groups.push(vec![
            q(&format!("{l}.q")),
            q(&format!("{l}.k")),
            q(&format!("{l}.v")),
        ]);
        groups.push(vec![q(&format!("{l}.o"))]);
        groups.push(vec![q(&format!("{l}.gate")), q(&format!("{l}.up"))]);
        groups.push(vec![q(&format!("{l}.down"))]);
    }
    groups.push(vec![q("output")]);
    let bytes: usize = groups.iter().flatten().map(|w| w.bytes().len()).sum();
    println!(
        "isa {:?}, {layers} layers, {} MiB of weights, {} threads",
        kernels::Isa::detect(),
        bytes >> 20,
        rayon::current_num_threads()
    );
    let run = |n: usize| {
        for g in &groups {
            let refs: Vec<&QWeight> = g.iter().collect();
            let x = vec![0.37f32; n * refs[0].cols()];
            let rows: usize = refs.iter().map(|w| w.rows()).sum();
            let mut out = vec![0f32; n * rows];
            kernels::matmul_rows_multi(&refs, &x, n, &mut out);
        }
    };
    run(1);
    let steps = 8;
    let mut times = Vec::new();
    let c = cpu_secs();
    for _ in 0..steps {
        let t = Instant::now();
        run(1);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let med = times[steps / 2];
    println!(
        "decode step products: median {:.2} ms ({:.1} GB/s of weights), fastest {:.2} ms, {:.2} ms cpu",
        med * 1e3,
        bytes as f64 / med / 1e9,
        times[0] * 1e3,
        (cpu_secs() - c) / steps as f64 * 1e3
    );
    // The same products from the last-level cache: the kernels' compute ceiling, to compare
    // with the streaming figure above (equal: compute-bound; far above: memory-bound).
    // 512 rows of 2048 (0.6-0.8 MB) stay in a core's L2; 2048 rows come from L3.
    for (ty, rows, cols) in [
        (GgmlType::Q4_K, 512, d),
        (GgmlType::Q4_K, 64, 8 * d),
        (GgmlType::Q4_K, d, d),
        (GgmlType::Q6_K, 512, d),
        (GgmlType::Q6_K, d, d),
    ] {
        let mut w = GgufWriter::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let data = random_blocks(ty, rows * cols, &mut state);
        w.tensor("hot", &[cols as u64, rows as u64], ty, data)
            .unwrap();
        let f = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
        let m = QWeight::new(&f, f.tensor("hot").unwrap()).unwrap();
        let x = vec![0.37f32; cols];
        let mut out = vec![0f32; rows];
        // The best of 9 rounds: the other tenants of a VM only ever slow a round down.
        let reps = 400 * 1024 * d / (rows * cols);
        kernels::matmul_rows(&m, &x, 1, &mut out);
        let s = (0..9)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    kernels::matmul_rows(&m, &x, 1, &mut out);
                }
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "{ty:?} {rows}x{cols} from cache: {:.1} GB/s of weights, {:.1} us per product (best round)",
            (m.bytes().len() * reps) as f64 / s / 1e9,
            s / reps as f64 * 1e6
        );
    }
    // One row's kernel alone (no rayon, no row lookup): what a super-block costs the kernel.
    for (ty, d) in [
        (GgmlType::Q4_K, d),
        (GgmlType::Q4_K, 8 * d),
        (GgmlType::Q6_K, d),
    ] {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let row = random_blocks(ty, d, &mut state);
        let a = kernels::q8k::Q8KRow::quantize(&vec![0.37f32; d]);
        let isa = kernels::Isa::detect();
        let reps = 400_000_000 / d;
        let s = (0..5)
            .map(|_| {
                let t = Instant::now();
                let mut acc = 0f32;
                for _ in 0..reps {
                    acc += kernels::row_dot_q8k(isa, ty, std::hint::black_box(&row), &a).unwrap();
                }
                std::hint::black_box(acc);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "{ty:?} one row of {d}: {:.2} ns per super-block",
            s / (reps * d / 256) as f64 * 1e9
        );
    }
    // Rows interleaved by sixteen (kernels::interleaved): 512 rows of 2048 from L2, one token
    // and four tokens per pass.
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        use kernels::interleaved::Interleaved;
        let (rows, cols) = (512, d);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let data = random_blocks(ty, rows * cols, &mut state);
        let g = Interleaved::repack(ty, &data, rows, cols).unwrap();
        let groups = rows / kernels::interleaved::ROWS;
        let acts: Vec<kernels::q8k::Q8KRow> = (0..4)
            .map(|t| kernels::q8k::Q8KRow::quantize(&vec![0.37f32 + t as f32; cols]))
            .collect();
        let blocks = (rows * cols / 256) as f64;
        let reps = 2000;
        let time = |f: &dyn Fn()| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        f();
                    }
                    t.elapsed().as_secs_f64() / reps as f64
                })
                .fold(f64::INFINITY, f64::min)
        };
        let one = time(&|| {
            for gi in 0..groups {
                std::hint::black_box(g.group(gi).dot_tokens::<1>(&[&acts[0]]));
            }
        });
        let four = time(&|| {
            for gi in 0..groups {
                std::hint::black_box(
                    g.group(gi)
                        .dot_tokens::<4>(&[&acts[0], &acts[1], &acts[2], &acts[3]]),
                );
            }
        });
        println!(
            "{ty:?} x16 {rows}x{cols}, one thread: {:.2} ns per row-block (1 token), {:.2} ns per row-block-token (4 tokens)",
            one / blocks * 1e9,
            four / blocks / 4.0 * 1e9
        );
    }
    if tokens > 1 {
        let (t, c) = (Instant::now(), cpu_secs());
        run(tokens);
        let s = t.elapsed().as_secs_f64();
        println!(
            "prompt chunk of {tokens}: {:.1} ms ({:.1} tok/s of products), {:.1} ms cpu",
            s * 1e3,
            tokens as f64 / s,
            (cpu_secs() - c) * 1e3
        );
    }
}
