//! Durable background jobs: a SQLite table and a pool of tokio workers.
//!
//! A job is enqueued in the caller's transaction (so it exists exactly when the change
//! that asked for it commits), claimed by one worker with a single atomic UPDATE,
//! retried with exponential backoff when its handler fails or panics, and marked
//! `dead` after its maximum attempts. Jobs left `running` by a crash or a kill are
//! queued again when the server starts: handlers must be idempotent.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::error::Result;
use crate::params;
use crate::runtime::metrics::Metrics;
use crate::storage::db::Db;
use crate::storage::db::{now_millis, now_rfc3339};
use crate::storage::sql::{Handle, Sql, ToSql};

/// Retries never wait longer than this, however many attempts failed.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Where a job is in its life: waiting (or waiting to retry), being run, finished,
/// or given up after its last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Dead,
}

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// What the workers need from whoever runs them (the platform, in the server):
/// the queue's database, the queue, the metrics. Generic so that the queue does not
/// depend on the platform that holds it.
pub trait JobHost: Clone + Send + Sync + 'static {
    fn db(&self) -> &Db;
    fn jobs(&self) -> &Jobs;
    fn metrics(&self) -> &Metrics;
}

/// What a handler receives (`H` is the platform: see `plinth_core::platform::JobContext`).
pub struct JobContext<H> {
    pub id: String,
    pub kind: String,
    pub payload: Value,
    /// 1 on the first run.
    pub attempt: u32,
    pub platform: H,
}

pub type JobFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A plugin's handler for one kind of job.
pub struct JobHandler<H> {
    pub kind: String,
    run: Arc<dyn Fn(JobContext<H>) -> JobFuture + Send + Sync>,
}

impl<H> Clone for JobHandler<H> {
    fn clone(&self) -> Self {
        JobHandler {
            kind: self.kind.clone(),
            run: self.run.clone(),
        }
    }
}

impl<H> JobHandler<H> {
    /// `f` returns `Err(message)` to ask for a retry; the message is stored on the job.
    pub fn new<F, Fut>(kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(JobContext<H>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        JobHandler {
            kind: kind.into(),
            run: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }
}

/// Options for one enqueued job.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// Run no earlier than this many milliseconds from now.
    pub delay: Option<Duration>,
    /// Overrides the configured maximum attempts.
    pub max_attempts: Option<u32>,
}

/// The queue handle in [`Platform`]: enqueueing, and waking idle workers.
#[derive(Clone)]
pub struct Jobs {
    wake: Arc<Notify>,
    max_attempts: u32,
    backoff_base: Duration,
    lease: Duration,
}

impl Jobs {
    pub(crate) fn new(max_attempts: u32, backoff_base: Duration) -> Self {
        Jobs {
            wake: Arc::new(Notify::new()),
            max_attempts,
            backoff_base,
            lease: DEFAULT_LEASE,
        }
    }

    /// Leases running jobs for `lease` (renewed at a third of it while they run).
    pub(crate) fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// Enqueues a job on `conn`, normally the caller's open transaction.
    pub fn enqueue(&self, conn: &impl Handle, kind: &str, payload: &Value) -> Result<Uuid> {
        let conn = &Sql::from(conn);
        self.enqueue_with(conn, kind, payload, EnqueueOptions::default())
    }

    pub fn enqueue_with(
        &self,
        conn: &impl Handle,
        kind: &str,
        payload: &Value,
        options: EnqueueOptions,
    ) -> Result<Uuid> {
        let conn = &Sql::from(conn);
        let id = Uuid::now_v7();
        let run_at = now_millis() + options.delay.map_or(0, |d| d.as_millis() as i64);
        let now = now_rfc3339();
        conn.execute("INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'queued', 0, ?4, ?5, ?6, ?6)", params![
            id.to_string(),
            kind,
            serde_json::to_string(payload)?,
            options.max_attempts.unwrap_or(self.max_attempts),
            run_at,
            now
        ])?;
        // Workers that wake before the caller commits find nothing and sleep until
        // the next poll; waking them is only a latency optimisation.
        self.wake.notify_waiters();
        Ok(id)
    }

    /// Enqueues a job of `kind` unless one is already queued or running; returns
    /// its id when it did.
    pub fn enqueue_unique(&self, conn: &impl Handle, kind: &str, payload: &Value) -> Result<Option<Uuid>> {
        let conn = &Sql::from(conn);
        let pending = conn.exists(
            "SELECT 1 FROM jobs WHERE kind = ?1 AND status IN ('queued', 'running') LIMIT 1",
            params![kind],
        )?;
        if pending {
            return Ok(None);
        }
        self.enqueue(conn, kind, payload).map(Some)
    }

    /// Delay before the next attempt after `attempts` failed ones: base * 2^(n-1),
    /// capped, with up to 10 % jitter so retries of a burst do not align.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
            .min(MAX_BACKOFF);
        let jitter = rand::rng().random_range(0.0..0.1);
        exp.mul_f64(1.0 + jitter)
    }
}

/// How long a running job is leased when no configuration says otherwise.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Queues again the jobs a previous process left running. Called once at start-up,
/// before any worker runs, so no live job is touched: on SQLite only, whose file
/// has one server. Several nodes on PostgreSQL rely on leases instead (another
/// node's running job is not this one's to requeue).
pub fn recover(conn: &impl Handle) -> Result<usize> {
    let conn = &Sql::from(conn);
    let n = conn.execute(
        "UPDATE jobs SET status = 'queued', run_at = ?1, updated_at = ?2 WHERE status = 'running'",
        params![now_millis(), now_rfc3339()],
    )?;
    Ok(n)
}

/// Counts jobs per status (metrics, admin).
pub fn counts(conn: &impl Handle) -> Result<HashMap<&'static str, i64>> {
    let conn = &Sql::from(conn);
    let rows = conn.query_all(
        "SELECT status, count(*) FROM jobs GROUP BY status",
        params![],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
    )?;
    let mut out: HashMap<&'static str, i64> = JobStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for (status, n) in rows {
        if let Some(s) = JobStatus::parse(&status) {
            out.insert(s.as_str(), n);
        }
    }
    Ok(out)
}

struct Claimed {
    id: String,
    kind: String,
    payload: Value,
    attempts: u32,
}

/// The claim statement for `kinds` handled kinds (one cached statement per count):
/// a due queued job, or a running one whose lease ran out (its node died), leased
/// to this worker.
fn claim_sql(kinds: usize) -> String {
    let placeholders: Vec<String> = (0..kinds).map(|i| format!("?{}", i + 4)).collect();
    // SKIP LOCKED: on PostgreSQL two workers would otherwise pick the same row
    // under READ COMMITTED (SQLite's single writer needs no lock; the facade
    // drops the clause there). A lease never set (a job running before leases
    // existed) counts as run out.
    format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = ?2, lease_until = ?3
             WHERE id = (SELECT id FROM jobs
                         WHERE ((status = 'queued' AND run_at <= ?1)
                                OR (status = 'running' AND coalesce(lease_until, 0) < ?1))
                           AND kind IN ({})
                         ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id, kind, payload, attempts",
        placeholders.join(", ")
    )
}

fn claim(conn: &Sql<'_>, sql: &str, kinds: &[String], lease: Duration) -> Result<Option<Claimed>> {
    let (now, at) = (now_millis(), now_rfc3339());
    let until = now + lease.as_millis() as i64;
    let mut values: Vec<&dyn ToSql> = vec![&now, &at, &until];
    values.extend(kinds.iter().map(|k| k as &dyn ToSql));
    let row = conn.query_opt(sql, &values, |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<u32>(3)?,
        ))
    })?;
    let Some((id, kind, payload, attempts)) = row else {
        return Ok(None);
    };
    Ok(Some(Claimed {
        id,
        kind,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        attempts,
    }))
}

/// Extends a running job's lease; false when the job is no longer this worker's
/// to run (finished elsewhere after its lease ran out).
fn renew(conn: &Sql<'_>, id: &str, lease: Duration) -> Result<bool> {
    let until = now_millis() + lease.as_millis() as i64;
    let n = conn.execute(
        "UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND status = 'running'",
        params![id, until],
    )?;
    Ok(n == 1)
}

fn finish(conn: &Sql<'_>, id: &str) -> Result<()> {
    let now = now_rfc3339();
    conn.execute(
        "UPDATE jobs SET status = 'done', last_error = NULL, updated_at = ?2, finished_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// Records a failure: queued again after the backoff, or dead when out of attempts.
/// Returns whether the job is now dead.
fn fail(conn: &Sql<'_>, id: &str, error: &str, next_run_at: i64) -> Result<bool> {
    let now = now_rfc3339();
    let status: String = conn.query_one(
        "UPDATE jobs SET
                status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                run_at = ?3, last_error = ?2, updated_at = ?4,
                finished_at = CASE WHEN attempts >= max_attempts THEN ?4 ELSE NULL END
             WHERE id = ?1 RETURNING status",
        params![id, error, next_run_at, now],
        |r| r.get(0),
    )?;
    Ok(status == "dead")
}

/// The running worker pool; stopped by [`Workers::shutdown`].
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers for the given handlers. Jobs of kinds nobody handles
    /// (a disabled plugin's) stay queued instead of failing.
    pub fn start<H: JobHost>(
        platform: H,
        handlers: Vec<JobHandler<H>>,
        count: usize,
        poll: Duration,
    ) -> Workers {
        let (stop, stop_rx) = watch::channel(false);
        let handlers: Arc<HashMap<String, JobHandler<H>>> =
            Arc::new(handlers.into_iter().map(|h| (h.kind.clone(), h)).collect());
        let kinds: Arc<[String]> = handlers.keys().cloned().collect();
        let tasks = if handlers.is_empty() {
            Vec::new()
        } else {
            (0..count)
                .map(|_| {
                    tokio::spawn(worker(
                        platform.clone(),
                        handlers.clone(),
                        kinds.clone(),
                        poll,
                        stop_rx.clone(),
                    ))
                })
                .collect()
        };
        Workers { stop, tasks }
    }

    /// Stops claiming new jobs and waits for the running ones to finish.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(true);
        let all = futures_join(self.tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(
                "background jobs still running at shutdown; they will be retried on the next start"
            );
        }
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

async fn worker<H: JobHost>(
    platform: H,
    handlers: Arc<HashMap<String, JobHandler<H>>>,
    kinds: Arc<[String]>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let wake = platform.jobs().wake.clone();
    let claim_sql: Arc<str> = claim_sql(kinds.len()).into();
    loop {
        if *stop.borrow() {
            return;
        }
        let db = platform.db().clone();
        let (k, sql, lease) = (kinds.clone(), claim_sql.clone(), platform.jobs().lease);
        let claimed = db
            .call(move |conn| claim(conn, &sql, &k, lease))
            .await
            .inspect_err(|e| tracing::error!(error = %e, "could not claim a job"))
            .ok()
            .flatten();
        match claimed {
            Some(job) => run_one(&platform, &handlers, job).await,
            None => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

async fn run_one<H: JobHost>(platform: &H, handlers: &HashMap<String, JobHandler<H>>, job: Claimed) {
    let Some(handler) = handlers.get(&job.kind) else {
        return; // unreachable: claims filter on handled kinds
    };
    let ctx = JobContext {
        id: job.id.clone(),
        kind: job.kind.clone(),
        payload: job.payload,
        attempt: job.attempts,
        platform: platform.clone(),
    };
    let started = std::time::Instant::now();
    // Spawned so that a panicking handler fails its job instead of killing the worker.
    let mut running = tokio::spawn((handler.run)(ctx));
    // The lease is renewed while the handler runs, so no other node takes the job.
    let lease = platform.jobs().lease;
    let mut renewals = tokio::time::interval(lease / 3);
    renewals.tick().await;
    let joined = loop {
        tokio::select! {
            joined = &mut running => break joined,
            _ = renewals.tick() => {
                let (db, id) = (platform.db().clone(), job.id.clone());
                match db.call(move |conn| renew(conn, &id, lease)).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = %job.id, "the job's lease ran out and it is no longer this worker's"),
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "could not renew a job's lease"),
                }
            }
        }
    };
    let outcome = match joined {
        Ok(result) => result,
        Err(join) => Err(if join.is_panic() {
            "handler panicked".to_string()
        } else {
            join.to_string()
        }),
    };
    let metrics = platform.metrics();
    let id = job.id.clone();
    let db = platform.db().clone();
    let result = match outcome {
        Ok(()) => {
            metrics.job_finished(&job.kind, "done", started.elapsed());
            let id = id.clone();
            db.call(move |conn| finish(conn, &id)).await
        }
        Err(message) => {
            let next = now_millis() + platform.jobs().backoff(job.attempts).as_millis() as i64;
            let msg = message.clone();
            let job_id = id.clone();
            let dead = db.call(move |conn| fail(conn, &job_id, &msg, next)).await;
            if let Ok(dead) = dead {
                let status = if dead { "dead" } else { "retry" };
                metrics.job_finished(&job.kind, status, started.elapsed());
                tracing::warn!(job = %id, kind = %job.kind, attempt = job.attempts, dead, error = %message, "job failed");
            }
            dead.map(|_| ())
        }
    };
    if let Err(e) = result {
        tracing::error!(job = %id, error = %e, "could not record a job's outcome; it will run again after a restart");
    }
}

#[cfg(test)]
mod postgres_tests {
    use super::*;
    use crate::storage::postgres::bind::PgConn;
    use std::collections::HashSet;

    /// Workers claiming at once from one queue on PostgreSQL, each job once.
    #[test]
    fn concurrent_claims_on_postgresql_hand_each_job_to_one_worker() {
        let Some(db) = crate::storage::postgres::testing::core_database("jobs") else {
            return;
        };
        let jobs = Jobs::new(3, Duration::from_millis(10));
        let owner = Sql::of(&db.owner);
        let total = 200;
        for i in 0..total {
            jobs.enqueue(
                &owner,
                if i % 2 == 0 { "a" } else { "b" },
                &serde_json::json!({ "i": i }),
            )
            .expect("enqueue");
        }
        jobs.enqueue(&owner, "unhandled", &Value::Null).expect("enqueue");
        let kinds: Arc<[String]> = vec!["a".to_string(), "b".to_string()].into();
        let sql: Arc<str> = claim_sql(kinds.len()).into();
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (url, kinds, sql) = (db.system_url.clone(), kinds.clone(), sql.clone());
                std::thread::spawn(move || {
                    let conn = PgConn::connect(&url).expect("system role");
                    let mut mine = Vec::new();
                    while let Some(job) = claim(&Sql::of(&conn), &sql, &kinds, DEFAULT_LEASE).expect("claim")
                    {
                        mine.push(job.id);
                    }
                    mine
                })
            })
            .collect();
        let claimed: Vec<String> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect();
        let distinct: HashSet<&String> = claimed.iter().collect();
        assert_eq!(claimed.len(), total, "every handled job claimed");
        assert_eq!(distinct.len(), total, "and none twice");
        let queued: i64 = owner
            .query_one(
                "SELECT count(*) FROM jobs WHERE status = 'queued'",
                params![],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(queued, 1, "the unhandled kind stays queued");
    }
}
