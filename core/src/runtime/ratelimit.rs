//! Token-bucket rate limiting in memory (moka), keyed by whatever the caller chooses
//! (`login:ip:1.2.3.4`, `login:account:a@b.c`).
//!
//! A bucket holds `capacity` tokens and refills continuously over one minute, so a
//! limited key recovers by itself: a flood slows a key down for as long as it lasts
//! and never locks it out for longer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Clone)]
pub struct RateLimiter {
    buckets: moka::future::Cache<String, Arc<Mutex<Bucket>>>,
    capacity: f64,
    per_second: f64,
}

impl RateLimiter {
    /// `per_minute` requests a minute, all of which may come at once.
    pub fn per_minute(per_minute: u32, max_keys: u64) -> Self {
        let capacity = f64::from(per_minute.max(1));
        RateLimiter {
            // A bucket idle for two minutes is full again, so it can be forgotten.
            buckets: moka::future::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(Duration::from_secs(120))
                .build(),
            capacity,
            per_second: capacity / 60.0,
        }
    }

    /// Takes one token for `key`, or answers 429 with the seconds until one is back.
    pub async fn check(&self, key: &str) -> Result<()> {
        let capacity = self.capacity;
        let bucket = self
            .buckets
            .get_with_by_ref(key, async move {
                Arc::new(Mutex::new(Bucket {
                    tokens: capacity,
                    updated: Instant::now(),
                }))
            })
            .await;
        let mut b = bucket
            .lock()
            .map_err(|_| Error::internal("rate limiter lock poisoned"))?;
        let now = Instant::now();
        b.tokens =
            (b.tokens + now.duration_since(b.updated).as_secs_f64() * self.per_second).min(self.capacity);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / self.per_second).ceil().max(1.0);
            Err(Error::RateLimited {
                retry_after_secs: wait as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_allows_its_capacity_then_refuses_with_a_retry_time() {
        let limiter = RateLimiter::per_minute(3, 100);
        for _ in 0..3 {
            limiter.check("k").await.expect("allowed");
        }
        match limiter.check("k").await {
            Err(Error::RateLimited { retry_after_secs }) => assert!((1..=20).contains(&retry_after_secs)),
            other => panic!("expected 429, got {other:?}"),
        }
        limiter.check("other").await.expect("keys are independent");
    }
}
