//! `airlock models ...`: model files (`inspect`) and installed models (list, activate,
//! explicit rollback).
use std::path::PathBuf;

use airlock_engine::airlock_gguf::{GgufFile, Summary};
use anyhow::Context;

use super::installed;

/// Model files and installed models.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock models inspect SmolLM2-135M-Instruct.Q4_1.gguf\n  \
airlock models list --config /etc/airlock/airlock.toml\n  \
airlock models activate smollm2-135m 1.1.0\n  airlock models rollback smollm2-135m"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Inspect(InspectArgs),
    List(installed::ListArgs),
    Activate(installed::ActivateArgs),
    Rollback(installed::RollbackArgs),
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
        Command::List(a) => {
            crate::logging::init_stderr();
            installed::list(a)
        }
        Command::Activate(a) => {
            crate::logging::init_stderr();
            installed::activate(a)
        }
        Command::Rollback(a) => {
            crate::logging::init_stderr();
            installed::rollback(a)
        }
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
