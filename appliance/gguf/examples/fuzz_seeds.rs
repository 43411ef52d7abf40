//! Writes a seed corpus for the fuzz targets: small valid GGUF files covering every metadata
//! value type and every tensor type. Usage: `cargo run -p airlock-gguf --example fuzz_seeds -- DIR`
use std::path::PathBuf;

use airlock_gguf::write::GgufWriter;
use airlock_gguf::{Array, GgmlType};

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "corpus/open".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let mut meta = GgufWriter::new();
    meta.metadata("general.architecture", "llama")
        .metadata("u8", 1u8)
        .metadata("i8", -1i8)
        .metadata("u16", 2u16)
        .metadata("i16", -2i16)
        .metadata("u32", 3u32)
        .metadata("i32", -3i32)
        .metadata("u64", 4u64)
        .metadata("i64", -4i64)
        .metadata("f32", 0.5f32)
        .metadata("f64", 0.25f64)
        .metadata("bool", true)
        .metadata("tokens", vec!["a", "b"])
        .metadata("types", vec![1i32, 3])
        .metadata("nested", Array::Array(vec![Array::Bool(vec![false])]));
    std::fs::write(dir.join("metadata.gguf"), meta.to_bytes())?;
    for ty in GgmlType::ALL {
        let n = ty.block_size().max(4) * 2;
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut w = GgufWriter::new();
        w.metadata("general.architecture", "llama");
        w.alignment(if ty == GgmlType::F32 { 16 } else { 32 });
        w.tensor_from_f32("t.weight", &[n as u64 / 2, 2], ty, &x)
            .and_then(|w| w.tensor_from_f32("u.weight", &[n as u64], ty, &x))
            .map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("tensor-{ty}.gguf")), w.to_bytes())?;
    }
    Ok(())
}
