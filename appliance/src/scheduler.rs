//! Continuous batching: one decode thread per loaded model, a bounded queue in front of it.
//!
//! Requests wait in a bounded channel (full → the caller answers 429). Between two decode
//! steps the thread admits waiting requests while the batch has room and their KV-cache
//! reservation (prompt + max new tokens) fits the budget; every step then runs all active
//! sequences through one forward pass ([`airlock_engine::Batch`]). A finished sequence
//! leaves the batch at once, freeing its slot and reservation for the next request.
//!
//! Text is produced here, not in the HTTP handler: the thread turns tokens into UTF-8 with a
//! per-sequence stream decoder and holds back text that could start a stop string, so a stop
//! string ends the sequence in the step that completed it. A handler that goes away (client
//! disconnected, request dropped) closes its event channel; the thread sees the closed channel
//! before the next step and drops the sequence, so cancellation costs at most one step.
//!
//! Prefix cache: a job names a cache scope (the service uses the client certificate's
//! fingerprint, narrowed by `user` and data subject: never shared across identities, see [`airlock_engine::prefix`] for the timing
//! side channel that rules it out). An ended sequence's KV-cache slot stays in the batch as a
//! retained entry and a later job of the same scope whose prompt starts with the same tokens
//! resumes from it ([`Event::Done`] reports the count). Retained positions count against the
//! KV-cache budget: after admitting, the thread evicts least-recently-used entries until
//! reserved + retained fits, so a retained entry never keeps a request waiting.
//!
//! Non-goals: preemption (a running sequence is never evicted).
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_engine::airlock_tokenizer::StreamDecoder;
use airlock_engine::generate::StopMatcher;
use airlock_engine::{
    Batch, CacheScope, Engine, FinishReason as EngineFinish, PrefixCacheConfig, SamplingParams,
    SeqId, SeqRequest, TokenConstraint, TokenLogprobs,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::mpsc;

/// Limits of one scheduler.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Requests that may wait for admission.
    pub queue_depth: usize,
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// KV-cache budget in token positions (prompt + max new tokens of every active sequence,
    /// plus the positions retained by the prefix cache).
    pub kv_budget_tokens: usize,
    /// Keep ended sequences' KV caches for reuse by the same scope (`[engine] prefix_cache`).
    pub prefix_cache: bool,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// What the decode thread tells the request's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text ready to send (complete UTF-8, never part of a stop string).
    Text {
        /// The text.
        text: String,
        /// Tokens generated so far, this text's included: a handler whose client goes
        /// away mid-stream records this count with the cancellation.
        completion_tokens: usize,
        /// With [`Job::logprobs`]: the tokens released since the last event (their text
        /// is this text, or was held back before it), end-of-generation tokens excepted.
        logprobs: Vec<TokenLogprobs>,
    },
    /// The end. No event follows.
    Done {
        /// Why.
        finish: Finish,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens (including the one that ended it).
        completion_tokens: usize,
        /// Prompt tokens resumed from the prefix cache (not recomputed).
        cached_tokens: usize,
    },
    /// The engine failed on this sequence. No event follows.
    Failed(String),
}

/// One generation to run.
#[derive(Debug)]
pub struct Job {
    /// Prompt token ids (checked against the context by the caller).
    pub prompt: Vec<u32>,
    /// Most new tokens.
    pub max_tokens: usize,
    /// Token choice.
    pub sampling: SamplingParams,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Prefix-cache scope (the client identity); `None`: no reuse.
    pub cache_scope: Option<CacheScope>,
    /// Report each token's log-probability with this many alternatives.
    pub logprobs: Option<usize>,
    /// The grammar the output must match (structured outputs, tool calls).
    pub constraint: Option<Box<dyn TokenConstraint>>,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: retry later (429).
    #[error("the request queue is full")]
    QueueFull,
    /// The job can never fit the KV-cache budget.
    #[error("the request needs {needed} KV-cache positions; the budget is {budget}")]
    TooLarge {
        /// Prompt + max new tokens.
        needed: usize,
        /// The budget.
        budget: usize,
    },
    /// The decode thread is gone (model unloaded).
    #[error("the model is being unloaded")]
    Closed,
}

/// Metrics the scheduler keeps (registered once by the server).
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    /// Seconds from admission to the first token.
    pub ttft: Histogram,
    /// Seconds between two tokens of one sequence.
    pub inter_token: Histogram,
    /// Tokens generated.
    pub tokens: Counter,
    /// Sequences in the batch (0 once every one has finished or been cancelled).
    pub batch_size: Gauge,
    /// Requests waiting.
    pub queue_depth: Gauge,
    /// KV-cache positions reserved.
    pub kv_reserved: Gauge,
    /// Sequences dropped because their client went away.
    pub cancelled: Counter,
    /// KV-cache positions held by the prefix cache's retained entries.
    pub kv_retained: Gauge,
    /// Requests that resumed from a cached prefix.
    pub prefix_hits: Counter,
    /// Prompt tokens resumed from cached prefixes (not recomputed).
    pub prefix_reused_tokens: Counter,
    /// Seconds spent choosing tokens under a grammar (mask and sampling).
    pub constraint_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Tokens chosen under a grammar.
    pub constrained_tokens: Counter,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics {
            // 1 ms .. ~33 s.
            ttft: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // 0.5 ms .. ~1 s.
            inter_token: Histogram::new(exponential_buckets(0.0005, 2.0, 12)),
            tokens: Counter::default(),
            batch_size: Gauge::default(),
            queue_depth: Gauge::default(),
            kv_reserved: Gauge::default(),
            cancelled: Counter::default(),
            kv_retained: Gauge::default(),
            prefix_hits: Counter::default(),
            prefix_reused_tokens: Counter::default(),
            constraint_seconds: Counter::default(),
            constrained_tokens: Counter::default(),
        }
    }
}

impl SchedulerMetrics {
    /// Registers every metric in `metrics` (names get the `airlock_` prefix).
    pub fn register(&self, metrics: &crate::server::metrics::Metrics) {
        metrics.register(
            "time_to_first_token_seconds",
            "Seconds from admission to a request's first token",
            self.ttft.clone(),
        );
        metrics.register(
            "inter_token_latency_seconds",
            "Seconds between two tokens of one request",
            self.inter_token.clone(),
        );
        metrics.register("generated_tokens", "Tokens generated", self.tokens.clone());
        metrics.register(
            "batch_size",
            "Sequences in the batch (running requests)",
            self.batch_size.clone(),
        );
        metrics.register(
            "queue_depth",
            "Requests waiting for the engine",
            self.queue_depth.clone(),
        );
        metrics.register(
            "kv_cache_reserved_positions",
            "KV-cache positions reserved by running requests",
            self.kv_reserved.clone(),
        );
        metrics.register(
            "cancelled_generations",
            "Generations dropped because the client went away",
            self.cancelled.clone(),
        );
        metrics.register(
            "kv_cache_retained_positions",
            "KV-cache positions kept by the prefix cache for reuse (evicted when room is needed)",
            self.kv_retained.clone(),
        );
        metrics.register(
            "prefix_cache_hits",
            "Requests that resumed from a cached prompt prefix of the same client",
            self.prefix_hits.clone(),
        );
        metrics.register(
            "constraint_seconds",
            "Seconds spent choosing tokens under a grammar (structured outputs, required tool calls): the mask and the draw",
            self.constraint_seconds.clone(),
        );
        metrics.register(
            "constrained_tokens",
            "Tokens chosen under a grammar",
            self.constrained_tokens.clone(),
        );
        metrics.register(
            "prefix_cache_reused_tokens",
            "Prompt tokens resumed from cached prefixes instead of recomputed",
            self.prefix_reused_tokens.clone(),
        );
    }
}

struct Queued {
    job: Job,
    events: mpsc::UnboundedSender<Event>,
}

/// Vectors for each input, or why the engine could not make them.
pub type EmbedResult = Result<Vec<Vec<f32>>, String>;

/// An embeddings request waiting for, or being run by, the decode thread.
struct EmbedWork {
    inputs: Vec<Vec<u32>>,
    /// Vectors of the inputs done so far.
    done: Vec<Vec<f32>>,
    reply: tokio::sync::oneshot::Sender<EmbedResult>,
}

/// What the decode thread's queue carries.
enum Msg {
    /// A request to run.
    Run(Queued),
    /// Texts to embed (already tokenized).
    Embed(EmbedWork),
    /// Wakes an idle decode thread to act on [`Scheduler::forget_prefixes`] now rather than at
    /// its next request.
    Wake,
}

/// The handle requests are submitted through. Dropping every handle ends the thread once the
/// running sequences finish (that is how a replaced model drains).
#[derive(Debug, Clone)]
pub struct Scheduler {
    queue: mpsc::Sender<Msg>,
    /// Bumped by [`Scheduler::forget_prefixes`]; the decode thread drops its retained prefix
    /// caches whenever it sees a new value, before admitting anything.
    forget: Arc<AtomicU64>,
    config: SchedulerConfig,
    metrics: SchedulerMetrics,
    _thread: Arc<JoinHandle<()>>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts the decode thread for `engine`.
    pub fn start(
        engine: Arc<Engine>,
        config: SchedulerConfig,
        metrics: SchedulerMetrics,
    ) -> std::io::Result<Scheduler> {
        let (queue, rx) = mpsc::channel(config.queue_depth.max(1));
        let thread_metrics = metrics.clone();
        let forget = Arc::new(AtomicU64::new(0));
        let thread_forget = Arc::clone(&forget);
        let thread = std::thread::Builder::new()
            .name(format!("decode-{}", engine.name()))
            .spawn(move || decode_loop(&engine, config, &thread_metrics, &thread_forget, rx))?;
        Ok(Scheduler {
            queue,
            forget,
            config,
            metrics,
            _thread: Arc::new(thread),
        })
    }

    /// Drops every retained prefix cache (the prompts of ended requests kept for reuse): after
    /// a GDPR erasure nothing of a subject's conversation should outlive its requests in
    /// memory either. Takes effect before the next admission; an idle decode thread is woken
    /// to do it at once. Requests still running keep their own cache until they end.
    pub fn forget_prefixes(&self) {
        self.forget.fetch_add(1, Ordering::AcqRel);
        // A full queue means the thread is busy and checks the epoch before its next admission.
        let _ = self.queue.try_send(Msg::Wake);
    }

    /// Queues texts to embed (token ids, each non-empty and within the context); the vectors
    /// arrive on the returned receiver. They are computed between decode steps, a few inputs
    /// (up to one prompt chunk of tokens) at a time, so running streams keep flowing.
    /// Dropping the receiver cancels the rest.
    pub fn embed(
        &self,
        inputs: Vec<Vec<u32>>,
    ) -> Result<tokio::sync::oneshot::Receiver<EmbedResult>, SubmitError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let work = EmbedWork {
            done: Vec::with_capacity(inputs.len()),
            inputs,
            reply,
        };
        match self.queue.try_send(Msg::Embed(work)) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(rx)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }

    /// Queues `job`; its events arrive on the returned receiver. Dropping the receiver
    /// cancels the job.
    pub fn submit(&self, job: Job) -> Result<mpsc::UnboundedReceiver<Event>, SubmitError> {
        let needed = job.prompt.len() + job.max_tokens;
        if needed > self.config.kv_budget_tokens {
            return Err(SubmitError::TooLarge {
                needed,
                budget: self.config.kv_budget_tokens,
            });
        }
        let (events, rx) = mpsc::unbounded_channel();
        match self.queue.try_send(Msg::Run(Queued { job, events })) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(rx)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }
}

/// One admitted sequence's bookkeeping on the decode thread.
struct Active<'e> {
    events: mpsc::UnboundedSender<Event>,
    decoder: StreamDecoder<'e>,
    stops: StopMatcher,
    reserved: usize,
    prompt_tokens: usize,
    cached_tokens: usize,
    generated: usize,
    admitted: Instant,
    last_token: Option<Instant>,
    /// Log-probabilities of tokens whose text is not released yet.
    logprobs: Vec<TokenLogprobs>,
}

fn decode_loop(
    engine: &Engine,
    config: SchedulerConfig,
    metrics: &SchedulerMetrics,
    forget: &AtomicU64,
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut batch = Batch::new(engine);
    batch.set_prefix_cache(PrefixCacheConfig {
        enabled: config.prefix_cache,
        ..PrefixCacheConfig::default()
    });
    let mut active: HashMap<SeqId, Active<'_>> = HashMap::new();
    let mut reserved = 0usize;
    // A request taken off the queue that does not fit yet; it goes first once room frees.
    let mut held: Option<Queued> = None;
    let mut forgotten = forget.load(Ordering::Acquire);
    let mut embeds: std::collections::VecDeque<EmbedWork> = std::collections::VecDeque::new();
    loop {
        // Admission. Block only when there is nothing to run.
        if active.is_empty() && held.is_none() && embeds.is_empty() {
            match rx.blocking_recv() {
                Some(Msg::Run(q)) => {
                    metrics.queue_depth.dec();
                    held = Some(q);
                }
                Some(Msg::Embed(work)) => {
                    metrics.queue_depth.dec();
                    embeds.push_back(work);
                }
                Some(Msg::Wake) => {}
                None => return, // every handle dropped and nothing running: done
            }
        }
        // Before anything is admitted, so no request can resume an erased prefix.
        let epoch = forget.load(Ordering::Acquire);
        if epoch != forgotten {
            forgotten = epoch;
            batch.clear_retained();
            metrics.kv_retained.set(batch.retained_positions() as i64);
        }
        loop {
            let next = match held.take() {
                Some(q) => q,
                None => match rx.try_recv() {
                    Ok(Msg::Run(q)) => {
                        metrics.queue_depth.dec();
                        q
                    }
                    Ok(Msg::Embed(work)) => {
                        metrics.queue_depth.dec();
                        embeds.push_back(work);
                        continue;
                    }
                    Ok(Msg::Wake) => continue,
                    Err(_) => break,
                },
            };
            if next.events.is_closed() {
                continue; // its client left while it waited
            }
            let needed = next.job.prompt.len() + next.job.max_tokens;
            if active.len() >= config.max_batch.max(1)
                || reserved + needed > config.kv_budget_tokens
            {
                held = Some(next);
                break;
            }
            admit(engine, &mut batch, &mut active, next, needed, metrics);
            reserved = active.values().map(|a| a.reserved).sum();
        }
        // Embeddings: one slice of the oldest request per turn, then a decode step.
        embed_slice(engine, &mut batch, &mut embeds, !active.is_empty());
        // Retained prefixes give way to running requests' reservations.
        batch.evict_retained(config.kv_budget_tokens.saturating_sub(reserved));
        // Cancellation: drop sequences whose handler is gone before paying for a step.
        let gone: Vec<SeqId> = active
            .iter()
            .filter(|(_, a)| a.events.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let _ = batch.remove(id);
            active.remove(&id);
            metrics.cancelled.inc();
        }
        reserved = active.values().map(|a| a.reserved).sum();
        metrics.kv_reserved.set(reserved as i64);
        metrics.kv_retained.set(batch.retained_positions() as i64);
        // Set before the `continue`: a batch emptied by cancellations must read 0, not
        // the size of the last step it ran (operators watch it to see free slots).
        metrics.batch_size.set(active.len() as i64);
        if active.is_empty() {
            continue;
        }
        let produced = match batch.step(engine) {
            Ok(tokens) => tokens,
            Err(e) => {
                // A failed step poisons no one else's state we can trust: fail them all.
                tracing::error!(error = %e, "decode step failed");
                for (id, a) in active.drain() {
                    let _ = batch.remove(id);
                    let _ = a.events.send(Event::Failed("the engine failed".into()));
                }
                // Nor the caches they leave behind.
                batch.clear_retained();
                continue;
            }
        };
        let stats = batch.last_step();
        if stats.constrained_tokens > 0 {
            metrics
                .constraint_seconds
                .inc_by(stats.constraint_time.as_secs_f64());
            metrics
                .constrained_tokens
                .inc_by(stats.constrained_tokens as u64);
        }
        let now = Instant::now();
        for t in produced {
            let Some(a) = active.get_mut(&t.id) else {
                continue;
            };
            a.generated += 1;
            metrics.tokens.inc();
            match a.last_token {
                None => metrics.ttft.observe(secs(now - a.admitted)),
                Some(prev) => metrics.inter_token.observe(secs(now - prev)),
            }
            a.last_token = Some(now);
            if t.finished == Some(EngineFinish::ConstraintFailed) {
                // What was written does not match the grammar the client asked for: an
                // error, never an answer that looks finished.
                let _ = a
                    .events
                    .send(Event::Failed("the output constraint failed".into()));
                active.remove(&t.id);
                continue;
            }
            let mut finish = t.finished.map(|f| match f {
                EngineFinish::EndOfText
                | EngineFinish::Complete
                | EngineFinish::ConstraintFailed => Finish::Stop,
                EngineFinish::Length => Finish::Length,
            });
            if t.finished != Some(EngineFinish::EndOfText)
                && let Some(lp) = t.logprobs
            {
                a.logprobs.push(lp);
            }
            // The end-of-generation token itself is not text.
            let piece = if t.finished == Some(EngineFinish::EndOfText) {
                String::new()
            } else {
                a.decoder.push(t.token)
            };
            let (mut text, stopped) = a.stops.push(&piece);
            if stopped {
                finish = Some(Finish::Stop);
                if t.finished.is_none() {
                    let _ = batch.remove(t.id);
                }
            } else if finish.is_some() {
                text.push_str(&a.stops.finish());
            }
            // Log-probabilities travel with text; the last ones go even with none.
            if !text.is_empty() || (finish.is_some() && !a.logprobs.is_empty()) {
                let event = Event::Text {
                    text,
                    completion_tokens: a.generated,
                    logprobs: std::mem::take(&mut a.logprobs),
                };
                if a.events.send(event).is_err() {
                    // Client gone: dropped below or at the next cancellation check.
                    continue;
                }
            }
            if let Some(finish) = finish {
                let _ = a.events.send(Event::Done {
                    finish,
                    prompt_tokens: a.prompt_tokens,
                    completion_tokens: a.generated,
                    cached_tokens: a.cached_tokens,
                });
                active.remove(&t.id);
            }
        }
        // Finished sequences have left: the gauges must not keep their values while the
        // thread blocks waiting for the next request.
        metrics.batch_size.set(active.len() as i64);
        reserved = active.values().map(|a| a.reserved).sum();
        metrics.kv_reserved.set(reserved as i64);
        // Ended sequences became retained entries: keep them within the budget too.
        batch.evict_retained(config.kv_budget_tokens.saturating_sub(reserved));
        metrics.kv_retained.set(batch.retained_positions() as i64);
    }
}

fn admit<'e>(
    engine: &'e Engine,
    batch: &mut Batch,
    active: &mut HashMap<SeqId, Active<'e>>,
    q: Queued,
    needed: usize,
    metrics: &SchedulerMetrics,
) {
    let prompt_tokens = q.job.prompt.len();
    let request = SeqRequest {
        cache_scope: q.job.cache_scope,
        logprobs: q.job.logprobs,
        constraint: q.job.constraint,
        ..SeqRequest::new(q.job.prompt, q.job.max_tokens, q.job.sampling)
    };
    match batch.add(engine, request) {
        Ok(id) => {
            let cached_tokens = batch.cached_tokens(id).unwrap_or(0);
            if cached_tokens > 0 {
                metrics.prefix_hits.inc();
                metrics.prefix_reused_tokens.inc_by(cached_tokens as u64);
            }
            active.insert(
                id,
                Active {
                    events: q.events,
                    decoder: StreamDecoder::new(engine.tokenizer()),
                    stops: StopMatcher::new(&q.job.stop),
                    reserved: needed,
                    prompt_tokens,
                    cached_tokens,
                    generated: 0,
                    admitted: Instant::now(),
                    last_token: None,
                    logprobs: Vec::new(),
                },
            );
        }
        Err(e) => {
            // Validated by the handler already; anything left is the engine's word.
            let _ = q.events.send(Event::Failed(e.to_string()));
        }
    }
}

/// Embeds the next inputs of the oldest embeddings request: as many as fit one prompt chunk
/// of tokens (a smaller one while streams are decoding, as for prompts), at least one.
/// Replies once every input of the request is done; drops a request whose client left.
fn embed_slice(
    engine: &Engine,
    batch: &mut Batch,
    embeds: &mut std::collections::VecDeque<EmbedWork>,
    decoding: bool,
) {
    let Some(work) = embeds.front_mut() else {
        return;
    };
    if work.reply.is_closed() {
        embeds.pop_front();
        return;
    }
    let budget = if decoding {
        airlock_engine::batch::PROMPT_CHUNK_WHILE_DECODING
    } else {
        airlock_engine::batch::PROMPT_CHUNK
    };
    let start = work.done.len();
    let mut end = start;
    let mut tokens = 0;
    while end < work.inputs.len() && (end == start || tokens + work.inputs[end].len() <= budget) {
        tokens += work.inputs[end].len();
        end += 1;
    }
    let inputs: Vec<&[u32]> = work.inputs[start..end].iter().map(Vec::as_slice).collect();
    let result = engine.pooling().map_err(str::to_owned).and_then(|pooling| {
        batch
            .embed(engine, &inputs, pooling)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(vectors) => {
            work.done.extend(vectors);
            if work.done.len() == work.inputs.len()
                && let Some(work) = embeds.pop_front()
            {
                let _ = work.reply.send(Ok(work.done));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "embedding failed");
            if let Some(work) = embeds.pop_front() {
                let _ = work.reply.send(Err(e));
            }
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
