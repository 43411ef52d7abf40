//! `airlock generate`: run the local engine on one prompt, streaming text to stdout.
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use airlock_engine::airlock_tokenizer::ChatMessage;
use airlock_engine::{Backend, Engine, GenerateRequest, SamplingParams, generate};
use anyhow::Context;

/// Generate text from a GGUF model on this machine's CPU (or a GPU, in a build with the
/// `wgpu` or `cuda` feature).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock generate --model SmolLM2-135M-Instruct.Q4_1.gguf --chat \\\n    --prompt \"Write a Python function that returns the square of a number.\" --temperature 0\n  airlock generate --model m.gguf --prompt \"Once upon a time\" --max-tokens 128 --ignore-eos\n\n\
Text streams to stdout; the last line on stderr is\n  timing: prompt_tokens=N prompt_tps=X gen_tokens=M gen_tps=Y ttft_ms=Z"
)]
pub struct Args {
    /// GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// The prompt (without --chat, special-token text such as <|im_start|> is parsed).
    #[arg(long)]
    prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Drop tokens below this fraction of the top token's probability (0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty over the last 64 tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed (reproducible sampling).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Backend: cpu, or wgpu / cuda in a build with that feature.
    #[arg(long, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Keep generating past end-of-text tokens up to --max-tokens (benchmarks).
    #[arg(long)]
    ignore_eos: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n: 64,
        seed: args.seed,
    };
    sampling.validate()?;
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let engine = Engine::load_on(&args.model, args.threads, args.device)
        .with_context(|| format!("cannot load {} on {}", args.model.display(), args.device))?;
    if let Some(check) = engine.self_check() {
        eprintln!("{} self-check: {check}", args.device);
    }
    let prompt = if args.chat {
        engine
            .chat_prompt(&[ChatMessage::new("user", args.prompt)])?
            .ids
    } else {
        engine.encode(&args.prompt, true)?
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    let generation = generate(
        &engine,
        GenerateRequest {
            prompt,
            max_tokens: args.max_tokens,
            sampling,
            stop: args.stop,
            ignore_eos: args.ignore_eos,
        },
        |text| match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        },
    )?;
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    let _ = writeln!(out);
    eprintln!("{}", generation.timing.line());
    Ok(())
}
