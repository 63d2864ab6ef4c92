//! Token-bucket rate limits per trigger, kept in this server's memory (each server of a
//! PostgreSQL cluster enforces its own share).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate limit: `per_second` on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second allowed on average.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period (default: one second's worth, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateLimit {
    fn capacity(&self) -> f64 {
        f64::from(self.burst.unwrap_or(0))
            .max(self.per_second.ceil())
            .max(1.0)
    }
    /// Rejects limits that cannot work.
    pub fn check(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err("rate_limit.per_second must be a positive number".into());
        }
        Ok(())
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every trigger.
#[derive(Default)]
pub struct RateLimits(Mutex<HashMap<String, Bucket>>);

impl RateLimits {
    /// Takes one token for `key`; Err(wait) says how long until one is free.
    pub fn take(&self, key: &str, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.clear();
        }
        let cap = limit.capacity();
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_second).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / limit.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = RateLimit {
            per_second: 2.0,
            burst: Some(3),
        };
        let r = RateLimits::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.take("a", &l, t0).is_ok());
        }
        let wait = r.take("a", &l, t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(r.take("b", &l, t0).is_ok(), "buckets are per key");
        assert!(r.take("a", &l, t0 + Duration::from_millis(500)).is_ok());
        assert!(r.take("a", &l, t0 + Duration::from_millis(500)).is_err());
        assert!(RateLimit {
            per_second: 0.0,
            burst: None
        }
        .check()
        .is_err());
    }
}
