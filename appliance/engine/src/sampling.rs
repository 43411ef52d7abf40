//! Choosing the next token from logits: greedy, or temperature sampling narrowed by top-k,
//! top-p and min-p, after a repetition penalty; seeded for reproducibility.
//!
//! The order follows llama.cpp's default sampler chain (penalties → top-k → top-p → min-p →
//! temperature → draw). The penalty is llama.cpp's: a positive logit of a recently seen token
//! is divided by the penalty, a negative one multiplied. The generator is SplitMix64, defined
//! here so a seed gives the same tokens across releases of any crate.

use crate::error::{EngineError, Result};

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax, ties to the lowest id).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (`0` = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (`1` = all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (`0` = off).
    pub min_p: f32,
    /// Penalty for tokens among the last `repeat_last_n` (`1` = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random draw (`None`: from the clock).
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (what fidelity tests and `--temperature 0` use).
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f32, reason| {
            Err(EngineError::InvalidSampling {
                name,
                value: value.to_string(),
                reason,
            })
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                self.temperature,
                "must be a finite number >= 0",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(
                "repeat_penalty",
                self.repeat_penalty,
                "must be a finite number > 0",
            );
        }
        Ok(())
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and stable by definition.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sampler with its random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler for validated `params`.
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(Sampler {
            params,
            rng: SplitMix64(seed),
        })
    }

    /// The parameters in force.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks a token from `logits` (one per vocabulary entry) given the tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let mut logits = logits.to_vec();
        if p.repeat_penalty != 1.0 && p.repeat_last_n > 0 {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut seen = std::collections::HashSet::new();
            for &t in recent {
                if seen.insert(t)
                    && let Some(l) = logits.get_mut(t as usize)
                {
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature == 0.0 {
            return argmax(&logits);
        }
        // Candidates sorted by logit, descending (ties: lower id first). A −∞ logit is a
        // token a grammar forbade: it must never be drawn, not even by rounding at the end.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan() && **l > f32::NEG_INFINITY)
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            return 0;
        }
        let k = if p.top_k == 0 {
            cand.len()
        } else {
            p.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cand.truncate(k);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Probabilities at temperature 1 for top-p / min-p, as llama.cpp does.
        let probs = softmax(cand.iter().map(|c| c.1), 1.0);
        let mut keep = cand.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, pr) in probs.iter().enumerate() {
                acc += pr;
                if acc >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * f64::from(p.min_p);
            keep = keep.min(probs.iter().take_while(|&&pr| pr >= floor).count().max(1));
        }
        cand.truncate(keep.max(1));
        let probs = softmax(cand.iter().map(|c| c.1), p.temperature);
        let mut r = self.rng.next_f64();
        for (c, pr) in cand.iter().zip(&probs) {
            if r < *pr {
                return c.0;
            }
            r -= pr;
        }
        cand.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i, l);
        }
    }
    best.0 as u32
}

/// Softmax of `logits / t` in f64 (sums to 1).
fn softmax(logits: impl Iterator<Item = f32> + Clone, t: f32) -> Vec<f64> {
    let t = f64::from(t);
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits
        .map(|l| ((f64::from(l) - f64::from(max)) / t).exp())
        .collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;

    fn sampler(p: SamplingParams) -> Sampler {
        Sampler::new(SamplingParams { seed: Some(7), ..p }).unwrap()
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = sampler(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = sampler(SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 1.0, 0.9, 0.2], &[]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        let logits = [10.0, 9.5, 0.0, -5.0];
        let mut s = sampler(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            min_p: 0.0,
            ..Default::default()
        });
        let mut m = sampler(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.01,
            ..Default::default()
        });
        for _ in 0..200 {
            assert!(s.sample(&logits, &[]) <= 1);
            assert!(m.sample(&logits, &[]) <= 1);
        }
    }

    #[test]
    fn same_seed_same_tokens_and_both_likely_tokens_appear() {
        let logits = [1.0, 1.0, 1.0, 1.0];
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut s = sampler(p.clone());
            (0..64).map(|_| s.sample(&logits, &[])).collect()
        };
        let b: Vec<u32> = {
            let mut s = sampler(p);
            (0..64).map(|_| s.sample(&logits, &[])).collect()
        };
        assert_eq!(a, b);
        for t in 0..4 {
            assert!(a.contains(&t), "token {t} never drawn in {a:?}");
        }
    }

    #[test]
    fn repetition_penalty_changes_the_greedy_choice() {
        let mut s = sampler(SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        });
        assert_eq!(s.sample(&[0.0, 3.0, 2.0], &[1]), 2);
        assert_eq!(s.sample(&[0.0, 3.0, 2.0], &[0]), 1);
    }

    #[test]
    fn invalid_parameters_are_rejected_by_name() {
        for (p, name) in [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    min_p: 1.5,
                    ..Default::default()
                },
                "min_p",
            ),
            (
                SamplingParams {
                    repeat_penalty: f32::NAN,
                    ..Default::default()
                },
                "repeat_penalty",
            ),
        ] {
            match Sampler::new(p) {
                Err(EngineError::InvalidSampling { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
