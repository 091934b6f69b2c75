//! Token-bucket rate limiting, keyed by whatever the caller chooses
//! (`login:ip:1.2.3.4`, `login:account:a@b.c`): in memory (moka) for one process,
//! or in the `rate_buckets` table when several nodes share PostgreSQL, so a limit
//! counts every node's requests.
//!
//! A bucket holds `capacity` tokens and refills continuously over one minute, so a
//! limited key recovers by itself: a flood slows a key down for as long as it lasts
//! and never locks it out for longer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::error::{Error, Result};
use crate::params;
use crate::storage::db::{Db, now_millis};

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Clone)]
pub struct RateLimiter {
    buckets: moka::future::Cache<String, Arc<Mutex<Bucket>>>,
    capacity: f64,
    per_second: f64,
    /// The database holding the buckets every node shares, when there is one, and
    /// the secret their keys are hashed with.
    shared: Option<(Db, Secret)>,
}

/// Refills the key's bucket for the time since it was counted and takes a token
/// when there is one, in one statement (the row lock orders concurrent nodes).
const TAKE: &str = "INSERT INTO rate_buckets AS b (key, tokens, updated_ms, allowed)
     VALUES (?1, CAST(?2 AS DOUBLE PRECISION) - 1, ?3, 1)
     ON CONFLICT (key) DO UPDATE SET
         tokens = CASE WHEN REFILLED >= 1 THEN REFILLED - 1 ELSE REFILLED END,
         allowed = CASE WHEN REFILLED >= 1 THEN 1 ELSE 0 END,
         updated_ms = ?3
     RETURNING allowed, tokens";

/// [`TAKE`] with the refilled count written out: the tokens left plus what the
/// time since refilled, at most the capacity. The numbers are cast where they
/// first appear: PostgreSQL types a parameter by its first use.
fn take_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let refilled = "(CASE WHEN b.tokens + (?3 - b.updated_ms) * CAST(?4 AS DOUBLE PRECISION) < CAST(?2 AS DOUBLE PRECISION) \
                    THEN b.tokens + (?3 - b.updated_ms) * CAST(?4 AS DOUBLE PRECISION) \
                    ELSE CAST(?2 AS DOUBLE PRECISION) END)";
        TAKE.replace("REFILLED", refilled)
    });
    &SQL
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
            shared: None,
        }
    }

    /// Counts in `db`'s `rate_buckets`, shared by every node on that database;
    /// keys are stored as HMAC-SHA256(`secret`, key).
    pub fn shared(mut self, db: Db, secret: Secret) -> Self {
        self.shared = Some((db, secret));
        self
    }

    /// Takes one token for `key`, or answers 429 with the seconds until one is back.
    pub async fn check(&self, key: &str) -> Result<()> {
        if let Some((db, secret)) = &self.shared {
            // Keys carry emails and addresses: only a keyed digest is stored, so the
            // table holds no personal data (nothing for erasure to find).
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes()).map_err(Error::internal)?;
            mac.update(key.as_bytes());
            let key = hex::encode(mac.finalize().into_bytes());
            let (capacity, per_ms) = (self.capacity, self.per_second / 1000.0);
            let (allowed, tokens): (bool, f64) = db
                .call(move |sql| {
                    sql.query_one(take_sql(), params![key, capacity, now_millis(), per_ms], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                })
                .await?;
            return self.verdict(allowed, tokens);
        }
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
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        self.verdict(allowed, b.tokens)
    }

    /// 429 with the seconds until a token is back, unless `allowed`.
    fn verdict(&self, allowed: bool, tokens: f64) -> Result<()> {
        if allowed {
            return Ok(());
        }
        let wait = ((1.0 - tokens) / self.per_second).ceil().max(1.0);
        Err(Error::RateLimited {
            retry_after_secs: wait as u64,
        })
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
