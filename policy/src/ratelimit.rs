//! Local rate limiting (a `GatewayPolicy` `rateLimit`): token buckets per route, per host or per
//! client address, as Envoy's local rate limit filter counts them. A denied request gets 429
//! `local_rate_limited` with response flag `RL`. Time is tokio's, so tests can pause it.

use std::collections::HashMap;
use std::sync::Mutex;

use conf::table::{RateLimitKey, RateLimitRule};
use tokio::time::Instant;

/// One bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket { tokens: burst, updated: now }
    }

    /// Refills for the time passed, then takes a token if there is one.
    fn take(&mut self, rule: &RateLimitRule, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rule.per_second).min(f64::from(rule.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a limiter decided, with what the `x-ratelimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The request may go on.
    pub allowed: bool,
    /// The bucket size (`x-ratelimit-limit`).
    pub limit: u32,
    /// Whole tokens left (`x-ratelimit-remaining`).
    pub remaining: u32,
    /// Seconds until a token is back (`x-ratelimit-reset`).
    pub reset_secs: u64,
}

/// The buckets of one route's rate limit.
pub struct Limiter {
    rule: RateLimitRule,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// A limiter with full buckets.
    pub fn new(rule: RateLimitRule) -> Self {
        Limiter { rule, buckets: Mutex::new(HashMap::new()) }
    }

    /// The rule.
    pub fn rule(&self) -> &RateLimitRule {
        &self.rule
    }

    /// Takes a token for a request from `host` and `client`. Host and client buckets are kept
    /// for at most `max_keys` keys: when full, the least recently used one is dropped.
    pub fn check(&self, host: &str, client: &str, now: Instant) -> Verdict {
        let key = match self.rule.key {
            RateLimitKey::Route => "",
            RateLimitKey::Host => host,
            RateLimitKey::Client => client,
        };
        let burst = f64::from(self.rule.burst);
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock: refuse rather than let everything through.
            return Verdict { allowed: false, limit: self.rule.burst, remaining: 0, reset_secs: 1 };
        };
        if !buckets.contains_key(key) && buckets.len() >= self.rule.max_keys {
            evict(&mut buckets);
        }
        let bucket = buckets.entry(key.to_string()).or_insert_with(|| Bucket::full(burst, now));
        let allowed = bucket.take(&self.rule, now);
        let missing = (1.0 - bucket.tokens).max(0.0);
        let reset = if self.rule.per_second > 0.0 { (missing / self.rule.per_second).ceil() } else { 0.0 };
        Verdict {
            allowed,
            limit: self.rule.burst,
            remaining: bucket.tokens.floor().clamp(0.0, f64::from(u32::MAX)) as u32,
            reset_secs: reset.clamp(0.0, 1e9) as u64,
        }
    }

    /// How many buckets are kept.
    pub fn keys(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }
}

/// Drops the least recently used eighth of the buckets (at least one): one scan pays for many
/// new keys, so a client inventing addresses cannot make every request scan the whole map.
fn evict(buckets: &mut HashMap<String, Bucket>) {
    let mut by_age: Vec<(Instant, String)> = buckets.iter().map(|(k, b)| (b.updated, k.clone())).collect();
    let n = (by_age.len() / 8).max(1);
    by_age.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
    for (_, k) in by_age.into_iter().take(n) {
        buckets.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rule(per_second: f64, burst: u32, key: RateLimitKey, max_keys: usize) -> RateLimitRule {
        RateLimitRule {
            policy: "default/p".into(),
            level: "route",
            per_second,
            burst,
            key,
            max_keys,
            response_headers: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_served_then_tokens_come_back_at_the_rate() {
        let l = Limiter::new(rule(2.0, 3, RateLimitKey::Route, 10));
        let now = Instant::now();
        let served = (0..5).filter(|_| l.check("h", "c", now).allowed).count();
        assert_eq!(served, 3, "the burst");
        let denied = l.check("h", "c", now);
        assert_eq!((denied.allowed, denied.remaining, denied.reset_secs), (false, 0, 1));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(l.check("h", "c", Instant::now()).allowed, "one token after half a second at 2/s");
        assert!(!l.check("h", "c", Instant::now()).allowed);
        tokio::time::advance(Duration::from_secs(60)).await;
        let served = (0..5).filter(|_| l.check("h", "c", Instant::now()).allowed).count();
        assert_eq!(served, 3, "refilled to the burst, never beyond");
    }

    #[tokio::test(start_paused = true)]
    async fn client_buckets_are_separate_and_bounded() {
        let l = Limiter::new(rule(1.0, 1, RateLimitKey::Client, 2));
        let now = Instant::now();
        assert!(l.check("h", "a", now).allowed);
        assert!(!l.check("h", "a", now).allowed);
        assert!(l.check("h", "b", now).allowed, "another client has its own bucket");
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(l.check("h", "c", Instant::now()).allowed);
        assert_eq!(l.keys(), 2, "the least recently used bucket was dropped");
    }
}
