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
        .with_writer(Capped::text(std::io::stderr))
        .with_ansi(std::io::stderr().is_terminal())
}

/// Longest log line written, in bytes. Every field we log is bounded at its source; this
/// is the backstop, so no value a client manages to get into an event can grow the logs
/// by more than this per event.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Bytes of an over-long line kept in its replacement.
const KEPT_BYTES: usize = 1024;

/// A writer factory that replaces over-long lines. The fmt layer formats each event into
/// one buffer and writes it with one `write_all`, so a write is a line.
#[derive(Debug)]
struct Capped<M> {
    inner: M,
    json: bool,
}

impl<M> Capped<M> {
    fn text(inner: M) -> Capped<M> {
        Capped { inner, json: false }
    }
    fn json(inner: M) -> Capped<M> {
        Capped { inner, json: true }
    }
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for Capped<M>
{
    type Writer = CappedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        CappedWriter {
            inner: self.inner.make_writer(),
            json: self.json,
        }
    }
}

#[derive(Debug)]
struct CappedWriter<W> {
    inner: W,
    json: bool,
}

impl<W: std::io::Write> std::io::Write for CappedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() <= MAX_LINE_BYTES {
            self.inner.write_all(buf)?;
        } else {
            self.inner
                .write_all(capped_line(buf, self.json).as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What an over-long line becomes: its head and its length, still one valid JSON object
/// in the JSON file.
fn capped_line(line: &[u8], json: bool) -> String {
    let head = String::from_utf8_lossy(&line[..KEPT_BYTES]);
    if json {
        let v = serde_json::json!({
            "level": "WARN",
            "target": "airlock::logging",
            "fields": {
                "message": "log line truncated",
                "bytes": line.len(),
                "head": head,
            },
        });
        format!("{v}\n")
    } else {
        format!("{head}… [log line of {} bytes truncated]\n", line.len())
    }
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
                .with_writer(Capped::json(file)),
        )
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_replaced_by_a_bounded_valid_line() {
        let long = format!(
            "{{\"fields\":{{\"message\":\"{}\"}}}}\n",
            "x".repeat(100_000)
        );
        let json = capped_line(long.as_bytes(), true);
        assert!(json.len() < 2 * KEPT_BYTES, "{}", json.len());
        let v: serde_json::Value = serde_json::from_str(json.trim_end()).expect("valid JSON");
        assert_eq!(v["fields"]["bytes"], long.len());
        let text = capped_line(long.as_bytes(), false);
        assert!(text.ends_with("truncated]\n") && text.len() < 2 * KEPT_BYTES);
    }

    #[test]
    fn short_lines_pass_unchanged() {
        use std::io::Write;
        let mut w = CappedWriter {
            inner: Vec::new(),
            json: true,
        };
        w.write_all(b"{\"a\":1}\n").expect("write");
        assert_eq!(w.inner, b"{\"a\":1}\n");
    }
}
