//! The database handle every area holds (`Platform::db`, the tenant and root pools
//! behind tenancy): one type over both engines' pools, so nothing above storage
//! knows which engine serves it.
//!
//! The three pools and their rules are the same on both engines:
//! - `Root` (core only): migrations, and the cross-tenant reads of tenancy.
//! - `System` ([`crate::Platform::db`], for everyone): non-tenant data.
//! - `Tenant` (through [`crate::tenancy::TenantDb`] only): bound to one org at a
//!   time, reaching tenant data only through the views of that org.
//!
//! SQLite enforces them with authorizers on its connections; PostgreSQL with the
//! role each pool logs in as and row-level security (see `storage::postgres`).
//! Blocking work runs on tokio's blocking pool on both.

use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use super::EngineKind;
use super::changes::Changes;
use super::postgres::logins::Logins;
use super::postgres::pool::PgDb;
use super::sql::Sql;
use super::sqlite::db::SqliteDb;
use crate::config::{Config, Database};
use crate::error::Result;

/// Which rules a pool's connections run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Root,
    System,
    Tenant,
}

/// Root connections serve migrations, seeding and membership lookups only.
const ROOT_POOL_SIZE: u32 = 4;

/// A pool of one engine; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    changes: Arc<Changes>,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

/// The three pools of one database.
pub(crate) struct Pools {
    pub root: Db,
    pub system: Db,
    pub tenant: Db,
    /// The PostgreSQL logins, for migrating (`None` on SQLite).
    pub logins: Option<Logins>,
}

impl Pools {
    /// Opens the pools `config` names without connecting: connections open on
    /// first use, so commands that never need the database never touch it. The
    /// pools share one set of change notes, so a commit through any is seen.
    pub(crate) fn open(config: &Config) -> Result<Self> {
        let changes = Arc::new(Changes::default());
        let size = config.db_pool_size;
        let db = |pool| Db {
            pool,
            changes: changes.clone(),
        };
        Ok(match &config.database {
            Database::Sqlite(path) => {
                let open = |size, kind| db(Pool::Sqlite(SqliteDb::open(path, size, kind, changes.clone())));
                Pools {
                    root: open(ROOT_POOL_SIZE, Kind::Root),
                    system: open(size, Kind::System),
                    tenant: open(size, Kind::Tenant),
                    logins: None,
                }
            }
            Database::Postgres(pg) => {
                let logins = Logins::from_config(pg, &config.secret_key)?;
                let open = |size, kind| db(Pool::Postgres(PgDb::login(&logins, kind, size, changes.clone())));
                Pools {
                    root: open(ROOT_POOL_SIZE, Kind::Root),
                    system: open(size, Kind::System),
                    tenant: open(size, Kind::Tenant),
                    logins: Some(logins),
                }
            }
        })
    }
}

impl Db {
    /// An unrestricted handle outside any server, for command-line tools and
    /// tests (what `open_connection` is to a SQLite file): core's root rules, one
    /// connection at a time.
    pub fn open_root(config: &Config) -> Result<Db> {
        let mut config = config.clone();
        config.db_pool_size = 1;
        Ok(Pools::open(&config)?.root)
    }

    pub fn engine(&self) -> EngineKind {
        match self.pool {
            Pool::Sqlite(_) => EngineKind::Sqlite,
            Pool::Postgres(_) => EngineKind::Postgres,
        }
    }

    /// The watched tables of this database (see [`crate::storage::changes`]).
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    pub(crate) fn changes_handle(&self) -> Arc<Changes> {
        self.changes.clone()
    }

    /// The SQLite file, when the engine is SQLite.
    pub fn path(&self) -> Option<&Path> {
        self.sqlite().map(SqliteDb::path)
    }

    /// Where the data lives, for operators: the SQLite file, or the PostgreSQL
    /// server and database (no credentials).
    pub fn describe(&self) -> String {
        match &self.pool {
            Pool::Sqlite(db) => db.path().display().to_string(),
            Pool::Postgres(db) => db.address().to_string(),
        }
    }

    /// The database's size and its write-ahead log's in bytes (SQLite's file and
    /// WAL file; PostgreSQL's database, whose WAL is the server's, not ours).
    pub fn sizes(&self) -> Result<(i64, i64)> {
        match &self.pool {
            Pool::Sqlite(db) => {
                let size = |suffix: &str| {
                    let mut path = db.path().as_os_str().to_owned();
                    path.push(suffix);
                    std::fs::metadata(path).map_or(0, |m| m.len() as i64)
                };
                Ok((size(""), size("-wal")))
            }
            Pool::Postgres(db) => db.blocking(|sql| {
                let size = sql.query_one(
                    "SELECT pg_database_size(current_database())",
                    crate::params![],
                    |r| r.get(0),
                )?;
                Ok((size, 0))
            }),
        }
    }

    /// The SQLite pool, for what only that engine does (checkpoints, backups).
    pub(crate) fn sqlite(&self) -> Option<&SqliteDb> {
        match &self.pool {
            Pool::Sqlite(db) => Some(db),
            Pool::Postgres(_) => None,
        }
    }

    /// Pool figures for /metrics.
    pub fn state(&self) -> r2d2::State {
        match &self.pool {
            Pool::Sqlite(db) => db.state(),
            Pool::Postgres(db) => db.state(),
        }
    }

    pub fn max_size(&self) -> u32 {
        match &self.pool {
            Pool::Sqlite(db) => db.max_size(),
            Pool::Postgres(db) => db.max_size(),
        }
    }

    /// Group-committed transactions and the writers they answered, since start
    /// (SQLite's; PostgreSQL commits each writer on its own).
    pub fn group_commits(&self) -> (u64, u64) {
        self.sqlite().map_or((0, 0), SqliteDb::group_commits)
    }

    /// Runs `f` on a pooled connection, for code already on a blocking thread
    /// (long reads that stream, such as exports). Each statement stands alone.
    pub fn blocking<T>(&self, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        match &self.pool {
            Pool::Sqlite(db) => db.blocking(f),
            Pool::Postgres(db) => db.blocking(f),
        }
    }

    /// Runs work on a pooled connection on the blocking pool: reads, or single
    /// statements (atomic on their own). Anything larger goes through [`Db::write`].
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.blocking(f)).await?
    }

    /// Runs work in one transaction on the blocking pool, answered once committed;
    /// when `f` returns Err its writes are rolled back (nothing half-written). On
    /// SQLite, writers queued together share one commit (group commit).
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_in(None, f).await
    }

    /// [`Db::write`] for code already on a blocking thread.
    pub fn write_blocking<T>(&self, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        self.transaction_in(None, true, |sql| Ok((f(sql)?, true)))
    }

    /// [`Db::write`] bound to `org` (tenant pool) when given.
    pub(crate) async fn write_in<T, F>(&self, org: Option<Uuid>, f: F) -> Result<T>
    where
        F: FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        match &self.pool {
            Pool::Sqlite(db) => super::sqlite::group_commit::write(db, org, f).await,
            Pool::Postgres(db) => db.write(org, f).await,
        }
    }

    /// Runs `f` on a connection bound to `org`, on this thread. On PostgreSQL the
    /// binding lives in a transaction, so `f` runs in one there.
    pub(crate) fn bound_blocking<T>(&self, org: Uuid, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        match &self.pool {
            Pool::Sqlite(db) => f(&Sql::from(&db.bound(org)?)),
            Pool::Postgres(db) => db.transaction(Some(org), f),
        }
    }

    /// Runs `f` in a transaction (bound to `org` when given), on this thread:
    /// committed when `f` answers `(value, true)`, rolled back otherwise. `write`
    /// asks SQLite for its write lock up front (after this process's earlier
    /// writers) instead of upgrading a read half-way.
    pub(crate) fn transaction_in<T>(
        &self,
        org: Option<Uuid>,
        write: bool,
        f: impl FnOnce(&Sql<'_>) -> Result<(T, bool)>,
    ) -> Result<T> {
        match &self.pool {
            Pool::Sqlite(db) => match org {
                Some(org) => {
                    let mut conn = db.bound(org)?;
                    super::sqlite::db::transaction(&mut conn, write, f)
                }
                None => {
                    let mut conn = db.conn()?;
                    super::sqlite::db::transaction(&mut conn, write, f)
                }
            },
            Pool::Postgres(db) => db.transaction_with(org, write, f),
        }
    }

    /// Deletes the bound org's row and, through foreign keys, every tenant row of
    /// it, in one transaction after `before` (on this thread).
    pub(crate) fn delete_org(&self, org: Uuid, before: impl FnOnce(&Sql<'_>) -> Result<()>) -> Result<()> {
        let delete = |tx: &Sql<'_>| -> Result<()> {
            before(tx)?;
            tx.execute("DELETE FROM org", crate::params![])?;
            Ok(())
        };
        match &self.pool {
            Pool::Sqlite(db) => {
                let mut conn = db.bound(org)?;
                // SQLite authorizes the foreign-key cascades of that one DELETE as
                // top-level deletes of tenant tables: allowed for its length only.
                let switch = conn.cascade_switch();
                super::sqlite::db::transaction(&mut conn, true, |tx| {
                    let _on = switch.on();
                    Ok((delete(tx)?, true))
                })
            }
            // Foreign-key cascades run as the table owner, outside row security.
            Pool::Postgres(db) => db.write_blocking(Some(org), delete),
        }
    }
}

/// Binds a root connection's transaction to an org (or none) for the statements
/// that follow: seeding writes tenant rows through the views of each org in turn.
pub type Rebind<'a> = dyn Fn(Option<Uuid>) -> Result<()> + 'a;

impl Db {
    /// Runs `f` in one write transaction on this thread, with a [`Rebind`] of its
    /// connection; the connection goes back to its pool unbound.
    pub(crate) fn write_rebinding<T>(&self, f: impl FnOnce(&Sql<'_>, &Rebind<'_>) -> Result<T>) -> Result<T> {
        match &self.pool {
            Pool::Sqlite(db) => {
                let mut conn = db.conn()?;
                let cell = conn.org_cell();
                let rebind = move |org: Option<Uuid>| -> Result<()> {
                    if let Ok(mut bound) = cell.lock() {
                        *bound = org.map(|o| o.to_string());
                    }
                    Ok(())
                };
                let outcome =
                    super::sqlite::db::transaction(&mut conn, true, |tx| Ok((f(tx, &rebind)?, true)));
                conn.bind(None);
                outcome
            }
            Pool::Postgres(db) => db.write_blocking(None, |tx| {
                // Transaction-local (`true`): it ends with the seed's transaction.
                let rebind = |org: Option<Uuid>| -> Result<()> {
                    tx.query_one(
                        "SELECT set_config('plinth.org', ?1, true)",
                        crate::params![org.map(|o| o.to_string()).unwrap_or_default()],
                        |_| Ok(()),
                    )
                };
                f(tx, &rebind)
            }),
        }
    }
}

/// Runs blocking database work from anywhere: on its own thread when called on
/// an async runtime's thread (PostgreSQL's synchronous client runs a runtime of
/// its own and refuses to start inside another), else right here. For start-up
/// and command-line work (migrate, seed); requests use the blocking pool.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|_| Err(crate::error::Error::internal("blocking database work panicked")))
    })
}

/// `text` as a literal inside a LIKE pattern written with `ESCAPE '\'`: user input
/// such as `%` or `_` then matches only itself, never "anything".
pub fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Milliseconds since the Unix epoch: the one clock for stored timestamps that are
/// compared in SQL (job schedules, expiries); human-facing times are RFC 3339 text.
pub fn now_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// The current time as RFC 3339 UTC text with milliseconds, the format of every
/// stored `*_at` column (fixed width, so text order is time order).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let millis = now
        .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now);
    millis
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}
