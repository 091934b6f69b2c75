//! Change notes on PostgreSQL (see [`crate::storage::changes`]), from the database
//! itself: a statement trigger on every table adds the table's name to the
//! session setting `plinth.changed`, so writes by triggers, cascades and any SQL
//! path are seen. A setting changed inside a transaction is rolled back with it,
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

/// Puts the note trigger on every table of the schema but the migration record.
pub(crate) fn install(sql: &Sql<'_>) -> Result<()> {
    sql.batch(NOTE)?;
    let tables: Vec<String> = sql.query_all(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
           AND c.relname <> 'plinth_migrations' AND NOT c.relispartition
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
