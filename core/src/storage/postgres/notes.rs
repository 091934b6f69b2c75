//! Change notes on PostgreSQL (see [`crate::storage::changes`]), from the database
//! itself: a statement trigger on every table adds the table's name to the
//! session setting `plinth.changed` (for this node) and notifies it on the
//! channel every node listens to (see [`super::listen`]), so writes by triggers,
//! cascades and any SQL path are seen. A setting changed inside a transaction is rolled back with it,
//! so only committed changes remain; the pool reads and clears it as a
//! connection comes back, and announces them before the writer is answered.

use crate::error::Result;
use crate::params;
use crate::storage::isolation::identifier;
use crate::storage::sql::Sql;

/// Records the changed table in the session's notes, once per table.
const NOTE: &str = "CREATE OR REPLACE FUNCTION plinth_note_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE noted text := coalesce(current_setting('plinth.changed', true), '');
    BEGIN
        IF position(',' || TG_TABLE_NAME || ',' IN noted) = 0 THEN
            PERFORM set_config('plinth.changed',
                CASE WHEN noted = '' THEN ',' ELSE noted END || TG_TABLE_NAME || ',', false);
        END IF;
        -- Every node's listener (storage::postgres::listen), at commit; PostgreSQL
        -- sends one per table and transaction however many statements notify.
        PERFORM pg_notify('plinth_changes', TG_TABLE_NAME);
        RETURN NULL;
    END $$";

/// Reads and clears the notes of a connection (outside any transaction).
pub(crate) const TAKE: &str =
    "SELECT current_setting('plinth.changed', true), set_config('plinth.changed', '', false)";

/// The table names in a note.
pub(crate) fn parse(noted: &str) -> Vec<String> {
    noted
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Puts the note trigger on every table of the schema but the migration record
/// and the rate-limit buckets (written on every sign-in attempt, cached nowhere).
pub(crate) fn install(sql: &Sql<'_>) -> Result<()> {
    sql.batch(NOTE)?;
    let tables: Vec<String> = sql.query_all(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
           AND c.relname NOT IN ('plinth_migrations', 'rate_buckets') AND NOT c.relispartition
         ORDER BY c.relname",
        params![],
        |r| r.get(0),
    )?;
    for table in tables {
        identifier(&table)?;
        sql.batch(&format!(
            "CREATE OR REPLACE TRIGGER plinth_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION plinth_note_change()"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::pool::PgDb;
    use crate::storage::changes::{Changes, counter};

    #[test]
    fn committed_writes_are_announced_once_per_table_rolled_back_ones_not_at_all() {
        let Some((url, _, _)) = super::super::testing::empty_database("notes") else {
            return;
        };
        let changes = Arc::new(Changes::default());
        let db = PgDb::open(url.parse().expect("url"), 1, false, changes.clone());
        db.transaction(None, |sql| {
            sql.batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (id INTEGER PRIMARY KEY,
                     parent INTEGER REFERENCES parent ON DELETE CASCADE);
                 CREATE TABLE other (id INTEGER PRIMARY KEY)",
            )?;
            super::install(sql)
        })
        .expect("schema");
        let (parents, children, others) = (
            counter(&changes, "parent"),
            counter(&changes, "child"),
            counter(&changes, "other"),
        );
        let count = |c: &Arc<AtomicUsize>| c.load(Ordering::SeqCst);

        db.transaction(None, |sql| {
            sql.execute("INSERT INTO parent VALUES (1), (2)", crate::params![])?;
            sql.execute("INSERT INTO child VALUES (1, 1)", crate::params![])?;
            sql.execute("INSERT INTO child VALUES (2, 1)", crate::params![])
        })
        .expect("insert");
        assert_eq!((count(&parents), count(&children), count(&others)), (1, 1, 0));

        // A cascade changes `child` without naming it.
        db.blocking(|sql| sql.execute("DELETE FROM parent WHERE id = 1", crate::params![]))
            .expect("delete");
        assert_eq!((count(&parents), count(&children)), (2, 2), "a cascade counts");

        // Rolled back: nothing to announce.
        let failed = db.transaction(None, |sql| {
            sql.execute("INSERT INTO other VALUES (1)", crate::params![])?;
            Err::<(), _>(crate::error::Error::Conflict("changed my mind".into()))
        });
        assert!(failed.is_err());
        assert_eq!(count(&others), 0, "a rolled-back write is not announced");

        // Reads announce nothing.
        db.blocking(|sql| {
            sql.query_one("SELECT count(*) FROM child", crate::params![], |r| {
                r.get::<i64>(0)
            })
        })
        .expect("read");
        assert_eq!((count(&parents), count(&children), count(&others)), (2, 2, 0));
    }
}
