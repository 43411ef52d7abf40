//! [`generate`]: one prompt to streamed text, with stop strings and timing.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use airlock_tokenizer::StreamDecoder;

use crate::batch::{Batch, FinishReason, SeqRequest};
use crate::engine::Engine;
use crate::error::Result;
use crate::sampling::SamplingParams;

/// A generation request for [`generate`].
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt token ids ([`Engine::encode`] / [`Engine::chat_prompt`]).
    pub prompt: Vec<u32>,
    /// Most new tokens.
    pub max_tokens: usize,
    /// Token choice.
    pub sampling: SamplingParams,
    /// Generation stops before the first occurrence of any of these strings (not emitted).
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token.
    EndOfText,
    /// A stop string.
    StopString,
    /// `max_tokens` reached.
    Length,
    /// The callback asked to stop.
    Cancelled,
}

/// Throughput figures, in the form `airlock generate` prints them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// Time to process the prompt (until the first token's logits).
    pub prompt_time: Duration,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// Time spent generating after the first token.
    pub gen_time: Duration,
    /// Time from the call to the first generated token.
    pub ttft: Duration,
}

impl Timing {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_time)
    }
    /// Generated tokens per second (after the first token, whose cost is the prompt's).
    pub fn gen_tps(&self) -> f64 {
        rate(self.gen_tokens.saturating_sub(1), self.gen_time)
    }
    /// `timing: prompt_tokens=N prompt_tps=X gen_tokens=M gen_tps=Y ttft_ms=Z`.
    pub fn line(&self) -> String {
        format!(
            "timing: prompt_tokens={} prompt_tps={:.2} gen_tokens={} gen_tps={:.2} ttft_ms={:.1}",
            self.prompt_tokens,
            self.prompt_tps(),
            self.gen_tokens,
            self.gen_tps(),
            self.ttft.as_secs_f64() * 1000.0
        )
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// What [`generate`] produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated token ids (including a final end-of-generation token if one was produced).
    pub tokens: Vec<u32>,
    /// The text streamed to the callback, concatenated.
    pub text: String,
    /// Why it ended.
    pub stop: StopReason,
    /// Throughput.
    pub timing: Timing,
}

/// Holds back streamed text that might be the start of a stop string.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds text; returns what can be released and whether a stop string was reached (the
    /// text before it is released, the stop string and anything after it dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if i > keep && self.pending.ends_with(&s[..i]) {
                    keep = i;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        (out, false)
    }

    /// Releases what is held back (generation ended without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Generates from `req.prompt`, calling `on_text` with each piece of text as soon as it is
/// complete UTF-8 and cannot be the start of a stop string. `on_text` returning
/// `ControlFlow::Break` cancels.
pub fn generate(
    engine: &Engine,
    req: GenerateRequest,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation> {
    let t0 = Instant::now();
    let mut timing = Timing {
        prompt_tokens: req.prompt.len(),
        ..Timing::default()
    };
    let mut res = Generation {
        tokens: Vec::new(),
        text: String::new(),
        stop: StopReason::Length,
        timing,
    };
    if req.max_tokens == 0 {
        req.sampling.validate()?;
        return Ok(res);
    }
    let mut batch = Batch::new(engine);
    let id = batch.add(
        engine,
        SeqRequest {
            ignore_eos: req.ignore_eos,
            ..SeqRequest::new(req.prompt, req.max_tokens, req.sampling)
        },
    )?;
    let mut decoder = StreamDecoder::continuation(engine.tokenizer());
    let mut stops = StopMatcher::new(&req.stop);
    let mut first_at = None;
    let mut emit = |text: &str, res: &mut Generation| {
        res.text.push_str(text);
        if text.is_empty() {
            ControlFlow::Continue(())
        } else {
            on_text(text)
        }
    };
    'outer: loop {
        let produced = batch.step(engine)?;
        for t in produced.into_iter().filter(|t| t.id == id) {
            let now = Instant::now();
            if first_at.is_none() {
                first_at = Some(now);
                timing.prompt_time = now - t0;
                timing.ttft = now - t0;
            }
            timing.gen_tokens += 1;
            res.tokens.push(t.token);
            let (text, hit) = stops.push(&decoder.push(t.token));
            let flow = emit(&text, &mut res);
            if hit {
                res.stop = StopReason::StopString;
                break 'outer;
            }
            if flow.is_break() {
                res.stop = StopReason::Cancelled;
                break 'outer;
            }
            match t.finished {
                Some(FinishReason::EndOfText) => {
                    res.stop = StopReason::EndOfText;
                    break 'outer;
                }
                // `generate` sets no constraint, so none can end or fail; were one to, the
                // sequence is over without a natural end.
                Some(
                    FinishReason::Length | FinishReason::Complete | FinishReason::ConstraintFailed,
                ) => {
                    res.stop = StopReason::Length;
                    break 'outer;
                }
                None => {}
            }
        }
    }
    if res.stop != StopReason::StopString && res.stop != StopReason::Cancelled {
        let mut tail = stops.push(&decoder.finish()).0;
        tail.push_str(&stops.finish());
        let _ = emit(&tail, &mut res);
    }
    if let Some(f) = first_at {
        timing.gen_time = f.elapsed();
    }
    res.timing = timing;
    Ok(res)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let (t, hit) = m.push(p);
            out.push_str(&t);
            if hit {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_tokens_is_cut() {
        assert_eq!(
            run(&["\nUser:"], &["Hi", " there\n", "Us", "er: x"]),
            ("Hi there".into(), true)
        );
    }

    #[test]
    fn held_back_prefix_is_released_when_it_does_not_match() {
        assert_eq!(run(&["STOP"], &["a S", "T", "x"]), ("a STx".into(), false));
    }

    #[test]
    fn without_stops_everything_streams() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn timing_line_has_the_exact_form() {
        let t = Timing {
            prompt_tokens: 10,
            prompt_time: Duration::from_millis(100),
            gen_tokens: 5,
            gen_time: Duration::from_millis(400),
            ttft: Duration::from_millis(100),
        };
        assert_eq!(
            t.line(),
            "timing: prompt_tokens=10 prompt_tps=100.00 gen_tokens=5 gen_tps=10.00 ttft_ms=100.0"
        );
    }
}
