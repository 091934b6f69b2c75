//! SQLite access: one pool of rusqlite connections, configured identically.
//!
//! Every connection (pool, migrations, tools, tests) goes through [`configure`], so
//! pragmas and SQL functions can never differ between code paths. Blocking SQLite
//! calls run on tokio's blocking pool through [`Db::read`] and [`Db::write`]; writes
//! run in `BEGIN IMMEDIATE` transactions so a read-then-write cannot fail with
//! SQLITE_BUSY_SNAPSHOT half-way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};

pub type Pool = r2d2::Pool<SqliteConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<SqliteConnectionManager>;

/// How long a connection waits for the write lock before giving up with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a free pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection settings. WAL lets readers run beside the one writer;
/// synchronous=NORMAL in WAL mode keeps committed transactions across a process crash
/// (only a power loss can drop the last ones) at a fraction of FULL's fsyncs.
pub fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// Opens one configured connection outside the pool (CLI tools, tests).
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    configure(&mut conn)?;
    Ok(conn)
}

/// The database handle shared by the whole process; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    path: Arc<PathBuf>,
}

impl Db {
    /// Creates the pool without touching the file: connections open on first use, so
    /// commands that never need the database (printing the spec) never create it.
    pub fn open(path: &Path, size: u32) -> Self {
        let manager = SqliteConnectionManager::file(path).with_init(configure);
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build_unchecked(manager);
        Db {
            pool,
            path: Arc::new(path.to_path_buf()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A pooled connection for synchronous code (already on a blocking thread).
    pub fn conn(&self) -> Result<PooledConnection> {
        Ok(self.pool.get()?)
    }

    /// Pool figures for /metrics.
    pub fn state(&self) -> r2d2::State {
        self.pool.state()
    }

    pub fn max_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// Runs work on a pooled connection on the blocking pool: reads, or single
    /// statements (atomic on their own). Anything larger goes through [`Db::write`].
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = db.conn()?;
            f(&conn)
        })
        .await?
    }

    /// Runs work in one `BEGIN IMMEDIATE` transaction on the blocking pool: committed
    /// when `f` returns Ok, rolled back (nothing half-written) when it returns Err.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_blocking(f)).await?
    }

    /// [`Db::write`] for code already on a blocking thread.
    pub fn write_blocking<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        in_transaction(&mut conn, f)
    }
}

/// Runs `f` in an immediate transaction on any connection.
pub fn in_transaction<T>(conn: &mut Connection, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit().map_err(Error::from)?;
    Ok(value)
}

/// Milliseconds since the Unix epoch: the one clock for stored timestamps that are
/// compared in SQL (job schedules); human-facing times are RFC 3339 text.
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
