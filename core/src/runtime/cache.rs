//! In-process caching on moka, behind a small API with explicit invalidation.
//!
//! moka's `invalidate` does not stop a load already in flight, whose stale result
//! would then be inserted after the invalidation. Each cache therefore keeps a
//! generation counter bumped by every invalidation; a load that sees the generation
//! change while it ran returns its value to its callers but does not cache it.
//! Tenant caches must include the org id in their keys (a key without it would let a
//! hit cross tenants).

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};

enum LoadFailure<V> {
    /// Loaded, but invalidated meanwhile: good for the callers who asked, not for the cache.
    Stale(V),
    Failed(Error),
}

/// A named cache with bounded capacity and optional time-to-live.
pub struct Cache<K, V> {
    name: &'static str,
    inner: moka::future::Cache<K, V>,
    generation: Arc<AtomicU64>,
    /// Loader runs (misses that reached the source): shown at /metrics.
    loads: Arc<AtomicU64>,
    /// Lookups through `get_or_load`; with `loads`, the hit rate.
    requests: Arc<AtomicU64>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            name: self.name,
            inner: self.inner.clone(),
            generation: self.generation.clone(),
            loads: self.loads.clone(),
            requests: self.requests.clone(),
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(name: &'static str, capacity: u64, ttl: Option<Duration>) -> Self {
        let mut builder = moka::future::Cache::builder()
            .name(name)
            .max_capacity(capacity)
            .support_invalidation_closures();
        if let Some(ttl) = ttl {
            builder = builder.time_to_live(ttl);
        }
        Cache {
            name,
            inner: builder.build(),
            generation: Arc::new(AtomicU64::new(0)),
            loads: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub async fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.get(key).await
    }

    /// Returns the cached value or runs `load` once for all concurrent callers of the
    /// same key. Errors are not cached.
    pub async fn get_or_load<F, Fut>(&self, key: K, load: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // A hit through `get` skips the single-flight machinery of `try_get_with`.
        if let Some(v) = self.inner.get(&key).await {
            return Ok(v);
        }
        let generation = self.generation.clone();
        let started = generation.load(Ordering::Acquire);
        let loads = self.loads.clone();
        let result = self
            .inner
            .try_get_with(key, async move {
                loads.fetch_add(1, Ordering::Relaxed);
                match load().await {
                    Ok(v) if generation.load(Ordering::Acquire) == started => Ok(v),
                    Ok(v) => Err(LoadFailure::Stale(v)),
                    Err(e) => Err(LoadFailure::Failed(e)),
                }
            })
            .await;
        match result {
            Ok(v) => Ok(v),
            Err(shared) => match &*shared {
                LoadFailure::Stale(v) => Ok(v.clone()),
                LoadFailure::Failed(e) => Err(e.duplicate()),
            },
        }
    }

    pub async fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value).await;
    }

    pub async fn invalidate(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.invalidate(key).await;
    }

    /// Invalidates every entry matching `predicate` (e.g. all entries of one org).
    pub fn invalidate_if<F>(&self, predicate: F)
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.inner.invalidate_entries_if(predicate) {
            // Only possible without support_invalidation_closures, which `new` sets;
            // dropping everything is the safe fallback.
            tracing::error!(cache = self.name, error = %e, "predicate invalidation failed; clearing the cache");
            self.inner.invalidate_all();
        }
    }

    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Share of `get_or_load` lookups served from memory since start (1.0 when idle).
    pub fn hit_rate(&self) -> f64 {
        let requests = self.requests.load(Ordering::Relaxed);
        if requests == 0 {
            return 1.0;
        }
        1.0 - self.loads().min(requests) as f64 / requests as f64
    }

    /// How many times a miss ran the loader since start.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn concurrent_misses_load_once() {
        let cache: Cache<u32, u32> = Cache::new("t", 100, None);
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(1, || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join").expect("load"), 7);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.loads(), 1);
    }

    #[tokio::test]
    async fn a_load_overtaken_by_an_invalidation_is_not_cached() {
        let cache: Cache<u32, u32> = Cache::new("t", 100, None);
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let c = cache.clone();
        let slow = tokio::spawn(async move {
            c.get_or_load(1, || async {
                let _ = gate_rx.await;
                Ok(1) // the old value, read before the change
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cache.invalidate(&1).await; // the change commits while the load is in flight
        let _ = gate_tx.send(());
        assert_eq!(slow.await.expect("join").expect("load"), 1);
        let fresh = cache.get_or_load(1, || async { Ok(2) }).await.expect("load");
        assert_eq!(fresh, 2, "the stale value must not have been cached");
    }

    #[tokio::test]
    async fn errors_are_returned_and_not_cached() {
        let cache: Cache<u32, u32> = Cache::new("t", 100, None);
        let err = cache
            .get_or_load(1, || async { Err(Error::NotFound("nope".into())) })
            .await
            .expect_err("error");
        assert_eq!(err.status().as_u16(), 404);
        assert_eq!(cache.get_or_load(1, || async { Ok(3) }).await.expect("load"), 3);
    }

    #[tokio::test]
    async fn predicate_invalidation_drops_matching_entries_only() {
        let cache: Cache<(u32, u32), u32> = Cache::new("t", 100, None);
        cache.insert((1, 1), 1).await;
        cache.insert((2, 1), 2).await;
        cache.invalidate_if(|(org, _), _| *org == 1);
        assert_eq!(cache.get(&(1, 1)).await, None);
        assert_eq!(cache.get(&(2, 1)).await, Some(2));
    }
}
