//! SQLite access: three pools of identically configured rusqlite connections.
//!
//! - `Root` (core only): migrations, and the cross-tenant reads of tenancy (whose
//!   orgs is a user in, what is their role).
//! - `System` ([`crate::Platform::db`], for everyone): non-tenant data. Its
//!   authorizer refuses top-level access to `tenant_*` tables and any schema change.
//! - `Tenant` (through [`crate::tenancy::TenantDb`] only): bound to one org per
//!   checkout. Its authorizer allows top-level SQL only on views (which filter by
//!   `current_org()`) and appends to the shared logs (jobs, audit, mail).
//!
//! Every connection (pools, tools, tests) goes through [`configure`], so pragmas and
//! the `current_org()` function can never differ between code paths. Blocking SQLite
//! calls run on tokio's blocking pool; writes run in `BEGIN IMMEDIATE` transactions
//! so a read-then-write cannot fail with SQLITE_BUSY_SNAPSHOT half-way.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::Result;
use crate::storage::changes::{Changes, Noted};
use crate::storage::db::Kind;
use crate::storage::isolation::{SHARED_LOGS, TENANT_PREFIX};
use crate::storage::sql::Sql;
use crate::storage::sqlite::group_commit::Queue;

/// How long a connection waits for the write lock before giving up with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a free pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The org a connection is bound to; read by `current_org()` at execution time.
pub type OrgCell = Arc<Mutex<Option<String>>>;

/// A pooled connection and its org binding.
pub struct DbConn {
    conn: Connection,
    org: OrgCell,
    /// Watched tables changed on this connection, announced when it returns to the pool.
    noted: Arc<Noted>,
    /// Set by core around deleting the bound org: SQLite authorizes the foreign-key
    /// cascades of that one DELETE as top-level deletes of tenant tables.
    cascade: Arc<AtomicBool>,
}

impl DbConn {
    pub(crate) fn org_cell(&self) -> OrgCell {
        self.org.clone()
    }

    /// The switch that authorizes an org deletion's cascade (tenant connections).
    pub(crate) fn cascade_switch(&self) -> CascadeSwitch {
        CascadeSwitch(self.cascade.clone())
    }

    pub(crate) fn bind(&self, org: Option<String>) {
        if let Ok(mut cell) = self.org.lock() {
            *cell = org;
        }
    }
}

impl Deref for DbConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Authorizes the cascades of one org deletion while held; off again when dropped.
pub(crate) struct CascadeSwitch(Arc<AtomicBool>);

impl CascadeSwitch {
    pub(crate) fn on(&self) -> CascadeOn<'_> {
        self.0.store(true, Ordering::SeqCst);
        CascadeOn(self)
    }
}

pub(crate) struct CascadeOn<'a>(&'a CascadeSwitch);

impl Drop for CascadeOn<'_> {
    fn drop(&mut self) {
        (self.0).0.store(false, Ordering::SeqCst);
    }
}

/// Per-connection settings. WAL lets readers run beside the one writer;
/// synchronous=NORMAL in WAL mode keeps committed transactions across a process crash
/// (only a power loss can drop the last ones) at a fraction of FULL's fsyncs.
/// `current_org()` is registered on every connection (views use it); it is NULL
/// unless a tenant checkout bound the connection, so an unbound connection sees no
/// tenant rows through the views.
pub fn configure(conn: &mut Connection, org: OrgCell) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    // No checkpoint inside a committing writer (it would fsync on a request's
    // time): a served process checkpoints in the background (`Checkpointer`), and
    // the last connection to close checkpoints whatever is left. When the WAL starts
    // over, a file grown past 128 MiB (a long reader held checkpoints back) is cut back.
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = 134217728;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    // The query planner stability guarantee: without it SQLite marks a statement for
    // re-preparation whenever a parameter it peeked at is bound again (every
    // `LIMIT ?` of a keyset page, any LIKE pattern), so cached statements were
    // parsed and planned again on every request (measured: members list).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Not DETERMINISTIC: SQLite could then evaluate it once at prepare time, and a
    // cached statement would keep the org of the request that prepared it.
    conn.create_scalar_function(
        "current_org",
        0,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS,
        move |_| Ok(org.lock().ok().and_then(|o| o.clone())),
    )?;
    Ok(())
}

/// Copies committed WAL pages into the database without waiting for readers or
/// blocking writers (`PASSIVE`). Returns the frames in the WAL and how many of them
/// are now in the database.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// WAL frames (4 KiB pages; 16,384 is 64 MiB) between the passes of [`Checkpointer`]
/// that hold writers back.
const WAL_FRAMES_SOFT_LIMIT: i64 = 16_384;

/// The server's periodic checkpoint, run a few times a second.
///
/// SQLite starts the WAL over only when a writer begins after a complete checkpoint,
/// which never happens while writes keep coming: under sustained writes the file grew
/// without bound (1.3 GB in 30 s of usage writes, every new block zeroed by the
/// kernel on a writer's time). So each tick copies what it can without waiting for
/// anyone, and once the WAL has grown another [`WAL_FRAMES_SOFT_LIMIT`] frames a
/// second pass runs holding the write gate: it copies only what came in meanwhile
/// (about 45 ms with its fsyncs, measured under a saturating write load), after
/// which the next writer starts the WAL over, unless a reader still needs older
/// pages. It waits for no reader (a backup could take seconds), so a long reader
/// costs one such pause per limit of growth, not a stall.
pub struct Checkpointer {
    db: SqliteDb,
    /// Growth in frames between passes that hold writers back.
    limit: i64,
    /// The WAL size at which writers are next held back.
    hold_at: i64,
}

impl Checkpointer {
    pub fn new(db: SqliteDb) -> Self {
        Self::with_limit(db, WAL_FRAMES_SOFT_LIMIT)
    }

    fn with_limit(db: SqliteDb, limit: i64) -> Self {
        Checkpointer {
            db,
            limit,
            hold_at: limit,
        }
    }

    pub async fn tick(&mut self) -> Result<()> {
        let (frames, _) = self.db.wal_frames().await?;
        if frames < self.hold_at {
            // Started over since (or never grew): back to the first threshold.
            self.hold_at = self.hold_at.min(frames.max(0) + self.limit);
            return Ok(());
        }
        let _turn = async_write_gate(self.db.path()).lock_owned().await;
        let started = std::time::Instant::now();
        let (frames, copied) = self.db.wal_frames().await?;
        self.hold_at = frames + self.limit;
        let held = started.elapsed();
        if held > Duration::from_millis(200) {
            tracing::warn!(
                held_ms = held.as_millis() as u64,
                frames,
                copied,
                "a checkpoint held writers back"
            );
        }
        Ok(())
    }
}

/// Opens one configured, unbound connection outside the pools (CLI tools, tests).
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    configure(&mut conn, OrgCell::default())?;
    Ok(conn)
}

fn is_schema_change(action: &AuthAction<'_>) -> bool {
    matches!(
        action,
        AuthAction::CreateIndex { .. }
            | AuthAction::CreateTable { .. }
            | AuthAction::CreateTempIndex { .. }
            | AuthAction::CreateTempTable { .. }
            | AuthAction::CreateTempTrigger { .. }
            | AuthAction::CreateTempView { .. }
            | AuthAction::CreateTrigger { .. }
            | AuthAction::CreateView { .. }
            | AuthAction::DropIndex { .. }
            | AuthAction::DropTable { .. }
            | AuthAction::DropTempIndex { .. }
            | AuthAction::DropTempTable { .. }
            | AuthAction::DropTempTrigger { .. }
            | AuthAction::DropTempView { .. }
            | AuthAction::DropTrigger { .. }
            | AuthAction::DropView { .. }
            | AuthAction::AlterTable { .. }
            | AuthAction::CreateVtable { .. }
            | AuthAction::DropVtable { .. }
            | AuthAction::Attach { .. }
            | AuthAction::Detach { .. }
            | AuthAction::Reindex { .. }
            | AuthAction::Analyze { .. }
    )
}

/// The table an access names, with whether it writes.
fn table_access<'a>(action: &AuthAction<'a>) -> Option<(&'a str, bool)> {
    match action {
        AuthAction::Read { table_name, .. } => Some((table_name, false)),
        AuthAction::Insert { table_name } => Some((table_name, true)),
        AuthAction::Update { table_name, .. } => Some((table_name, true)),
        AuthAction::Delete { table_name } => Some((table_name, true)),
        _ => None,
    }
}

/// System connections: no schema changes, no direct access to tenant tables.
fn authorize_system(ctx: AuthContext<'_>) -> Authorization {
    if is_schema_change(&ctx.action) {
        return Authorization::Deny;
    }
    match (ctx.accessor, table_access(&ctx.action)) {
        (None, Some((table, _))) if table.starts_with(TENANT_PREFIX) => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

/// Tenant connections: top-level SQL may read and write views, append to the shared
/// logs, and nothing else; views and triggers (our schema) do the rest.
fn authorize_tenant(ctx: AuthContext<'_>, views: &HashSet<String>, cascade: bool) -> Authorization {
    if is_schema_change(&ctx.action) {
        return Authorization::Deny;
    }
    // Core's own `DELETE FROM org` statement: SQLite authorizes its foreign-key
    // cascades (reads and deletes of tenant tables) as top-level access.
    if cascade && table_access(&ctx.action).is_some() {
        return Authorization::Allow;
    }
    if let AuthAction::Pragma { .. } = ctx.action {
        return Authorization::Deny;
    }
    if ctx.accessor.is_some() {
        return Authorization::Allow;
    }
    match ctx.action {
        AuthAction::Insert { table_name } if SHARED_LOGS.contains(&table_name) => Authorization::Allow,
        // Appending to the audit chain reads where it ends, and nothing else.
        AuthAction::Read {
            table_name: "audit_log",
            column_name: "seq" | "hash",
        } => Authorization::Allow,
        AuthAction::Read {
            table_name: "audit_anchor",
            ..
        } => Authorization::Allow,
        ref action => match table_access(action) {
            Some((table, _)) if views.contains(table) => Authorization::Allow,
            // Table-valued functions (json_each) read no stored data.
            Some((table, false)) if table.starts_with("json_") => Authorization::Allow,
            Some(_) => Authorization::Deny,
            None => Authorization::Allow,
        },
    }
}

/// r2d2 manager creating configured connections of one kind.
pub struct Manager {
    path: PathBuf,
    kind: Kind,
    changes: Arc<Changes>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConn;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<DbConn> {
        let mut conn = Connection::open(&self.path)?;
        let org = OrgCell::default();
        let cascade = Arc::new(AtomicBool::new(false));
        configure(&mut conn, org.clone())?;
        let noted = Arc::new(Noted::default());
        super::hooks::install(&conn, self.changes.clone(), noted.clone())?;
        match self.kind {
            Kind::Root => {}
            Kind::System => conn.authorizer(Some(authorize_system))?,
            Kind::Tenant => {
                let views: HashSet<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'view'")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let cascading = cascade.clone();
                conn.authorizer(Some(move |ctx: AuthContext<'_>| {
                    let verdict = authorize_tenant(ctx, &views, cascading.load(Ordering::SeqCst));
                    if verdict == Authorization::Deny {
                        tracing::debug!(action = ?ctx.action, accessor = ?ctx.accessor, "tenant connection refused");
                    }
                    verdict
                }))?;
            }
        }
        Ok(DbConn {
            conn,
            org,
            noted,
            cascade,
        })
    }

    fn is_valid(&self, conn: &mut DbConn) -> rusqlite::Result<()> {
        conn.execute_batch("")
    }

    /// Runs as every connection goes back to the pool: the moment its writes are
    /// committed (or rolled back), so the changes it noted are announced here. A
    /// connection returned inside a transaction is dropped, which rolls it back.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        conn.noted.announce();
        !conn.conn.is_autocommit()
    }
}

pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// A database handle; cheap to clone.
#[derive(Clone)]
pub struct SqliteDb {
    pool: r2d2::Pool<Manager>,
    path: Arc<PathBuf>,
    kind: Kind,
    changes: Arc<Changes>,
    queue: Arc<Queue>,
}

impl SqliteDb {
    /// Creates the pool without touching the file: connections open on first use, so
    /// commands that never need the database (printing the spec) never create it.
    /// Pools of one file share `changes`, so a commit through any of them is seen.
    pub fn open(path: &Path, size: u32, kind: Kind, changes: Arc<Changes>) -> Self {
        let manager = Manager {
            path: path.to_path_buf(),
            kind,
            changes: changes.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build_unchecked(manager);
        SqliteDb {
            pool,
            path: Arc::new(path.to_path_buf()),
            kind,
            changes,
            queue: Arc::default(),
        }
    }

    /// The writers waiting for a group commit on this pool.
    pub(crate) fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Group-committed transactions of this pool and the writers they answered,
    /// since start.
    pub fn group_commits(&self) -> (u64, u64) {
        self.queue.committed()
    }

    /// The watched tables of this database (see [`crate::storage::changes`]).
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// A tenant-pool connection bound to `org` until dropped.
    pub(crate) fn bound(&self, org: uuid::Uuid) -> Result<BoundConn> {
        let conn = self.conn()?;
        conn.bind(Some(org.to_string()));
        Ok(BoundConn(conn))
    }

    /// A pooled connection for core's synchronous code, tools and benches
    /// (already on a blocking thread). Plugins use [`SqliteDb::blocking`].
    pub(crate) fn conn(&self) -> Result<PooledConnection> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` on a pooled connection, for code already on a blocking thread
    /// (long reads that stream, such as exports).
    pub fn blocking<T>(&self, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        f(&Sql::of(&conn))
    }

    /// Pool figures for /metrics.
    pub fn state(&self) -> r2d2::State {
        self.pool.state()
    }

    pub fn max_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// The WAL's frames and how many are in the database, from the blocking pool.
    async fn wal_frames(&self) -> Result<(i64, i64)> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || Ok(checkpoint(&*db.conn()?)?)).await?
    }
}

/// A tenant-pool connection bound to one org until dropped.
pub(crate) struct BoundConn(PooledConnection);

impl Drop for BoundConn {
    fn drop(&mut self) {
        // Unbind before the connection goes back to the pool, so the next checkout
        // never starts with this request's org.
        self.0.bind(None);
    }
}

impl Deref for BoundConn {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        &self.0
    }
}

impl DerefMut for BoundConn {
    fn deref_mut(&mut self) -> &mut DbConn {
        &mut self.0
    }
}

/// One gate per database file: writers of this process queue here, in order, instead
/// of colliding on SQLite's lock, whose busy handler sleeps in steps of up to 100 ms
/// (a p99 of a second under 64 concurrent writers, measured). Keyed by SQLite's own
/// (absolute) name of the connection's file, so every path to one file meets here.
pub(crate) fn write_gate(conn: &Connection) -> Arc<parking_lot::FairMutex<()>> {
    let path = conn.path().unwrap_or_default();
    static GATES: std::sync::LazyLock<Mutex<HashMap<String, Arc<parking_lot::FairMutex<()>>>>> =
        std::sync::LazyLock::new(Mutex::default);
    let mut gates = GATES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    gates.entry(path.to_string()).or_default().clone()
}

/// The async side of the gate: async writers wait their turn as tasks, not as
/// blocking threads holding a pooled connection (64 waiting writers had meant 64
/// blocking threads and their memory).
pub(crate) fn async_write_gate(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static GATES: std::sync::LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        std::sync::LazyLock::new(Mutex::default);
    let mut gates = GATES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    gates.entry(path.to_path_buf()).or_default().clone()
}

/// Runs `f` in a transaction on any connection (an immediate one after this
/// process's earlier writers when `write`, else a deferred one), committed when `f`
/// answers `(value, true)` and rolled back otherwise.
pub fn transaction<T>(
    conn: &mut Connection,
    write: bool,
    f: impl FnOnce(&Sql<'_>) -> Result<(T, bool)>,
) -> Result<T> {
    let gate = write.then(|| write_gate(conn));
    let _turn = gate.as_ref().map(|g| g.lock());
    let behavior = if write {
        TransactionBehavior::Immediate
    } else {
        TransactionBehavior::Deferred
    };
    let tx = conn.transaction_with_behavior(behavior)?;
    let (value, commit) = f(&Sql::of(&tx))?;
    if commit {
        tx.commit()?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    use crate::storage::db::like_literal;

    #[test]
    fn like_literals_match_wildcards_only_as_themselves() {
        let conn = Connection::open_in_memory().expect("db");
        let matches = |value: &str, q: &str| -> bool {
            conn.query_row(
                "SELECT ?1 LIKE ?2 ESCAPE '\\'",
                [value, &format!("{}%", like_literal(q))],
                |r| r.get(0),
            )
            .expect("query")
        };
        assert!(!matches("alice", "%"));
        assert!(!matches("alice", "_"));
        assert!(matches("%off", "%"));
        assert!(matches("a_b", "a_"));
        assert!(!matches("axb", "a_"));
        assert!(matches("back\\slash", "back\\"));
        assert!(matches("alice", "al"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_a_write_load_that_never_pauses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = SqliteDb::open(
            &dir.path().join("w.db"),
            4,
            Kind::Root,
            Arc::new(Changes::default()),
        );
        db.conn()
            .expect("conn")
            .execute_batch("CREATE TABLE t (blob BLOB NOT NULL)")
            .expect("schema");
        let stop = Arc::new(AtomicBool::new(false));
        // Writers always queued: one task per slot, each writing a page per row.
        let mut writers = Vec::new();
        for _ in 0..4 {
            let (db, stop) = (db.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    crate::storage::sqlite::group_commit::write(&db, None, |tx| {
                        tx.execute("INSERT INTO t (blob) VALUES (zeroblob(3000))", crate::params![])?;
                        Ok(())
                    })
                    .await
                    .expect("write");
                }
            }));
        }
        let mut checkpointer = Checkpointer::with_limit(db.clone(), 200);
        let (mut largest, mut restarts, mut last) = (0, 0, 0);
        for _ in 0..150 {
            checkpointer.tick().await.expect("tick");
            let (frames, _) = db.wal_frames().await.expect("frames");
            if frames < last {
                restarts += 1;
            }
            (largest, last) = (largest.max(frames), frames);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.expect("writer");
        }
        let rows: i64 = db
            .conn()
            .expect("conn")
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert!(rows > 2_000, "the load wrote {rows} pages");
        assert!(restarts >= 2, "the WAL started over {restarts} times");
        assert!(
            largest < rows / 2,
            "the WAL peaked at {largest} frames for {rows} pages written"
        );
    }
}
