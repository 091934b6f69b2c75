//! /api/admin/stats and /api/admin/system: what operators watch.

use plinth_core::identity::auth::StaffAuth;
use plinth_core::runtime::jobs::{self, JobStatus};
use plinth_core::{Error, Result, params};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::common::{AdminApi, AdminTag};

#[derive(Clone)]
pub(crate) struct MonitorApi(pub AdminApi);

#[derive(Object)]
struct DayCount {
    /// YYYY-MM-DD (UTC).
    day: String,
    count: i64,
}

#[derive(Object)]
struct Stats {
    users: i64,
    verified_users: i64,
    disabled_users: i64,
    staff: i64,
    orgs: i64,
    suspended_orgs: i64,
    memberships: i64,
    /// Sign-ups per day over the last 30 days (days without any are omitted).
    signups_per_day: Vec<DayCount>,
    /// Active subscriptions by plan and monthly recurring revenue: null until the
    /// billing plugin is enabled.
    billing: Option<serde_json::Value>,
}

#[derive(Object)]
struct PoolFigures {
    name: String,
    connections: u32,
    idle: u32,
    max: u32,
}

#[derive(Object)]
struct CacheFigures {
    name: String,
    entries: u64,
    loads: u64,
    hit_rate: f64,
}

#[derive(Object)]
struct JobCount {
    status: JobStatus,
    count: i64,
}

#[derive(Object)]
struct JobFailure {
    kind: String,
    status: JobStatus,
    attempts: i64,
    last_error: String,
    updated_at: String,
}

#[derive(Object)]
struct PluginFigures {
    name: String,
    version: String,
    enabled: bool,
}

#[derive(Object)]
struct SystemInfo {
    version: String,
    uptime_seconds: u64,
    database_path: String,
    database_bytes: u64,
    wal_bytes: u64,
    pools: Vec<PoolFigures>,
    caches: Vec<CacheFigures>,
    jobs: Vec<JobCount>,
    recent_job_failures: Vec<JobFailure>,
    plugins: Vec<PluginFigures>,
}

#[OpenApi(tag = "AdminTag::System")]
impl MonitorApi {
    /// Platform stats
    #[oai(path = "/api/admin/stats", method = "get", operation_id = "adminStats")]
    async fn stats(&self, _auth: StaffAuth) -> Result<Json<Stats>> {
        let (orgs, suspended_orgs, memberships) = self.0.platform.tenancy().counts().await?;
        let since = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        let since = format!(
            "{:04}-{:02}-{:02}",
            since.year(),
            since.month() as u8,
            since.day()
        );
        let (users, verified, disabled, staff, days) = self
            .0
            .platform
            .db()
            .call(move |conn| {
                let sql = *conn;
                let counts: (i64, i64, i64, i64) = sql.query_one(
                    "SELECT count(*), count(email_verified_at), count(disabled_at), coalesce(sum(is_platform_admin), 0)
                     FROM users",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                let days = sql.query_all(
                    "SELECT substr(created_at, 1, 10) AS day, count(*) FROM users
                     WHERE created_at >= ?1 GROUP BY day ORDER BY day",
                    params![since],
                    |r| Ok(DayCount { day: r.get(0)?, count: r.get(1)? }),
                )?;
                Ok((counts.0, counts.1, counts.2, counts.3, days))
            })
            .await?;
        Ok(Json(Stats {
            users,
            verified_users: verified,
            disabled_users: disabled,
            staff,
            orgs,
            suspended_orgs,
            memberships,
            signups_per_day: days,
            billing: None,
        }))
    }

    /// System health
    #[oai(path = "/api/admin/system", method = "get", operation_id = "adminSystem")]
    async fn system(&self, _auth: StaffAuth) -> Result<Json<SystemInfo>> {
        let platform = &self.0.platform;
        let sizes = {
            let db = platform.db().clone();
            tokio::task::spawn_blocking(move || db.sizes())
        };
        let (counts, failures) = platform
            .db()
            .call(|conn| {
                let counts = jobs::counts(conn)?;
                let failures = conn.query_all(
                    "SELECT kind, status, attempts, last_error, updated_at FROM jobs
                     WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 20",
                    params![],
                    |r| {
                        let status: String = r.get(1)?;
                        Ok(JobFailure {
                            kind: r.get(0)?,
                            status: JobStatus::parse(&status)
                                .ok_or_else(|| Error::internal(format!("job status `{status}`")))?,
                            attempts: r.get(2)?,
                            last_error: r.get(3)?,
                            updated_at: r.get(4)?,
                        })
                    },
                )?;
                Ok((counts, failures))
            })
            .await?;
        let (database_bytes, wal_bytes) = sizes.await.map_err(Error::from)??;
        let jobs: Vec<JobCount> = JobStatus::ALL
            .into_iter()
            .map(|status| JobCount {
                status,
                count: counts.get(status.as_str()).copied().unwrap_or(0),
            })
            .collect();
        Ok(Json(SystemInfo {
            version: plinth_core::VERSION.into(),
            uptime_seconds: platform.uptime().as_secs(),
            database_path: platform.db().describe(),
            database_bytes: database_bytes.max(0) as u64,
            wal_bytes: wal_bytes.max(0) as u64,
            pools: platform
                .pools()
                .into_iter()
                .map(|(name, connections, idle, max)| PoolFigures {
                    name: name.into(),
                    connections,
                    idle,
                    max,
                })
                .collect(),
            caches: platform
                .metrics()
                .caches()
                .into_iter()
                .map(|(name, f)| CacheFigures {
                    name: name.into(),
                    entries: f.entries,
                    loads: f.loads,
                    hit_rate: f.hit_rate,
                })
                .collect(),
            jobs,
            recent_job_failures: failures,
            plugins: platform
                .plugins()
                .iter()
                .map(|p| PluginFigures {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    enabled: p.enabled,
                })
                .collect(),
        }))
    }
}
