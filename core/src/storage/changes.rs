//! Changes to watched tables, announced once committed: the invalidation behind
//! caches that copy rows (a user's profile, an org's member list).
//!
//! Explicit invalidation at every write site is easy to forget in one place (a new
//! admin action, an erasure, a cascade). Instead every pooled connection carries an
//! SQLite update hook that notes which watched tables its statements changed, rows
//! changed by triggers and foreign-key cascades included; when the connection goes
//! back to its pool, after its transaction committed or rolled back, the noted
//! tables are announced and their watchers run. Announcing after the commit is what
//! makes it safe: a cache load that started before the announcement is discarded by
//! [`crate::runtime::cache::Cache`]'s generation check, and one that starts after it reads
//! the committed rows. The connection is returned before the write's caller gets its
//! answer, so a client reads its own writes. A rolled-back change is announced too,
//! which costs a reload and nothing else.
//!
//! Writes by other processes (the CLI beside a running server) are not seen; caches
//! watching tables keep a time-to-live for them.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rusqlite::Connection;

type Watcher = Box<dyn Fn() + Send + Sync>;

/// The watched tables of one database and who watches them.
#[derive(Default)]
pub struct Changes {
    tables: RwLock<HashMap<String, Arc<Table>>>,
}

#[derive(Default)]
struct Table {
    watchers: RwLock<Vec<Watcher>>,
}

impl Changes {
    /// Runs `on_change` after every commit that changed a row of `table`.
    pub fn watch(&self, table: &str, on_change: impl Fn() + Send + Sync + 'static) {
        let entry = self.tables.write().entry(table.to_string()).or_default().clone();
        entry.watchers.write().push(Box::new(on_change));
    }

    fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.tables.read().get(name).cloned()
    }
}

/// The watched tables one connection changed since it was last announced.
#[derive(Default)]
pub(crate) struct Noted(Mutex<Vec<Arc<Table>>>);

impl Noted {
    fn note(&self, table: Arc<Table>) {
        let mut noted = self.0.lock();
        if !noted.iter().any(|t| Arc::ptr_eq(t, &table)) {
            noted.push(table);
        }
    }

    /// Runs the watchers of every noted table, once each, and forgets them.
    pub(crate) fn announce(&self) {
        let noted = std::mem::take(&mut *self.0.lock());
        for table in noted {
            for watcher in table.watchers.read().iter() {
                watcher();
            }
        }
    }
}

/// Installs the update hook that notes changes to watched tables on `conn`.
pub(crate) fn install(conn: &Connection, changes: Arc<Changes>, noted: Arc<Noted>) -> rusqlite::Result<()> {
    conn.update_hook(Some(move |_action, _db: &str, table: &str, _rowid: i64| {
        if let Some(table) = changes.table(table) {
            noted.note(table);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counter(changes: &Changes, table: &str) -> Arc<AtomicUsize> {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        changes.watch(table, move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        count
    }

    #[test]
    fn changes_to_watched_tables_are_announced_once_per_announcement() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent ON DELETE CASCADE);
             CREATE TABLE other (id INTEGER PRIMARY KEY);
             CREATE TABLE log (n INTEGER);
             CREATE TRIGGER other_logged AFTER INSERT ON other BEGIN INSERT INTO log VALUES (new.id); END;",
        )
        .expect("schema");
        let changes = Arc::new(Changes::default());
        let (children, logs, parents) = (
            counter(&changes, "child"),
            counter(&changes, "log"),
            counter(&changes, "parent"),
        );
        let noted = Arc::new(Noted::default());
        install(&conn, changes.clone(), noted.clone()).expect("hook");

        conn.execute_batch("INSERT INTO other VALUES (1); INSERT INTO other VALUES (2);")
            .expect("insert");
        noted.announce();
        assert_eq!(
            logs.load(Ordering::SeqCst),
            1,
            "rows written by a trigger count, once"
        );
        assert_eq!(children.load(Ordering::SeqCst), 0);

        conn.execute_batch("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1);")
            .expect("insert");
        noted.announce();
        assert_eq!(children.load(Ordering::SeqCst), 1);
        // A cascade changes the child table without naming it.
        conn.execute("DELETE FROM parent WHERE id = 1", [])
            .expect("delete");
        noted.announce();
        assert_eq!(children.load(Ordering::SeqCst), 2, "a foreign-key cascade counts");
        assert_eq!(parents.load(Ordering::SeqCst), 2);

        // Nothing changed: nothing announced.
        conn.execute("UPDATE child SET parent = 2 WHERE id = 99", [])
            .expect("update");
        noted.announce();
        assert_eq!(children.load(Ordering::SeqCst), 2);
    }
}
