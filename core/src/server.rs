//! Assembly of the application from core and the registered plugins, and serving it.
//!
//! [`App::new`] does no I/O: it checks the plugin list, collects migrations, event
//! subscriptions and job handlers, and merges routes and OpenAPI fragments (so
//! `plinth openapi` never touches a database). [`App::migrate`], [`App::seed`] and
//! [`App::serve`] do the work.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use poem::listener::TcpAcceptor;
use poem::{Response, Route, RouteMethod, Server, endpoint::make_sync};
use serde_json::Value;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::external::ExternalPlugin;
use crate::http::openapi;
use crate::http::ops::OpsApi;
use crate::http::{PipelineOptions, pipeline};
use crate::identity::api::{AuthApi, password_reset_job};
use crate::platform::JobHandler;
use crate::platform::Platform;
use crate::plugin::{ApiPart, Plugin, PluginInfo, RouteTable};
use crate::runtime::events::EventBusBuilder;
use crate::runtime::jobs::{Jobs, Workers};
use crate::runtime::schedule::{FirstTurn, run_every};
use crate::seed::SeedContext;
use crate::seed::{SeedOptions, SeedReport, refuse_in_production, seed_core};
use crate::storage::isolation::{CORE_TENANT_TABLES, TenantTable};
use crate::storage::migrations::{self, Migration};
use crate::tenancy::{Catalog, Unlimited};

/// Owner name of core's migrations and API; no plugin may take it.
pub const CORE: &str = "core";

pub struct App {
    platform: Platform,
    enabled: Vec<Arc<dyn Plugin>>,
    migrations: Arc<Vec<Migration>>,
    /// The tenant tables of core and the enabled plugins.
    tenant_tables: Vec<TenantTable>,
    spec: Value,
    routes: RouteTable,
    jobs: Vec<JobHandler>,
    schedules: Vec<crate::plugin::Schedule>,
    /// Held from [`App::claim_database`] (or the start of serving) to the end.
    server_lock: Option<crate::storage::backup::ServerLock>,
}

impl App {
    /// Assembles core and the given plugins, in order, leaving out the ones the
    /// configuration disables.
    pub fn new(config: Config, plugins: Vec<Arc<dyn Plugin>>) -> Result<App> {
        let mut names = HashSet::from([CORE]);
        for plugin in &plugins {
            let name = plugin.name();
            let well_formed = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !well_formed {
                return Err(Error::internal(format!(
                    "plugin name `{name}` must be lowercase letters, digits, - or _"
                )));
            }
            if !names.insert(name) {
                return Err(Error::internal(format!("two plugins are named `{name}`")));
            }
        }
        // External plugins, from shared libraries; a clash with a built-in skips them.
        let external: Vec<Arc<ExternalPlugin>> = crate::external::load_dir(&config.plugin_dir)
            .into_iter()
            .filter(|p| {
                let clash = names.contains(p.name());
                if clash {
                    tracing::error!(
                        name = p.name(),
                        "external plugin skipped: a built-in plugin has its name"
                    );
                }
                !clash
            })
            .collect();
        for disabled in &config.disabled_plugins {
            let external_name = external.iter().any(|p| p.name() == disabled);
            if (!names.contains(disabled.as_str()) && !external_name) || disabled == CORE {
                let known: Vec<&str> = plugins
                    .iter()
                    .map(|p| p.name())
                    .chain(external.iter().map(|p| p.name()))
                    .collect();
                return Err(Error::internal(format!(
                    "PLINTH_DISABLED_PLUGINS names `{disabled}`, which is not a plugin (plugins: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        let external_enabled: Vec<Arc<ExternalPlugin>> = external
            .iter()
            .filter(|p| !config.plugin_disabled(p.name()))
            .cloned()
            .collect();
        let (enabled, _disabled): (Vec<_>, Vec<_>) = plugins
            .iter()
            .cloned()
            .partition(|p| !config.plugin_disabled(p.name()));

        let mut all_migrations = migrations::core_migrations()?;
        let mut tenant_tables = CORE_TENANT_TABLES.to_vec();
        let mut migration_counts = HashMap::new();
        for plugin in &plugins {
            let own = plugin.migrations()?;
            if let Some(foreign) = own.iter().find(|m| m.owner != plugin.name()) {
                return Err(Error::internal(format!(
                    "plugin `{}` brings migration {} owned by someone else",
                    plugin.name(),
                    foreign.id()
                )));
            }
            migration_counts.insert(plugin.name(), own.len());
            if !config.plugin_disabled(plugin.name()) {
                all_migrations.extend(own);
                tenant_tables.extend(plugin.tenant_tables());
            }
        }

        for plugin in &external_enabled {
            all_migrations.extend(plugin.migrations());
            tenant_tables.extend(plugin.tenant_tables());
        }
        let migrations = Arc::new(all_migrations);

        let mut bus = EventBusBuilder::default();
        for plugin in &enabled {
            plugin.subscribe(bus.for_plugin(plugin.name()));
        }
        let jobs = Jobs::new(config.job_max_attempts, config.job_backoff_base).with_lease(config.job_lease);
        let entitlements = enabled
            .iter()
            .find_map(|p| p.entitlements())
            .unwrap_or_else(|| Arc::new(Unlimited));
        let feature_flags = enabled.iter().find_map(|p| p.feature_flags());
        let catalog = Catalog::new(
            enabled
                .iter()
                .flat_map(|p| p.permissions())
                .chain(external_enabled.iter().flat_map(|p| p.permissions())),
        )?;
        for plugin in &external_enabled {
            if let Some(unknown) = plugin.checked_permissions().find(|p| catalog.get(p).is_none()) {
                return Err(Error::internal(format!(
                    "external plugin `{}` checks `{unknown}`, which no enabled plugin declares",
                    plugin.name()
                )));
            }
        }
        let platform = Platform::new(
            config,
            bus.build(jobs.clone()),
            jobs,
            entitlements,
            feature_flags,
            catalog,
        )?;

        let mut parts: Vec<(String, ApiPart)> = vec![
            (
                CORE.to_string(),
                ApiPart::new(OpsApi {
                    platform: platform.clone(),
                    migrations: migrations.clone(),
                })?,
            ),
            (CORE.to_string(), ApiPart::new(AuthApi::new(platform.clone()))?),
        ];
        let mut operation_counts = HashMap::new();
        for plugin in &enabled {
            if let Some(part) = plugin.api(&platform)? {
                operation_counts.insert(plugin.name().to_string(), count_operations(&part.spec));
                parts.push((plugin.name().to_string(), part));
            }
        }
        for plugin in &external_enabled {
            let (spec, routes) = crate::external::api(plugin, &platform);
            operation_counts.insert(plugin.name().to_string(), count_operations(&spec));
            parts.push((plugin.name().to_string(), ApiPart { spec, routes }));
        }
        let spec = openapi::merge(parts.iter().map(|(owner, part)| (owner.as_str(), &part.spec)))
            .map_err(Error::internal)?;

        let mut routes = RouteTable::new();
        for (_, part) in parts {
            for (path, methods) in part.routes {
                let entry = routes.entry(path).or_default();
                for (method, ep) in methods {
                    // The spec merge already refused duplicate routes.
                    entry.insert(method, ep);
                }
            }
        }

        let mut handlers: Vec<JobHandler> = vec![platform.mailer().job(), password_reset_job()];
        for plugin in &enabled {
            for handler in plugin.jobs() {
                if handlers.iter().any(|h| h.kind == handler.kind) {
                    return Err(Error::internal(format!(
                        "two job handlers for kind `{}` (the second from `{}`)",
                        handler.kind,
                        plugin.name()
                    )));
                }
                handlers.push(handler);
            }
        }
        for plugin in &external_enabled {
            handlers.extend(crate::external::jobs(plugin));
        }

        let infos: Vec<PluginInfo> = plugins
            .iter()
            .map(|p| PluginInfo {
                name: p.name().to_string(),
                version: p.version().to_string(),
                description: p.description().to_string(),
                enabled: !platform.config().plugin_disabled(p.name()),
                external: false,
                migrations: migration_counts.get(p.name()).copied().unwrap_or(0),
                operations: operation_counts.get(p.name()).copied().unwrap_or(0),
            })
            .chain(external.iter().map(|p| PluginInfo {
                name: p.name().to_string(),
                version: p.version().to_string(),
                description: p.description().to_string(),
                enabled: !platform.config().plugin_disabled(p.name()),
                external: true,
                migrations: p.migrations().len(),
                operations: operation_counts.get(p.name()).copied().unwrap_or(0),
            }))
            .collect();

        platform.set_plugins(infos);
        let schedules = enabled.iter().flat_map(|p| p.schedules()).collect();
        Ok(App {
            platform,
            enabled,
            migrations,
            tenant_tables,
            spec,
            routes,
            jobs: handlers,
            schedules,
            server_lock: None,
        })
    }

    /// Claims the database for this server: one `plinth serve` per SQLite file, and
    /// `plinth restore` refuses while it is held. Taken before migrating, so a
    /// second server started at the same moment stops at once, naming the lock.
    /// On PostgreSQL there is nothing to claim: several servers may share it.
    pub fn claim_database(&mut self) -> Result<()> {
        if self.server_lock.is_none()
            && let Some(path) = self.platform.config().sqlite_path()
        {
            self.create_database_folder()?;
            self.server_lock = Some(crate::storage::backup::lock_server(path)?);
        }
        Ok(())
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The merged OpenAPI document.
    pub fn spec(&self) -> &Value {
        &self.spec
    }

    pub fn plugins(&self) -> &[PluginInfo] {
        self.platform.plugins()
    }

    /// Every migration of core and the enabled plugins.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Applies pending migrations (blocking). On SQLite, creates the database file
    /// and its folder when missing; on PostgreSQL, creates the serving roles when
    /// missing and the URL's role may (see `storage::postgres::logins`).
    pub fn migrate(&self) -> Result<Vec<Migration>> {
        crate::storage::db::off_runtime(|| self.migrate_here())
    }

    fn migrate_here(&self) -> Result<Vec<Migration>> {
        match self.platform.postgres_logins() {
            Some(logins) => {
                let conn = crate::storage::postgres::bind::PgConn::connect_with(&logins.owner)?;
                crate::storage::postgres::migrate::run_serving(
                    &conn,
                    &self.migrations,
                    &self.tenant_tables,
                    logins,
                )
            }
            None => {
                self.create_database_folder()?;
                let sqlite = self
                    .platform
                    .root()
                    .sqlite()
                    .ok_or_else(|| Error::internal("no SQLite pool"))?;
                let conn = sqlite.conn()?;
                migrations::run(&conn, &self.migrations, &self.tenant_tables)
            }
        }
    }

    /// Applies the migrations of core and the enabled plugins to the PostgreSQL
    /// database at `url` (blocking; not from async code), isolating the declared
    /// tenant tables and granting the system and tenant roles what they may do.
    /// Until `DATABASE_URL=postgres://` serves, this is how the schema reaches
    /// PostgreSQL and is checked there.
    pub fn migrate_postgres(
        &self,
        url: &str,
        system_role: &str,
        tenant_role: &str,
    ) -> Result<Vec<Migration>> {
        let conn = crate::storage::postgres::bind::PgConn::connect(url)?;
        let roles = crate::storage::postgres::roles::Roles {
            system: system_role,
            tenant: tenant_role,
        };
        crate::storage::postgres::migrate::run(&conn, &self.migrations, &self.tenant_tables, &roles)
    }

    fn create_database_folder(&self) -> Result<()> {
        if let Some(parent) = self
            .platform
            .db()
            .path()
            .and_then(std::path::Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::internal(format!(
                    "cannot create the database folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
        Ok(())
    }

    /// Seeds demo or load-test data in one transaction (blocking).
    pub fn seed(&self, options: &SeedOptions) -> Result<SeedReport> {
        refuse_in_production(self.platform.config().is_production())?;
        crate::storage::db::off_runtime(|| {
            self.platform.root().write_rebinding(|tx, rebind| {
                let ctx = SeedContext::new(*tx, rebind);
                let report = seed_core(&ctx, options)?;
                for plugin in &self.enabled {
                    plugin.seed(&ctx, options)?;
                }
                Ok(report)
            })
        })
    }

    /// Copies this app's SQLite database into `target`'s PostgreSQL database
    /// (blocking): refuses a target that holds anything, migrates both, then
    /// copies every row in one transaction. Returns (table, rows) in copy order.
    pub fn copy_into(&self, target: &App) -> Result<Vec<(String, u64)>> {
        if self.platform.db().engine() != crate::storage::EngineKind::Sqlite {
            return Err(Error::invalid(
                "DATABASE_URL",
                "plinth db copy reads a SQLite database (DATABASE_URL=sqlite://PATH)",
            ));
        }
        if target.platform.db().engine() != crate::storage::EngineKind::Postgres {
            return Err(Error::invalid("to", "the target must be a postgres:// URL"));
        }
        crate::storage::db::off_runtime(|| {
            let relations = target
                .platform
                .root()
                .blocking(crate::storage::postgres::copy::relations)?;
            if relations > 0 {
                return Err(Error::Conflict(format!(
                    "the target database is not empty ({relations} tables, views or sequences): \
                     plinth db copy fills an empty database only"
                )));
            }
            self.migrate_here()?;
            target.migrate_here()?;
            self.platform.root().blocking(|source| {
                target
                    .platform
                    .root()
                    .write_blocking(|sql| crate::storage::postgres::copy::copy(source, sql))
            })
        })
    }

    /// Walks the audit chain (blocking).
    pub fn verify_audit(&self) -> Result<crate::audit::Verification> {
        crate::storage::db::off_runtime(|| self.platform.root().blocking(|conn| crate::audit::verify(conn)))
    }

    /// Archives audit entries older than `days` to a new NDJSON file in the archive
    /// folder and prunes them (blocking). Returns how many moved and where.
    pub fn archive_audit(&self, days: u32) -> Result<(usize, std::path::PathBuf)> {
        crate::storage::db::off_runtime(|| archive_audit(&self.platform, days))
    }

    /// Serves HTTP on `acceptor` until `shutdown` resolves, then lets in-flight
    /// requests and jobs finish (within PLINTH_SHUTDOWN_TIMEOUT_SECS).
    /// Migrations must have been applied.
    pub async fn serve(
        mut self,
        acceptor: TcpAcceptor,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let platform = self.platform.clone();
        let config = platform.config().clone();
        self.claim_database()?;
        let _lock = self.server_lock.take();
        platform.start_change_listener()?;
        if let (Some(dir), Some(db)) = (config.backup_dir.clone(), config.sqlite_path()) {
            let (db, every, keep) = (db.to_path_buf(), config.backup_interval, config.backup_keep);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let (db, dir) = (db.clone(), dir.clone());
                    match tokio::task::spawn_blocking(move || {
                        crate::storage::backup::scheduled(&db, &dir, keep)
                    })
                    .await
                    {
                        Ok(Ok(file)) => tracing::info!(file = %file.display(), "backup taken"),
                        Ok(Err(e)) => tracing::error!(error = %e, "scheduled backup failed"),
                        Err(e) => tracing::error!(error = %e, "scheduled backup failed"),
                    }
                }
            });
        }
        if let Some(sqlite) = platform.db().sqlite() {
            let mut checkpointer = crate::storage::sqlite::db::Checkpointer::new(sqlite.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(std::time::Duration::from_millis(250));
                loop {
                    ticks.tick().await;
                    if let Err(e) = checkpointer.tick().await {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            });
        }
        // One server per SQLite file: what it left running is nobody's. On
        // PostgreSQL other nodes may be running those jobs; leases decide.
        let recovered = if platform.db().engine() == crate::storage::EngineKind::Sqlite {
            platform
                .db()
                .call(|conn| crate::runtime::jobs::recover(conn))
                .await?
        } else {
            0
        };
        if recovered > 0 {
            tracing::info!(
                recovered,
                "queued again the jobs interrupted by the last shutdown"
            );
        }
        let identity = platform.identity().clone();
        tokio::spawn(async move { identity.warm_up().await });
        // API keys' last use is gathered in memory and written once a minute by
        // each node, not once per request.
        {
            let p = platform.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
                every.tick().await;
                loop {
                    every.tick().await;
                    if let Err(e) = p.tenancy().api_keys().flush_last_used(p.root()).await {
                        tracing::warn!(error = %e, "could not record API keys' last use");
                    }
                }
            });
        }
        // Periodic work takes its turn in the database, so with several nodes each
        // period's run happens on one of them.
        if let Some(days) = config.audit_retention_days {
            let p = platform.clone();
            tokio::spawn(run_every(
                platform.db().clone(),
                "core.audit_retention",
                std::time::Duration::from_secs(3600),
                FirstTurn::Now,
                move || {
                    let q = p.clone();
                    async move {
                        match tokio::task::spawn_blocking(move || archive_audit(&q, days)).await {
                            Ok(Ok((0, _))) => {}
                            Ok(Ok((n, file))) => {
                                tracing::info!(archived = n, file = %file.display(), "audit entries archived")
                            }
                            Ok(Err(e)) => tracing::error!(error = %e, "audit retention failed"),
                            Err(e) => tracing::error!(error = %e, "audit retention failed"),
                        }
                    }
                },
            ));
        }
        for schedule in self.schedules.clone() {
            let p = platform.clone();
            let kind = schedule.kind;
            tokio::spawn(run_every(
                platform.db().clone(),
                kind,
                schedule.every,
                FirstTurn::AfterOnePeriod,
                move || {
                    let p = p.clone();
                    async move {
                        let jobs = p.jobs().clone();
                        let queued = p
                            .db()
                            .write(move |tx| jobs.enqueue_unique(tx, kind, &serde_json::json!({})))
                            .await;
                        if let Err(e) = queued {
                            tracing::error!(kind, error = %e, "could not enqueue a scheduled job");
                        }
                    }
                },
            ));
        }
        let workers = Workers::start(
            platform.clone(),
            self.jobs,
            config.job_workers,
            config.job_poll_interval,
        );

        // Rendered once; each response shares the bytes.
        let spec_json = Bytes::from(openapi::to_pretty_json(&self.spec));
        let docs_html = Bytes::from(openapi::swagger_ui_html(&self.spec));
        let mut route = Route::new();
        for (path, methods) in self.routes {
            let endpoint = methods
                .into_iter()
                .fold(RouteMethod::new(), |rm, (method, ep)| rm.method(method, ep));
            route = route.at(path, endpoint);
        }
        let route = route
            .at(
                "/api/openapi.json",
                poem::get(make_sync(move |_| {
                    Response::builder()
                        .content_type("application/json")
                        .body(spec_json.clone())
                })),
            )
            .at(
                "/docs",
                poem::get(make_sync(move |_| {
                    Response::builder()
                        .content_type("text/html; charset=utf-8")
                        .body(docs_html.clone())
                })),
            );

        let app = pipeline(
            route,
            PipelineOptions {
                data: platform.clone(),
                metrics: platform.metrics().clone(),
                app_url: config.app_url.clone(),
                body_limit: config.body_limit,
                production: config.is_production(),
                trusted_proxies: config.trusted_proxies.clone(),
                max_in_flight: config.max_in_flight,
            },
        );
        // The stall guard closes idle and stalled connections alike (see stall.rs).
        let acceptor = crate::runtime::stall::StallGuard::new(acceptor, config.idle_timeout);
        let served = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(config.shutdown_timeout))
            .await;
        workers.shutdown(config.shutdown_timeout).await;
        tracing::info!("server stopped");
        served.map_err(Error::internal)
    }
}

fn archive_audit(platform: &Platform, days: u32) -> Result<(usize, std::path::PathBuf)> {
    let dir = platform.config().audit_archive_dir.clone();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    let cutoff = cutoff
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(Error::internal)?;
    let file = dir.join(format!("audit-{}.ndjson", uuid::Uuid::now_v7()));
    let n = platform
        .root()
        .write_blocking(|tx| crate::audit::archive_before(tx, &cutoff, &file))?;
    if n == 0 {
        let _ = std::fs::remove_file(&file);
    }
    Ok((n, file))
}

fn count_operations(spec: &Value) -> usize {
    spec.get("paths")
        .and_then(Value::as_object)
        .map(|paths| {
            paths
                .values()
                .filter_map(Value::as_object)
                .map(|item| item.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// Binds a TCP listener (port 0 picks a free port; see `local_addr`).
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpAcceptor> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr}: {e}")))?;
    TcpAcceptor::from_tokio(listener).map_err(Error::internal)
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("plugins", &self.platform.plugins())
            .finish_non_exhaustive()
    }
}
