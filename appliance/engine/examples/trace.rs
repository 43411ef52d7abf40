//! Dumps intermediate activations of a forward pass, to compare with llama.cpp's op by op:
//! `cargo run -p airlock-engine --example trace -- MODEL REFERENCE.json OUTDIR [CHUNK]`.
//! Runs the reference file's teacher-forced sequence (in chunks of CHUNK tokens, default all at
//! once) and writes `OUTDIR/index.json` (`[{"name", "shape", "file"}]`) and one raw
//! little-endian f32 file per tensor; llama.cpp's side comes from its graph callback
//! (`cb_eval`), which names the same tensors: `bench/fidelity_trace.py` dumps and compares.
#![allow(clippy::unwrap_used, reason = "a diagnostic tool")]

use airlock_engine::{Engine, Logits, SeqInput, trace};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: trace MODEL REFERENCE.json OUTDIR [CHUNK]";
    let (model, reference, out) = (
        args.next().expect(usage),
        args.next().expect(usage),
        args.next().expect(usage),
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
    let seq: Vec<u32> = reference["teacher_forced"]["sequence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let chunk = args.next().map_or(seq.len(), |c| c.parse().unwrap());
    let e = Engine::load(&model, None).unwrap();
    let m = e.model();
    let mut cache = m.new_cache();
    let slot = cache.allocate();
    let (logits, traced) = trace::capture(|| {
        seq.chunks(chunk)
            .flat_map(|tokens| {
                m.forward(&[SeqInput { slot, tokens }], &mut cache, Logits::All)
                    .unwrap()
            })
            .collect::<Vec<f32>>()
    });
    std::fs::create_dir_all(&out).unwrap();
    let mut index = Vec::new();
    let mut write = |name: &str, shape: Vec<usize>, values: &[f32]| {
        let file = format!("{:04}.bin", index.len());
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(format!("{out}/{file}"), bytes).unwrap();
        index.push(serde_json::json!({ "name": name, "shape": shape, "file": file }));
    };
    for t in &traced {
        write(&t.name, t.shape.clone(), &t.values);
    }
    let vocab = m.config().vocab_size;
    write("result_output", vec![seq.len(), vocab], &logits);
    std::fs::write(
        format!("{out}/index.json"),
        serde_json::to_string(&index).unwrap(),
    )
    .unwrap();
    eprintln!("{} tensors written to {out}", index.len());
}
