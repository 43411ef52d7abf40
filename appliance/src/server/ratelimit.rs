//! Per-certificate request rate limit (`limits.requests_per_minute`): a token bucket per
//! client-certificate fingerprint, holding up to a minute's worth of requests and refilled
//! continuously. Only verified certificates get a bucket, so the map grows with the
//! site's issued certificates, not with an attacker's connections; full, idle buckets are
//! pruned when the map gets large.
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use policy::Fingerprint;

/// Buckets kept before full ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Requests refused since the bucket last granted one.
    refused: u64,
}

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Until a token is available again.
    pub wait: Duration,
    /// The first refusal since this certificate was last served: the one worth a log line
    /// (the rest of a flood is counted in metrics, so it cannot grow the log).
    pub first: bool,
}

/// The limiter shared by all workers.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<Fingerprint, Bucket>>,
}

impl RateLimiter {
    /// `per_minute == 0` disables the limit.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token, or says how long until one is available.
    pub fn check(&self, who: Fingerprint, now: Instant) -> Result<(), Refusal> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_sec
                    < capacity
            });
        }
        let bucket = buckets.entry(who).or_insert(Bucket {
            tokens: capacity,
            updated: now,
            refused: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refused = 0;
            Ok(())
        } else {
            bucket.refused += 1;
            Err(Refusal {
                wait: Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec),
                first: bucket.refused == 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_burst_then_refill() {
        let limiter = RateLimiter::new(60);
        let who = Fingerprint([1; 32]);
        let other = Fingerprint([2; 32]);
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.check(who, t0).expect("within the burst");
        }
        let refusal = limiter
            .check(who, t0)
            .expect_err("61st in the same instant");
        assert!(refusal.first);
        assert!(!limiter.check(who, t0).expect_err("62nd").first);
        let wait = refusal.wait;
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        limiter
            .check(other, t0)
            .expect("buckets are per certificate");
        limiter
            .check(who, t0 + Duration::from_secs(1))
            .expect("one token per second refills");
        let again = limiter.check(who, t0 + Duration::from_secs(1));
        assert!(again.expect_err("empty again").first, "served in between");
    }

    #[test]
    fn zero_disables() {
        let limiter = RateLimiter::new(0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            limiter.check(Fingerprint([0; 32]), t0).expect("unlimited");
        }
    }
}
