//! Changes to watched tables, announced once committed: the invalidation behind
//! caches that copy rows (a user's profile, an org's member list).
//!
//! Explicit invalidation at every write site is easy to forget in one place (a new
//! admin action, an erasure, a cascade). Instead every pooled connection carries an
//! engine hook (SQLite's update hook, `storage::sqlite::hooks`; on PostgreSQL
//! statement triggers, `storage::postgres::notes`) that notes which watched
//! tables its statements changed, rows
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

type Watcher = Box<dyn Fn() + Send + Sync>;

/// The watched tables of one database and who watches them.
#[derive(Default)]
pub struct Changes {
    tables: RwLock<HashMap<String, Arc<Table>>>,
}

#[derive(Default)]
pub(crate) struct Table {
    watchers: RwLock<Vec<Watcher>>,
}

impl Changes {
    /// Runs `on_change` after every commit that changed a row of `table`.
    pub fn watch(&self, table: &str, on_change: impl Fn() + Send + Sync + 'static) {
        let entry = self.tables.write().entry(table.to_string()).or_default().clone();
        entry.watchers.write().push(Box::new(on_change));
    }

    pub(crate) fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.tables.read().get(name).cloned()
    }

    /// Runs every watcher: for when what changed cannot be known.
    pub(crate) fn announce_all(&self) {
        let noted = Noted::default();
        for table in self.tables.read().values() {
            noted.note(table.clone());
        }
        noted.announce();
    }
}

/// The watched tables one connection changed since it was last announced.
#[derive(Default)]
pub(crate) struct Noted(Mutex<Vec<Arc<Table>>>);

impl Noted {
    pub(crate) fn note(&self, table: Arc<Table>) {
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

/// A watcher counting the announcements of `table` (tests of both engines' notes).
#[cfg(test)]
pub(crate) fn counter(changes: &Changes, table: &str) -> Arc<std::sync::atomic::AtomicUsize> {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    changes.watch(table, move || {
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    count
}
