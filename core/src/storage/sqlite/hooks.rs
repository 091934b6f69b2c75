//! The update hook behind change notes: which watched tables a connection's
//! statements changed (triggers and cascades included), noted for
//! [`crate::storage::changes`] to announce once the connection is back in its pool.

use std::sync::Arc;

use rusqlite::Connection;

use crate::storage::changes::{Changes, Noted};

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
    use crate::storage::changes::{Noted, counter};
    use std::sync::atomic::Ordering;

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
