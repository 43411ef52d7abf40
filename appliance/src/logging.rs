//! Logging: human-readable lines on stderr (the journal under systemd) and, for the
//! service, JSON lines in a daily-rolling file `STATE_DIR/logs/airlock.YYYY-MM-DD.jsonl`.
//!
//! The file writer is synchronous on purpose: a background writer thread would be created
//! before `lockdown::before_runtime` and so escape the Landlock rules applied there.
//! Level filter: `AIRLOCK_LOG` (`EnvFilter` syntax), default `info`.
//!
//! Invariant: no code logs request or response bodies (prompts, completions); the access
//! log records route, status, timing, request id and the caller's certificate identity.
use std::path::Path;

use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Environment variable holding the log filter.
pub const FILTER_ENV: &str = "AIRLOCK_LOG";

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new(default))
}

fn stderr_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use std::io::IsTerminal;
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
}

/// stderr only, for the short-lived commands (warnings and errors by default).
pub fn init_stderr() {
    let _ = tracing_subscriber::registry()
        .with(filter("warn"))
        .with(stderr_layer())
        .try_init();
}

/// stderr plus the JSON file under `state_dir/logs/`, for the service.
pub fn init_service(state_dir: &Path) -> std::io::Result<()> {
    let dir = state_dir.join("logs");
    std::fs::create_dir_all(&dir)?;
    let file = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("airlock")
        .filename_suffix("jsonl")
        .build(&dir)
        .map_err(std::io::Error::other)?;
    let _ = tracing_subscriber::registry()
        .with(filter("info"))
        .with(stderr_layer())
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_ansi(false)
                .with_writer(file),
        )
        .try_init();
    Ok(())
}
