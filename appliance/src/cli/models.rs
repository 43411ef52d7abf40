//! `airlock models ...`: installed model versions, activation, explicit rollback, and
//! inspection of a GGUF file.
use std::path::{Path, PathBuf};

use airlock_engine::airlock_gguf::{GgufFile, Summary};
use anyhow::Context;

use super::installed;

/// Installed models and model files.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock models list --config /etc/airlock/airlock.toml\n  \
airlock models activate smollm2-135m 1.1.0\n  airlock models rollback smollm2-135m\n  \
airlock models inspect SmolLM2-135M-Instruct.Q4_1.gguf"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    List(installed::ListArgs),
    Activate(installed::ActivateArgs),
    Rollback(installed::RollbackArgs),
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
    crate::logging::init_stderr();
    match args.command {
        Command::List(a) => installed::list(a),
        Command::Activate(a) => installed::activate(a),
        Command::Rollback(a) => installed::rollback(a),
        Command::Inspect(a) => inspect(&a.file),
    }
}

fn inspect(path: &Path) -> anyhow::Result<()> {
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
