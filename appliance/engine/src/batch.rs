//! [`Batch`]: step-wise batched decoding, the building block of continuous batching.
//!
//! Sequences join ([`Batch::add`]) and leave ([`Batch::remove`]) between steps; each
//! [`Batch::step`] runs one forward pass over every active sequence: a chunk of the prompt for
//! sequences still reading it, one token for the others. Each sequence has its own KV-cache
//! slot, position and sampler, so they never see each other's tokens.
//!
//! A sequence that ends leaves its slot behind as a prefix-cache entry when its request named
//! a [`CacheScope`]; a later request of the same scope resumes from the longest matching
//! prefix ([`crate::prefix`] explains the design, exactness and the per-tenant scoping).
//!
//! A `Batch` is owned by one thread (the decode loop); the [`crate::Engine`] it runs on is
//! shared (`Send + Sync`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::constraint::{TokenConstraint, TokenMask};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::logprobs::{self, TokenLogprobs};
use crate::model::{Logits, SeqInput};
use crate::prefix::{CacheScope, PrefixCache, PrefixCacheConfig};
use crate::sampling::{Sampler, SamplingParams};

/// Prompt tokens fed per step, across all sequences reading their prompts, while none is
/// generating (bounds a step's latency and scratch memory).
pub const PROMPT_CHUNK: usize = 512;

/// Prompt tokens fed per step, across all sequences, while at least one sequence is
/// generating: a new long prompt then enters in pieces between decode steps instead of pausing
/// every running stream for a whole [`PROMPT_CHUNK`]. Numerically free: the forward pass is
/// chunk-invariant, so how a prompt is split changes no output.
pub const PROMPT_CHUNK_WHILE_DECODING: usize = 128;

/// Identifies a sequence in a [`Batch`].
pub type SeqId = u64;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfText,
    /// `max_tokens` new tokens were produced.
    Length,
    /// The sequence's [`TokenConstraint`] is complete: nothing more may follow. Unlike
    /// [`FinishReason::EndOfText`] the last token is text (the closing `}` of a JSON answer).
    Complete,
    /// The sequence's [`TokenConstraint`] failed (its message) or allowed no token: the
    /// output so far is not what the grammar promised, so it must not be passed off as done.
    ConstraintFailed,
}

/// What to generate for one sequence.
#[derive(Debug)]
pub struct SeqRequest {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// Most new tokens to produce.
    pub max_tokens: usize,
    /// Token choice.
    pub sampling: SamplingParams,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
    /// Prefix-cache scope: the request may resume from, and leaves behind, cached prefixes of
    /// this scope only. `None`: no reuse, and the slot is freed when the sequence ends.
    pub cache_scope: Option<CacheScope>,
    /// Report each token's log-probability with this many alternatives (`None`: off).
    pub logprobs: Option<usize>,
    /// Restricts which tokens may be produced (a grammar); `None`: any.
    pub constraint: Option<Box<dyn TokenConstraint>>,
}

impl SeqRequest {
    /// A request for `max_tokens` tokens after `prompt`, sampled with `sampling`, with no
    /// prefix-cache scope, log-probabilities or constraint.
    pub fn new(prompt: Vec<u32>, max_tokens: usize, sampling: SamplingParams) -> SeqRequest {
        SeqRequest {
            prompt,
            max_tokens,
            sampling,
            ignore_eos: false,
            cache_scope: None,
            logprobs: None,
            constraint: None,
        }
    }
}

/// One token produced by a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepToken {
    /// The sequence.
    pub id: SeqId,
    /// The new token.
    pub token: u32,
    /// Set when this is the sequence's last token; the sequence is then removed.
    pub finished: Option<FinishReason>,
    /// Its log-probability, when the request asked.
    pub logprobs: Option<TokenLogprobs>,
}

#[derive(Debug)]
struct Seq {
    slot: usize,
    tokens: Vec<u32>,
    /// Tokens of `tokens` already in the cache.
    fed: usize,
    prompt_len: usize,
    max_tokens: usize,
    ignore_eos: bool,
    sampler: Sampler,
    scope: Option<CacheScope>,
    /// Prompt tokens resumed from the prefix cache.
    reused: usize,
    logprobs: Option<usize>,
    constraint: Option<Box<dyn TokenConstraint>>,
}

/// Timing of the last [`Batch::step`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    /// Tokens run through the model.
    pub tokens: usize,
    /// Wall time of the forward pass and sampling.
    pub elapsed: Duration,
    /// Of that, time the sequences' constraints spent computing token masks.
    pub constraint_time: Duration,
    /// Tokens chosen under a constraint.
    pub constrained_tokens: usize,
}

/// Sequences decoded together; see the module docs.
#[derive(Debug)]
pub struct Batch {
    cache: KvCache,
    seqs: BTreeMap<SeqId, Seq>,
    next_id: SeqId,
    last: StepStats,
    prefix: PrefixCache,
}

impl Batch {
    /// An empty batch for `engine`'s model.
    pub fn new(engine: &Engine) -> Batch {
        Batch {
            cache: engine.model().new_cache(),
            seqs: BTreeMap::new(),
            next_id: 0,
            last: StepStats::default(),
            prefix: PrefixCache::default(),
        }
    }

    /// Sets the prefix cache's configuration (enabled with
    /// [`crate::prefix::DEFAULT_MAX_ENTRIES`] entries by default); disabling it, or lowering
    /// the entry limit, frees the entries beyond it.
    pub fn set_prefix_cache(&mut self, config: PrefixCacheConfig) {
        self.prefix.config = config;
        let keep = if config.enabled {
            config.max_entries
        } else {
            0
        };
        while self.prefix.len() > keep {
            self.evict_one();
        }
    }

    /// Adds a sequence; fails if the prompt is empty or prompt + `max_tokens` exceeds the
    /// model's context, or a sampling parameter is invalid.
    pub fn add(&mut self, engine: &Engine, req: SeqRequest) -> Result<SeqId> {
        let cfg = engine.model().config();
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&id) = req.prompt.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(EngineError::TokenOutOfRange {
                id,
                vocab: cfg.vocab_size,
            });
        }
        let needed = req.prompt.len() + req.max_tokens;
        if needed > cfg.context_length {
            return Err(EngineError::ContextOverflow {
                needed,
                prompt: req.prompt.len(),
                max_new: req.max_tokens,
                limit: cfg.context_length,
            });
        }
        let sampler = Sampler::new(req.sampling)?;
        let resumed = match &req.cache_scope {
            Some(scope) if self.prefix.config.enabled => self.prefix.take(scope, &req.prompt),
            _ => None,
        };
        let (slot, reused) = match resumed {
            Some((slot, keep)) => {
                self.cache.truncate(slot, keep);
                (slot, keep)
            }
            None => (self.cache.allocate(), 0),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.seqs.insert(
            id,
            Seq {
                slot,
                prompt_len: req.prompt.len(),
                tokens: req.prompt,
                fed: reused,
                max_tokens: req.max_tokens,
                ignore_eos: req.ignore_eos,
                sampler,
                scope: req.cache_scope,
                reused,
                logprobs: req.logprobs,
                constraint: req.constraint,
            },
        );
        Ok(id)
    }

    /// Removes a sequence (finished, cancelled or disconnected). Its slot is retained as a
    /// prefix-cache entry if the request had a scope and the cache is enabled (evicting the
    /// least recently used entry past the entry limit), else freed.
    pub fn remove(&mut self, id: SeqId) -> Result<()> {
        let mut s = self
            .seqs
            .remove(&id)
            .ok_or(EngineError::UnknownSequence { id })?;
        let held = self.cache.len(s.slot).unwrap_or(0);
        match s.scope.take() {
            Some(scope) if self.prefix.config.enabled && held > 0 => {
                // Only the tokens whose keys/values are in the slot (not the last sampled one).
                s.tokens.truncate(held);
                let capacity = self.cache.capacity(s.slot).unwrap_or(0);
                for e in self.prefix.retain(s.slot, scope, s.tokens, capacity) {
                    self.cache.free(e.slot);
                }
            }
            _ => self.cache.free(s.slot),
        }
        Ok(())
    }

    /// Prompt tokens of sequence `id` resumed from the prefix cache (0 for a cold start).
    pub fn cached_tokens(&self, id: SeqId) -> Option<usize> {
        self.seqs.get(&id).map(|s| s.reused)
    }

    /// KV-cache positions held by retained prefix-cache entries (their allocated capacity):
    /// count them against the memory budget.
    pub fn retained_positions(&self) -> usize {
        self.prefix.positions()
    }

    /// Number of retained prefix-cache entries.
    pub fn retained_entries(&self) -> usize {
        self.prefix.len()
    }

    /// Evicts least-recently-used entries until they hold at most `max_positions` positions;
    /// returns how many were evicted.
    pub fn evict_retained(&mut self, max_positions: usize) -> usize {
        let mut n = 0;
        while self.prefix.positions() > max_positions && self.evict_one() {
            n += 1;
        }
        n
    }

    /// Evicts every retained entry.
    pub fn clear_retained(&mut self) {
        while self.evict_one() {}
    }

    fn evict_one(&mut self) -> bool {
        match self.prefix.pop_lru() {
            Some(e) => {
                self.cache.free(e.slot);
                true
            }
            None => false,
        }
    }

    /// Embeds `inputs` ([`crate::embed::embed`]) in temporary slots of this batch's cache,
    /// between two steps: the running sequences' slots are untouched.
    pub fn embed(
        &mut self,
        engine: &Engine,
        inputs: &[&[u32]],
        pooling: crate::embed::Pooling,
    ) -> Result<Vec<Vec<f32>>> {
        crate::embed::embed(engine.model(), &mut self.cache, inputs, pooling)
    }

    /// Active sequences.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// True when no sequence is active.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// All tokens (prompt and generated) of a sequence.
    pub fn tokens(&self, id: SeqId) -> Option<&[u32]> {
        self.seqs.get(&id).map(|s| s.tokens.as_slice())
    }

    /// Timing of the last step.
    pub fn last_step(&self) -> StepStats {
        self.last
    }

    /// Runs one forward pass over every active sequence and returns the tokens produced
    /// (none for a sequence still reading its prompt). Finished sequences are removed.
    pub fn step(&mut self, engine: &Engine) -> Result<Vec<StepToken>> {
        let t0 = Instant::now();
        if self.seqs.is_empty() {
            self.last = StepStats::default();
            return Ok(Vec::new());
        }
        // Generating sequences feed their last token; those reading a prompt share the step's
        // prompt budget in admission order (a sequence left without budget sits this step out).
        let decoding = self.seqs.values().any(|s| s.fed >= s.prompt_len);
        let mut budget = if decoding {
            PROMPT_CHUNK_WHILE_DECODING
        } else {
            PROMPT_CHUNK
        };
        let mut ids = Vec::with_capacity(self.seqs.len());
        let mut inputs = Vec::with_capacity(self.seqs.len());
        for (id, s) in &self.seqs {
            let left = s.tokens.len() - s.fed;
            let take = if s.fed >= s.prompt_len {
                left
            } else {
                let take = left.min(budget);
                budget -= take;
                take
            };
            if take == 0 {
                continue;
            }
            ids.push(*id);
            inputs.push(SeqInput {
                slot: s.slot,
                tokens: &s.tokens[s.fed..s.fed + take],
            });
        }
        let fed: Vec<usize> = inputs.iter().map(|i| i.tokens.len()).collect();
        let mut logits = engine
            .model()
            .forward(&inputs, &mut self.cache, Logits::Last)?;
        let vocab = engine.model().config().vocab_size;
        let mut out = Vec::new();
        let (mut constraint_time, mut constrained_tokens) = (Duration::ZERO, 0);
        for (i, id) in ids.iter().enumerate() {
            let Some(s) = self.seqs.get_mut(id) else {
                continue;
            };
            s.fed += fed[i];
            if s.fed < s.tokens.len() {
                continue; // still reading the prompt
            }
            let row = &mut logits[i * vocab..(i + 1) * vocab];
            let t_mask = Instant::now();
            let (token, logprobs, constraint_ok) = s.choose(row, vocab);
            if s.constraint.is_some() {
                // Sampling is in this too; it is small next to the mask.
                constraint_time += t_mask.elapsed();
                constrained_tokens += 1;
            }
            s.tokens.push(token);
            let generated = s.tokens.len() - s.prompt_len;
            let finished = if !constraint_ok {
                Some(FinishReason::ConstraintFailed)
            } else if !s.ignore_eos && engine.tokenizer().is_eog(token) {
                Some(FinishReason::EndOfText)
            } else if s.constraint.as_mut().is_some_and(|c| c.is_complete()) {
                Some(FinishReason::Complete)
            } else if generated >= s.max_tokens {
                Some(FinishReason::Length)
            } else {
                None
            };
            out.push(StepToken {
                id: *id,
                token,
                finished,
                logprobs,
            });
        }
        for t in &out {
            if t.finished.is_some() {
                self.remove(t.id)?;
            }
        }
        self.last = StepStats {
            tokens: fed.iter().sum(),
            elapsed: t0.elapsed(),
            constraint_time,
            constrained_tokens,
        };
        Ok(out)
    }
}

impl Seq {
    /// Draws the next token from this sequence's raw logits `row`: log-probabilities first
    /// (the model's own), then the constraint's mask, then the sampler. The flag is false
    /// when the constraint failed or allowed nothing; the token is then the unconstrained
    /// choice, and the caller ends the sequence.
    fn choose(&mut self, row: &mut [f32], vocab: usize) -> (u32, Option<TokenLogprobs>, bool) {
        let lse = self.logprobs.map(|_| logprobs::log_sum_exp(row));
        let top = match (self.logprobs, lse) {
            (Some(n), Some(lse)) => logprobs::top(row, lse, n),
            _ => Vec::new(),
        };
        let raw_of = |row: &[f32], t: u32| row.get(t as usize).copied().unwrap_or(f32::NAN);
        let mut ok = true;
        let mut raw = None;
        if let Some(c) = self.constraint.as_mut() {
            let mut mask = TokenMask::none(vocab);
            ok = c.allowed(&mut mask).is_ok() && mask.any();
            if ok {
                // The chosen token's raw logit is reported: keep the row before masking.
                if self.logprobs.is_some() {
                    raw = Some(row.to_vec());
                }
                mask.apply(row);
            }
        }
        let token = self.sampler.sample(row, &self.tokens);
        if ok && let Some(c) = self.constraint.as_mut() {
            ok = c.accept(token).is_ok();
        }
        let logprobs = lse.map(|lse| {
            let l = raw_of(raw.as_deref().unwrap_or(row), token);
            TokenLogprobs {
                token,
                logprob: (f64::from(l) - lse) as f32,
                top,
            }
        });
        (token, logprobs, ok)
    }
}
