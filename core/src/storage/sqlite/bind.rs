//! The facade's binding to SQLite: how [`Sql`](crate::storage::sql::Sql) runs
//! statements, binds parameters and reads columns on a rusqlite connection, and how
//! the engine's errors become core's.

use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::error::{Error, Result};
use crate::storage::sql::{Column, Param, Row};

/// The engine connection behind every facade handle.
pub(crate) type Conn = rusqlite::Connection;

/// The engine's row, wrapped by the facade's [`Row`].
pub(crate) type EngineRow<'r> = rusqlite::Row<'r>;

crate::storage::sql::sealed::raw_engine!(rusqlite::Connection, Sqlite);
crate::storage::sql::sealed::raw_engine!(rusqlite::Transaction<'_>, Sqlite);
crate::storage::sql::sealed::raw_engine!(super::db::DbConn, Sqlite);
crate::storage::sql::sealed::raw_engine!(super::db::PooledConnection, Sqlite);
crate::storage::sql::sealed::raw_engine!(super::db::BoundConn, Sqlite);

/// The SQLite connection behind `handle`, for the engine's own tests; a handle of
/// another engine is an internal error.
#[cfg(test)]
pub(crate) fn sqlite_of<H: crate::storage::sql::Handle + ?Sized>(handle: &H) -> Result<&Conn> {
    use crate::storage::sql::{Engine, raw};
    match raw(handle) {
        Engine::Sqlite(conn) => Ok(conn),
        Engine::Postgres(_) => Err(Error::internal("a SQLite connection was expected")),
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Param::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::OwnedText(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::internal(e)
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        Error::Unavailable(format!("database unavailable: {e}"))
    }
}

/// `sql` in SQLite's dialect: row locks (`FOR UPDATE [SKIP LOCKED]`, which
/// PostgreSQL's concurrent writers need) are implied by SQLite's single writer
/// and are not SQLite syntax. Written in capitals by convention.
fn dialect(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.contains(" FOR UPDATE") {
        std::borrow::Cow::Owned(
            sql.replace(" FOR UPDATE SKIP LOCKED", "")
                .replace(" FOR UPDATE", ""),
        )
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

pub(crate) fn execute(conn: &Conn, sql: &str, params: &[Param<'_>]) -> Result<usize> {
    Ok(conn
        .prepare_cached(&dialect(sql))?
        .execute(rusqlite::params_from_iter(params.iter()))?)
}

/// Runs `each` over the rows until it answers `false` or they run out.
pub(crate) fn query(
    conn: &Conn,
    sql: &str,
    params: &[Param<'_>],
    mut each: impl FnMut(&Row<'_>) -> Result<bool>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&dialect(sql))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(row) = rows.next()? {
        if !each(&Row::sqlite(row))? {
            break;
        }
    }
    Ok(())
}

pub(crate) fn batch(conn: &Conn, sql: &str) -> Result<()> {
    Ok(conn.execute_batch(sql)?)
}

pub(crate) fn column<'r>(row: &'r EngineRow<'r>, index: usize) -> Result<Column<'r>> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => Column::Null,
        ValueRef::Integer(i) => Column::Integer(i),
        ValueRef::Real(r) => Column::Real(r),
        ValueRef::Text(t) => Column::Text(t),
        ValueRef::Blob(b) => Column::Blob(b),
    })
}

pub(crate) fn has_table(conn: &Conn, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1")?
        .exists([name])?)
}

pub(crate) fn column_names(conn: &Conn, sql: &str) -> Result<Vec<String>> {
    let stmt = conn.prepare_cached(sql)?;
    Ok(stmt.column_names().iter().map(|c| c.to_string()).collect())
}

pub(crate) fn column_count(row: &EngineRow<'_>) -> usize {
    row.as_ref().column_count()
}

pub(crate) fn column_name(row: &EngineRow<'_>, index: usize) -> Result<String> {
    Ok(row.as_ref().column_name(index)?.to_string())
}

pub(crate) fn is_unique_violation(error: &Error) -> bool {
    let Error::Internal(cause) = error else {
        return false;
    };
    matches!(
        cause.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[cfg(test)]
pub(crate) fn open_in_memory() -> rusqlite::Result<Conn> {
    rusqlite::Connection::open_in_memory()
}
