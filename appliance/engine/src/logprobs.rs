//! Log-probabilities of the model's choices, as OpenAI's `logprobs` reports them.
//!
//! The values are the model's own: log-softmax of the raw logits, before the repetition
//! penalty, a grammar's mask, temperature or any truncation (OpenAI and llama.cpp report
//! the same). Computed in f64 so that a top token's log-probability near 0 keeps its digits.

/// The chosen token's log-probability and, if asked, the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The token produced.
    pub token: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The `n` most likely tokens with theirs, most likely first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

/// Most alternatives a request may ask for (OpenAI's limit for `top_logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// `log Σ exp(logits)`: the normaliser of the log-softmax.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::from(max);
    }
    let max = f64::from(max);
    let sum: f64 = logits
        .iter()
        .filter(|l| !l.is_nan())
        .map(|&l| (f64::from(l) - max).exp())
        .sum();
    max + sum.ln()
}

/// The `n` (at most [`MAX_TOP_LOGPROBS`]) most likely tokens of raw `logits` with their
/// log-probabilities given the normaliser `lse` ([`log_sum_exp`]).
pub fn top(logits: &[f32], lse: f64, n: usize) -> Vec<(u32, f32)> {
    let n = n.min(MAX_TOP_LOGPROBS).min(logits.len());
    if n == 0 {
        return Vec::new();
    }
    // A small sorted list beats sorting the vocabulary: n ≤ 20.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() || (best.len() == n && l <= best[n - 1].1) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= l);
        best.insert(at, (i as u32, l));
        best.truncate(n);
    }
    best.into_iter()
        .map(|(id, l)| (id, (f64::from(l) - lse) as f32))
        .collect()
}

/// The record for `token` drawn from raw `logits`, with `n` alternatives.
pub fn of(logits: &[f32], token: u32, n: usize) -> TokenLogprobs {
    let lse = log_sum_exp(logits);
    let raw = logits
        .get(token as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    TokenLogprobs {
        token,
        logprob: (f64::from(raw) - lse) as f32,
        top: top(logits, lse, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_sums_to_one_and_top_is_sorted() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, -1.0];
        let lse = log_sum_exp(&logits);
        let total: f64 = logits.iter().map(|&l| (f64::from(l) - lse).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        let t = top(&logits, lse, 3);
        assert_eq!(t.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        assert!(t.windows(2).all(|w| w[0].1 >= w[1].1));
        let r = of(&logits, 2, 0);
        assert!(r.top.is_empty());
        assert!((f64::from(r.logprob) - (2.0 - lse)).abs() < 1e-6);
    }

    #[test]
    fn asking_for_more_than_the_limit_gives_the_limit() {
        let logits: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let t = top(&logits, log_sum_exp(&logits), 50);
        assert_eq!(t.len(), MAX_TOP_LOGPROBS);
        assert_eq!(t[0].0, 99);
    }
}
