//! `airlock models ...`: model files and installed models.
use std::path::PathBuf;

use airlock_engine::airlock_gguf::{GgufFile, Summary};
use anyhow::Context;

/// Model files and installed models.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  airlock models inspect SmolLM2-135M-Instruct.Q4_1.gguf")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Inspect(InspectArgs),
}

/// Print a GGUF file's architecture, sizes, quantization mix, tokenizer and chat template
/// presence (the whole file is validated first).
#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// The GGUF file.
    file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Inspect(a) => inspect(&a.file),
    }
}

fn inspect(path: &std::path::Path) -> anyhow::Result<()> {
    let f =
        GgufFile::open(path).with_context(|| format!("invalid model file {}", path.display()))?;
    println!("{}", Summary::new(&f));
    match airlock_engine::LlamaConfig::from_gguf(&f) {
        Ok(c) => println!(
            "engine:          supported (heads {} / kv {}, head size {}, ffn {}, vocab {})",
            c.n_heads, c.n_kv_heads, c.head_dim, c.d_ff, c.vocab_size
        ),
        Err(e) => println!("engine:          not supported: {e}"),
    }
    Ok(())
}
