//! Process metrics in the Prometheus (OpenMetrics) text format, served at /metrics.
//!
//! Counters and histograms are updated on the request path without locks beyond
//! prometheus-client's per-family map; gauges that describe state (pool, caches,
//! jobs) are read at scrape time instead of being kept up to date on every change.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use parking_lot::RwLock;
use poem::http::Method;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

type HttpKey = (Method, Arc<str>, u16);

/// The route label of requests no route matched.
pub(crate) const UNMATCHED: &str = "unmatched";

static UNMATCHED_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(UNMATCHED));

fn latency_histogram() -> Histogram {
    // 100 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

type SizeFn = Box<dyn Fn() -> CacheFigures + Send + Sync>;

/// A cache's figures at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CacheFigures {
    pub entries: u64,
    pub loads: u64,
    pub hit_rate: f64,
}

/// All metrics of the process; one instance lives in the platform.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    http_in_flight: Gauge,
    /// Handles of `http_requests` and `http_duration` by (method, route, status).
    http_handles: Arc<RwLock<HashMap<HttpKey, (Counter, Histogram)>>>,
    jobs: Family<JobLabels, Counter>,
    job_duration: Family<NameLabel, Histogram, fn() -> Histogram>,
    db_pool: Family<StateLabel, Gauge>,
    db_group_commits: Family<StateLabel, Gauge>,
    cache_entries: Family<NameLabel, Gauge>,
    cache_loads: Family<NameLabel, Gauge>,
    jobs_by_status: Family<StateLabel, Gauge>,
    platform: Family<NameLabel, Gauge>,
    caches: Arc<Mutex<Vec<(&'static str, SizeFn)>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("plinth");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_duration.clone(),
        );
        let http_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being served",
            http_in_flight.clone(),
        );
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Background job runs by kind and outcome",
            jobs.clone(),
        );
        let job_duration =
            Family::<NameLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "job_duration_seconds",
            "Background job run time by kind",
            job_duration.clone(),
        );
        let db_pool = Family::<StateLabel, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Pooled SQLite connections by state",
            db_pool.clone(),
        );
        let db_group_commits = Family::<StateLabel, Gauge>::default();
        registry.register(
            "db_group_commits",
            "Group-committed write transactions (batches) and the writers they answered, since start",
            db_group_commits.clone(),
        );
        let cache_entries = Family::<NameLabel, Gauge>::default();
        registry.register(
            "cache_entries",
            "Entries per in-process cache",
            cache_entries.clone(),
        );
        let cache_loads = Family::<NameLabel, Gauge>::default();
        registry.register(
            "cache_loads",
            "Cache misses that ran the loader (reached the database), since start",
            cache_loads.clone(),
        );
        let jobs_by_status = Family::<StateLabel, Gauge>::default();
        registry.register("jobs", "Background jobs by status", jobs_by_status.clone());
        let platform = Family::<NameLabel, Gauge>::default();
        registry.register(
            "platform",
            "Platform figures (users, orgs, uptime, database size), as /api/admin/stats and /system show them",
            platform.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            http_requests,
            http_duration,
            http_in_flight,
            http_handles: Arc::default(),
            jobs,
            job_duration,
            db_pool,
            db_group_commits,
            cache_entries,
            cache_loads,
            jobs_by_status,
            platform,
            caches: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Marks a request as started; the guard records it when dropped.
    pub fn request_started(&self) -> InFlight {
        self.http_in_flight.inc();
        InFlight(self.http_in_flight.clone())
    }

    /// Counts a request by method, route pattern (None: no route matched) and
    /// status, and records its latency.
    pub fn request_finished(
        &self,
        method: &Method,
        route: Option<&Arc<str>>,
        status: u16,
        elapsed: Duration,
    ) {
        let route = route.cloned().unwrap_or_else(|| Arc::clone(&UNMATCHED_LABEL));
        let key = (method.clone(), route, status);
        // The label strings are built once per (method, route, status), not per request.
        let cached = self.http_handles.read().get(&key).cloned();
        let (counter, histogram) = match cached {
            Some(handles) => handles,
            None => {
                let (method, route, status) = &key;
                let handles = (
                    self.http_requests
                        .get_or_create(&HttpLabels {
                            method: method.to_string(),
                            route: route.to_string(),
                            status: *status,
                        })
                        .clone(),
                    self.http_duration
                        .get_or_create(&RouteLabels {
                            method: method.to_string(),
                            route: route.to_string(),
                        })
                        .clone(),
                );
                self.http_handles.write().insert(key, handles.clone());
                handles
            }
        };
        counter.inc();
        histogram.observe(elapsed.as_secs_f64());
    }

    pub fn job_finished(&self, kind: &str, outcome: &str, elapsed: Duration) {
        self.jobs
            .get_or_create(&JobLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.job_duration
            .get_or_create(&NameLabel {
                name: kind.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Makes a cache's size and loads visible at /metrics.
    pub fn register_cache<K, V>(&self, cache: &crate::runtime::cache::Cache<K, V>)
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let probe = cache.clone();
        if let Ok(mut caches) = self.caches.lock() {
            caches.push((
                cache.name(),
                Box::new(move || CacheFigures {
                    entries: probe.entry_count(),
                    loads: probe.loads(),
                    hit_rate: probe.hit_rate(),
                }),
            ));
        }
    }

    /// Every registered cache's figures, by name.
    pub fn caches(&self) -> Vec<(&'static str, CacheFigures)> {
        self.caches
            .lock()
            .map(|caches| caches.iter().map(|(name, f)| (*name, f())).collect())
            .unwrap_or_default()
    }

    /// Encodes everything, after reading the state gauges.
    pub fn render(
        &self,
        pool: r2d2::State,
        pool_max: u32,
        group_commits: (u64, u64),
        jobs: &[(&str, i64)],
        figures: &[(&str, i64)],
    ) -> String {
        for (name, value) in figures {
            self.platform
                .get_or_create(&NameLabel { name: (*name).into() })
                .set(*value);
        }
        let in_use = pool.connections.saturating_sub(pool.idle_connections);
        for (state, value) in [
            ("idle", pool.idle_connections),
            ("in_use", in_use),
            ("max", pool_max),
        ] {
            self.db_pool
                .get_or_create(&StateLabel { state: state.into() })
                .set(i64::from(value));
        }
        for (state, value) in [("batches", group_commits.0), ("writers", group_commits.1)] {
            self.db_group_commits
                .get_or_create(&StateLabel { state: state.into() })
                .set(value as i64);
        }
        if let Ok(caches) = self.caches.lock() {
            for (name, figures) in caches.iter() {
                let f = figures();
                let label = NameLabel { name: (*name).into() };
                self.cache_entries.get_or_create(&label).set(f.entries as i64);
                self.cache_loads.get_or_create(&label).set(f.loads as i64);
            }
        }
        for (status, n) in jobs {
            self.jobs_by_status
                .get_or_create(&StateLabel {
                    state: (*status).into(),
                })
                .set(*n);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Decrements the in-flight gauge when the request is done (even on panic).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
