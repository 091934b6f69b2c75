//! Operations endpoints: liveness, readiness and metrics, for load balancers,
//! orchestrators and Prometheus. They live outside /api and need no user session.

use std::sync::Arc;

use poem::Request;
use poem::web::headers::{Authorization, HeaderMapExt, authorization::Bearer};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use subtle::ConstantTimeEq;

use crate::error::{Problem, problem};
use crate::platform::Platform;
use crate::storage::migrations::{Migration, all_applied};

#[derive(Tags)]
enum OpsTag {
    /// Health, readiness and metrics for operators.
    Ops,
}

#[derive(Object)]
struct Health {
    /// Always `ok` when the process answers.
    status: CheckStatus,
}

/// The one value of a passing check (a failing one answers a problem instead).
#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum CheckStatus {
    Ok,
}

/// The one value of a ready server (otherwise /readyz answers 503).
#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum ReadyStatus {
    Ready,
}

#[derive(Object)]
struct Readiness {
    status: ReadyStatus,
    /// A query succeeded.
    database: CheckStatus,
    /// Every migration of this build is applied.
    migrations: CheckStatus,
    /// Other processes' changes reach this node's caches (PostgreSQL: its LISTEN
    /// connection is up; SQLite: one process sees every change itself).
    changes: CheckStatus,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Ready to serve traffic.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// Not ready: the database is unreachable or migrations are pending.
    #[oai(status = 503, content_type = "application/problem+json")]
    NotReady(Json<Problem>),
}

#[derive(ApiResponse)]
enum MetricsResponse {
    /// Metrics in the OpenMetrics text format.
    #[oai(
        status = 200,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )]
    Ok(PlainText<String>),
    /// PLINTH_METRICS_TOKEN is set and the request did not carry it.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The database could not be read for the job figures.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

#[derive(Clone)]
pub(crate) struct OpsApi {
    pub platform: Platform,
    pub migrations: Arc<Vec<Migration>>,
}

#[OpenApi(tag = "OpsTag::Ops")]
impl OpsApi {
    /// Liveness
    ///
    /// Answers while the process is up; it checks nothing else.
    #[oai(path = "/healthz", method = "get", operation_id = "getHealth")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: CheckStatus::Ok,
        })
    }

    /// Readiness
    ///
    /// Ready when the database answers a query and every migration is applied.
    #[oai(path = "/readyz", method = "get", operation_id = "getReadiness")]
    async fn readyz(&self) -> ReadyResponse {
        let migrations = self.migrations.clone();
        let check = self.platform.db().call(move |conn| {
            conn.query_one("SELECT 1", crate::params![], |r| r.get::<i64>(0))?;
            all_applied(conn, &migrations)
        });
        let not_ready = |detail: String| {
            ReadyResponse::NotReady(Json(problem(
                poem::http::StatusCode::SERVICE_UNAVAILABLE,
                detail,
                None,
            )))
        };
        let listening = self.platform.db().engine() == crate::storage::EngineKind::Sqlite
            || self.platform.change_listener().is_some_and(|l| l.listening());
        match check.await {
            Ok(true) if !listening => not_ready(
                "the change listener is not connected (reconnecting): this node's caches may miss other nodes' changes"
                    .into(),
            ),
            Ok(true) => ReadyResponse::Ready(Json(Readiness {
                status: ReadyStatus::Ready,
                database: CheckStatus::Ok,
                migrations: CheckStatus::Ok,
                changes: CheckStatus::Ok,
            })),
            Ok(false) => not_ready("migrations are pending; run `plinth migrate`".into()),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                not_ready("the database is not reachable".into())
            }
        }
    }

    /// Metrics
    ///
    /// Request counts and latency histograms by route and status, pool, cache and job
    /// figures. When PLINTH_METRICS_TOKEN is set, send it as a bearer token.
    #[oai(path = "/metrics", method = "get", operation_id = "getMetrics")]
    async fn metrics(&self, req: &Request) -> MetricsResponse {
        if let Some(expected) = &self.platform.config().metrics_token {
            let given = req
                .headers()
                .typed_get::<Authorization<Bearer>>()
                .map(|a| a.token().to_string())
                .unwrap_or_default();
            if !bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
                return MetricsResponse::Unauthorized(Json(problem(
                    poem::http::StatusCode::UNAUTHORIZED,
                    "a valid metrics token is required",
                    None,
                )));
            }
        }
        let jobs = self
            .platform
            .db()
            .call(|conn| {
                let users: (i64, i64, i64, i64) = conn.query_one(
                    "SELECT count(*), count(email_verified_at), count(disabled_at), coalesce(sum(is_platform_admin), 0)
                     FROM users",
                    crate::params![],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                Ok((crate::runtime::jobs::counts(conn)?, users))
            })
            .await;
        let orgs = self.platform.tenancy().counts().await;
        match jobs.and_then(|j| orgs.map(|o| (j, o))) {
            Ok(((jobs, users), orgs)) => {
                let mut jobs: Vec<(&str, i64)> = jobs.into_iter().collect();
                jobs.sort();
                let db = self.platform.db();
                let sizes = {
                    let db = db.clone();
                    tokio::task::spawn_blocking(move || db.sizes())
                        .await
                        .map_err(crate::error::Error::from)
                        .and_then(|r| r)
                        .unwrap_or_default()
                };
                let figures = [
                    ("users", users.0),
                    ("users_verified", users.1),
                    ("users_disabled", users.2),
                    ("staff", users.3),
                    ("orgs", orgs.0),
                    ("orgs_suspended", orgs.1),
                    ("memberships", orgs.2),
                    ("uptime_seconds", self.platform.uptime().as_secs() as i64),
                    ("database_bytes", sizes.0),
                    ("wal_bytes", sizes.1),
                    (
                        "change_listener_up",
                        i64::from(self.platform.change_listener().is_some_and(|l| l.listening())),
                    ),
                    (
                        "change_listener_losses",
                        self.platform.change_listener().map_or(0, |l| l.losses() as i64),
                    ),
                    (
                        "change_notes_received",
                        self.platform.change_listener().map_or(0, |l| l.received() as i64),
                    ),
                ];
                // Both pools that write: system and tenant.
                let (system, tenant) = (db.group_commits(), self.platform.tenancy().pool().group_commits());
                let group_commits = (system.0 + tenant.0, system.1 + tenant.1);
                let text =
                    self.platform
                        .metrics()
                        .render(db.state(), db.max_size(), group_commits, &jobs, &figures);
                MetricsResponse::Ok(PlainText(text))
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics could not read job figures");
                MetricsResponse::Unavailable(Json(problem(
                    poem::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the database is not reachable",
                    None,
                )))
            }
        }
    }
}
