//! Pools of PostgreSQL connections and the handle over one: reads, writes in a
//! transaction, and the same bound to one org (the binding lives exactly as long as
//! the transaction: `SET LOCAL`).
//!
//! Each pool logs in with its own URL (its own role), so a tenant pool's role is
//! fixed at login: `RESET ROLE` on it returns to that same unprivileged role.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::bind::{PgConn, bind_org_sql};
use super::logins::Logins;
use crate::error::Result;
use crate::storage::changes::{Changes, Noted};
use crate::storage::db::Kind;
use crate::storage::sql::Sql;

/// The transaction-scoped advisory locks write transactions take first, so that
/// writers take turns across every process as SQLite's one writer does: what code
/// reads in a write transaction is still true when it writes (counters, "at least
/// one owner", seat limits, idempotency keys, the order of webhook deliveries).
///
/// Two levels: a write bound to an org holds `WRITER_LOCK` shared and its org's
/// lock (`ORG_WRITER_LOCKS`, hashtext of the id) exclusively, so writers of
/// different orgs run side by side and writers of one org take turns; a write
/// bound to no org (system and root work, which may span orgs: erasure, staff
/// actions) holds `WRITER_LOCK` exclusively and so runs alone, as on SQLite.
/// Always in that order, so the levels cannot deadlock. Reads and single
/// statements outside `write` never wait for them.
pub(crate) const WRITER_LOCK: i64 = 0x7772_6974_6572; // "writer"
/// The class (first key) of the per-org locks of the two-key advisory lock space.
const ORG_WRITER_LOCKS: i32 = 0x6f72_6773; // "orgs"

/// How long a checkout waits for a free connection before the request fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// r2d2 manager for one pool.
pub(crate) struct Manager {
    config: postgres::Config,
    tenant: bool,
    changes: Arc<Changes>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("Manager")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = crate::error::Error;

    fn connect(&self) -> Result<PgConn> {
        let conn = PgConn::connect_with(&self.config)?;
        Ok(if self.tenant { conn.tenant() } else { conn })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<()> {
        conn.ping()
    }

    /// Runs as every connection goes back to the pool: announces the tables its
    /// committed writes changed (see [`super::notes`]) before its caller is
    /// answered. A connection left inside a transaction is dropped, not reused.
    fn has_broken(&self, conn: &mut PgConn) -> bool {
        if !conn.is_reusable() {
            return true;
        }
        match conn.take_changes() {
            Ok(tables) => {
                let noted = Noted::default();
                for table in tables.iter().filter_map(|t| self.changes.table(t)) {
                    noted.note(table);
                }
                noted.announce();
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read a connection's change notes; dropping it");
                // Unknown changes: announce every watched table rather than miss one.
                self.changes.announce_all();
                true
            }
        }
    }
}

pub(crate) type Pooled = r2d2::PooledConnection<Manager>;

/// A handle over one pool; cheap to clone.
#[derive(Clone)]
pub(crate) struct PgDb {
    pool: r2d2::Pool<Manager>,
    /// `postgres://HOST:PORT/DB`, without credentials, for operators' screens.
    address: Arc<str>,
}

impl PgDb {
    /// Creates the pool without connecting: connections open on first use.
    pub(crate) fn open(config: postgres::Config, size: u32, tenant: bool, changes: Arc<Changes>) -> Self {
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => host.clone(),
            Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let address = format!(
            "postgres://{host}:{port}/{}",
            config.get_dbname().or(config.get_user()).unwrap_or_default()
        )
        .into();
        let manager = Manager {
            config,
            tenant,
            changes,
        };
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build_unchecked(manager);
        PgDb { pool, address }
    }

    /// The pool of one kind, logged in as its role.
    pub(crate) fn login(logins: &Logins, kind: Kind, size: u32, changes: Arc<Changes>) -> Self {
        let config = match kind {
            Kind::Root => &logins.owner,
            Kind::System => &logins.system.config,
            Kind::Tenant => &logins.tenant.config,
        };
        PgDb::open(config.clone(), size, kind == Kind::Tenant, changes)
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn conn(&self) -> Result<Pooled> {
        Ok(self.pool.get()?)
    }

    pub(crate) fn state(&self) -> r2d2::State {
        self.pool.state()
    }

    pub(crate) fn max_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// Runs `f` outside a transaction (each statement on its own), on this thread.
    pub(crate) fn blocking<T>(&self, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        f(&Sql::of(&*conn))
    }

    /// Runs `f` in one transaction, bound to `org` when given, on this thread:
    /// committed when `f` answers `Ok`, rolled back otherwise. For reads and
    /// single statements; work that reads what it then writes uses
    /// [`PgDb::write_blocking`].
    pub(crate) fn transaction<T>(
        &self,
        org: Option<Uuid>,
        f: impl FnOnce(&Sql<'_>) -> Result<T>,
    ) -> Result<T> {
        self.transaction_with(org, false, |sql| Ok((f(sql)?, true)))
    }

    /// [`PgDb::transaction`] holding the writers' lock (see [`WRITER_LOCK`]).
    pub(crate) fn write_blocking<T>(
        &self,
        org: Option<Uuid>,
        f: impl FnOnce(&Sql<'_>) -> Result<T>,
    ) -> Result<T> {
        self.transaction_with(org, true, |sql| Ok((f(sql)?, true)))
    }

    /// A transaction committed only when `f` answers `(value, true)`; `write`
    /// takes the writers' lock first.
    pub(crate) fn transaction_with<T>(
        &self,
        org: Option<Uuid>,
        write: bool,
        f: impl FnOnce(&Sql<'_>) -> Result<(T, bool)>,
    ) -> Result<T> {
        let conn = self.conn()?;
        // One round trip: BEGIN, the writers' locks, the org binding.
        let prelude = match (write, org) {
            (false, None) => String::new(),
            (false, Some(org)) => bind_org_sql(org),
            (true, None) => format!("SELECT pg_advisory_xact_lock({WRITER_LOCK})"),
            (true, Some(org)) => format!(
                "SELECT pg_advisory_xact_lock_shared({WRITER_LOCK}); \
                 SELECT pg_advisory_xact_lock({ORG_WRITER_LOCKS}, hashtext('{}')); {}",
                org.hyphenated(),
                bind_org_sql(org)
            ),
        };
        let outcome = conn.begin(&prelude).and_then(|()| f(&Sql::of(&*conn)));
        let commit = matches!(outcome, Ok((_, true)));
        conn.end(commit)?;
        outcome.map(|(value, _)| value)
    }

    /// [`PgDb::write_blocking`] on the blocking pool.
    pub(crate) async fn write<T, F>(&self, org: Option<Uuid>, f: F) -> Result<T>
    where
        F: FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_blocking(org, f)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params;
    use crate::storage::isolation::TenantTable;

    /// A database with an isolated `gadgets` table; the owner's and the tenant
    /// role's pools.
    fn pools() -> Option<(PgDb, PgDb)> {
        let (url, role_url, role) = super::super::testing::empty_database("pool")?;
        let open =
            |url: &str, size, tenant| PgDb::open(url.parse().expect("url"), size, tenant, Arc::default());
        let owner = open(&url, 2, false);
        owner
            .transaction(None, |sql| {
                sql.batch("CREATE TABLE tenant_gadgets (id TEXT PRIMARY KEY, org_id TEXT NOT NULL)")?;
                super::super::isolation::install(sql, &[TenantTable::new("gadgets")], &role)
            })
            .expect("schema");
        Some((owner, open(&role_url, 1, true)))
    }

    fn count(db: &PgDb, org: Option<Uuid>) -> i64 {
        db.transaction(org, |sql| {
            sql.query_one("SELECT count(*) FROM gadgets", params![], |r| r.get(0))
        })
        .expect("count")
    }

    #[test]
    fn a_tenant_transaction_is_bound_to_its_org_and_only_for_its_length() {
        let Some((_, tenant)) = pools() else { return };
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        // The synchronous client runs its own runtime: from async code it is only
        // ever used on the blocking pool, as `write` does.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(tenant.write(Some(a), move |sql| {
                sql.execute(
                    "INSERT INTO gadgets (id, org_id) VALUES (?1, ?2)",
                    params![Uuid::now_v7(), a],
                )
            }))
            .expect("write in a");
        assert_eq!(count(&tenant, Some(a)), 1);
        assert_eq!(count(&tenant, Some(b)), 0);
        // The same (single) pooled connection, after the transactions: unbound.
        assert_eq!(count(&tenant, None), 0);
        let unbound: Option<String> = tenant
            .blocking(|sql| sql.query_one("SELECT current_org()", params![], |r| r.get(0)))
            .expect("current_org");
        assert_eq!(unbound, None, "an ended binding reads as NULL, not ''");
        // A failed write leaves nothing, and the connection serves again.
        let failed = tenant.transaction(Some(a), |sql| {
            sql.execute("INSERT INTO gadgets (id, org_id) VALUES ('x', ?1)", params![a])?;
            Err::<(), _>(crate::error::Error::Conflict("changed my mind".into()))
        });
        assert!(failed.is_err());
        assert_eq!(count(&tenant, Some(a)), 1);
    }

    /// Writers of different orgs run side by side; writers of one org, and a
    /// writer bound to no org, wait for the one holding the org's turn.
    #[test]
    fn writers_take_turns_per_org_and_unbound_writers_run_alone() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc;
        use std::time::Duration;
        let Some((url, _, _)) = super::super::testing::empty_database("locks") else {
            return;
        };
        let db = PgDb::open(url.parse().expect("url"), 4, false, Arc::default());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let done = Arc::new(AtomicBool::new(false));
        let (started, holding) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let holder = {
            let (db, done) = (db.clone(), done.clone());
            std::thread::spawn(move || {
                db.write_blocking(Some(a), |_| {
                    started.send(()).expect("started");
                    released.recv().expect("release");
                    done.store(true, Ordering::SeqCst);
                    Ok(())
                })
            })
        };
        holding.recv().expect("holding a's turn");
        // Each writer answers whether a's first writer had finished when it got in.
        let writer = |org: Option<Uuid>| {
            let (db, done) = (db.clone(), done.clone());
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let after = db.write_blocking(org, |_| Ok(done.load(Ordering::SeqCst)));
                let _ = tx.send(after.expect("write"));
            });
            rx
        };
        let other_org = writer(Some(b))
            .recv_timeout(Duration::from_secs(5))
            .expect("another org's writer runs while a holds its turn");
        assert!(!other_org);
        let (same_org, unbound) = (writer(Some(a)), writer(None));
        std::thread::sleep(Duration::from_millis(200));
        release.send(()).expect("release");
        holder.join().expect("holder").expect("a's write");
        let timeout = Duration::from_secs(5);
        assert!(
            same_org.recv_timeout(timeout).expect("a"),
            "a's second writer ran beside the first"
        );
        assert!(
            unbound.recv_timeout(timeout).expect("none"),
            "an unbound writer ran beside a's"
        );
    }

    #[test]
    fn a_connection_left_inside_a_transaction_is_not_reused() {
        let Some((_, tenant)) = pools() else { return };
        let a = Uuid::now_v7();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tenant.transaction(Some(a), |sql| {
                sql.execute("INSERT INTO gadgets (id, org_id) VALUES ('p', ?1)", params![a])?;
                panic!("a handler bug mid-write");
                #[allow(unreachable_code)]
                Ok(())
            })
        }));
        assert!(panicked.is_err());
        // The pool has one connection: the next checkout must not inherit the
        // open transaction (or its binding).
        assert_eq!(count(&tenant, None), 0);
        assert_eq!(count(&tenant, Some(a)), 0, "the panicked write was rolled back");
    }
}
