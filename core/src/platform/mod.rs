//! The platform handle given to plugins: configuration, database, events, jobs,
//! metrics and caches. Cheap to clone; one per process.

pub mod flags;

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use flags::FeatureFlags;

use crate::config::Config;
use crate::error::Result;
use crate::identity::Identity;
use crate::runtime::cache::Cache;
use crate::runtime::events::EventBus;
use crate::runtime::jobs::{self, JobHost, Jobs};
use crate::runtime::mail::Mailer;
use crate::runtime::metrics::Metrics;
use crate::storage::db::{Db, Pools};
use crate::tenancy::api_keys::ApiKeys;
use crate::tenancy::{Catalog, Entitlements, Tenancy};

#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    db: Db,
    root: Db,
    /// How a PostgreSQL deployment logs in (`None` on SQLite), for migrating.
    logins: Option<crate::storage::postgres::logins::Logins>,
    tenancy: Tenancy,
    events: EventBus,
    jobs: Jobs,
    metrics: Metrics,
    identity: Identity,
    mailer: Mailer,
    feature_flags: Option<Arc<dyn FeatureFlags>>,
    started: std::time::Instant,
    plugins: std::sync::OnceLock<Vec<PluginInfo>>,
    /// PostgreSQL's change listener, once serving started it.
    listener: std::sync::OnceLock<Arc<crate::storage::postgres::listen::ListenerState>>,
}

impl Platform {
    pub(crate) fn new(
        config: Config,
        events: EventBus,
        jobs: Jobs,
        entitlements: Arc<dyn Entitlements>,
        feature_flags: Option<Arc<dyn FeatureFlags>>,
        catalog: Catalog,
    ) -> Result<Self> {
        let Pools {
            root,
            system: db,
            tenant,
            logins,
        } = Pools::open(&config)?;
        // Several nodes may share PostgreSQL: each key's limit counts in the database.
        let api_keys = ApiKeys::new(
            config.secret_key.clone(),
            config.api_key_rate_per_minute,
            logins.as_ref().map(|_| db.clone()),
        );
        let tenancy = Tenancy::new(root.clone(), tenant, entitlements, Arc::new(catalog), api_keys);
        // Several nodes may share PostgreSQL: sign-in limits count in the database.
        let identity = Identity::new(&config, logins.as_ref().map(|_| db.clone()));
        let mailer = Mailer::new(&config)?;
        let metrics = Metrics::new();
        metrics.register_cache(identity.session_cache());
        metrics.register_cache(identity.token_cache());
        metrics.register_cache(tenancy.membership_cache());
        metrics.register_cache(tenancy.api_keys().cache());
        // A revoked key, or its suspended org, stops at once on every node: the
        // cache follows the tables (explicit invalidation reaches this node only).
        for table in ["tenant_api_keys", "organizations"] {
            let cache = tenancy.api_keys().cache().clone();
            db.changes().watch(table, move || cache.invalidate_all());
        }
        if logins.is_some() {
            // Several nodes may share PostgreSQL: what one node revokes must reach
            // the others' caches too, which only change notes do (explicit
            // invalidation reaches this node's).
            for table in ["sessions", "users"] {
                let cache = identity.session_cache().clone();
                db.changes().watch(table, move || cache.invalidate_all());
            }
            for table in ["tenant_memberships", "organizations", "tenant_roles"] {
                let cache = tenancy.membership_cache().clone();
                db.changes().watch(table, move || cache.invalidate_all());
            }
        }
        Ok(Platform {
            inner: Arc::new(Inner {
                config,
                db,
                root,
                logins,
                tenancy,
                events,
                jobs,
                metrics,
                identity,
                mailer,
                feature_flags,
                started: std::time::Instant::now(),
                plugins: std::sync::OnceLock::new(),
                listener: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The system database: everything but tenant data (see `db`).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Core's unrestricted handle: migrations and cross-tenant reads of tenancy.
    pub(crate) fn root(&self) -> &Db {
        &self.inner.root
    }

    /// Starts listening for other nodes' changes (PostgreSQL; nothing on SQLite,
    /// whose one process sees every change itself).
    pub(crate) fn start_change_listener(&self) -> Result<()> {
        if let Some(logins) = &self.inner.logins
            && self.inner.listener.get().is_none()
        {
            let state =
                crate::storage::postgres::listen::spawn(logins.owner.clone(), self.inner.db.changes_handle())
                    .map_err(crate::error::Error::internal)?;
            let _ = self.inner.listener.set(state);
        }
        Ok(())
    }

    /// The change listener's state (`None` on SQLite, or before serving).
    pub fn change_listener(&self) -> Option<&crate::storage::postgres::listen::ListenerState> {
        self.inner.listener.get().map(|s| s.as_ref())
    }

    pub(crate) fn postgres_logins(&self) -> Option<&crate::storage::postgres::logins::Logins> {
        self.inner.logins.as_ref()
    }

    /// Organizations, memberships, the tenant context and org-bound handles.
    pub fn tenancy(&self) -> &Tenancy {
        &self.inner.tenancy
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Authentication, sessions and password hashing.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The feature-flag evaluator, when a plugin provides one (see [`Platform::flag`]).
    pub fn feature_flags(&self) -> Option<&Arc<dyn FeatureFlags>> {
        self.inner.feature_flags.as_ref()
    }

    /// Every registered plugin, enabled or not.
    pub fn plugins(&self) -> &[PluginInfo] {
        self.inner.plugins.get().map(Vec::as_slice).unwrap_or_default()
    }

    pub(crate) fn set_plugins(&self, plugins: Vec<PluginInfo>) {
        let _ = self.inner.plugins.set(plugins);
    }

    /// How long the process has been up.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Figures of the three pools: (name, connections, idle, max).
    pub fn pools(&self) -> Vec<(&'static str, u32, u32, u32)> {
        let pools = [
            ("system", &self.inner.db),
            ("root", &self.inner.root),
            ("tenant", self.inner.tenancy.pool()),
        ];
        pools
            .iter()
            .map(|(name, db)| {
                let s = db.state();
                (*name, s.connections, s.idle_connections, db.max_size())
            })
            .collect()
    }

    /// Outgoing email.
    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    /// Creates a cache that is emptied after every commit changing a row of one of
    /// `tables` (see [`crate::storage::changes`]), for values copied from those rows; `ttl`
    /// bounds how long a change made by another process goes unseen.
    pub fn table_cache<K, V>(
        &self,
        name: &'static str,
        capacity: u64,
        ttl: Duration,
        tables: &[&str],
    ) -> Cache<K, V>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let cache = self.cache(name, capacity, Some(ttl));
        self.empty_on_changes(&cache, tables);
        cache
    }

    /// Empties `cache` after every commit changing a row of one of `tables`, for a
    /// cache made before the platform existed (see [`Platform::table_cache`]).
    pub fn empty_on_changes<K, V>(&self, cache: &Cache<K, V>, tables: &[&str])
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        for table in tables {
            let watcher = cache.clone();
            self.inner
                .db
                .changes()
                .watch(table, move || watcher.invalidate_all());
        }
    }

    /// Creates a cache whose size is reported at /metrics.
    pub fn cache<K, V>(&self, name: &'static str, capacity: u64, ttl: Option<Duration>) -> Cache<K, V>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let cache = Cache::new(name, capacity, ttl);
        self.inner.metrics.register_cache(&cache);
        cache
    }
}

/// A job handler as plugins write it: it receives the platform.
pub type JobHandler = jobs::JobHandler<Platform>;

/// What a plugin's job handler receives.
pub type JobContext = jobs::JobContext<Platform>;

impl JobHost for Platform {
    fn db(&self) -> &Db {
        Platform::db(self)
    }

    fn jobs(&self) -> &Jobs {
        Platform::jobs(self)
    }

    fn metrics(&self) -> &Metrics {
        Platform::metrics(self)
    }
}

/// What `plinth plugins` shows.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub enabled: bool,
    /// Loaded from a shared library rather than built in.
    pub external: bool,
    pub migrations: usize,
    pub operations: usize,
}
