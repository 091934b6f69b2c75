//! The SQL facade: how plugins (and, in time, core's own areas) reach the
//! database, without naming an engine.
//!
//! It is a thin layer over prepared statements, not an ORM: callers write one
//! portable SQL subset with numbered parameters (`?1`, `?2`...), pass values that
//! implement [`ToSql`] (usually through [`params!`](crate::params)) and read rows
//! by column index with [`Row::get`]. Every statement goes through the
//! connection's statement cache. Dialect differences belong here, never at call
//! sites: when a second engine arrives, this type gains its implementation and
//! the call sites stay as they are.
//!
//! `Db` and `TenantDb` hand their closures a [`Sql`]; seeds get one from
//! `SeedContext::sql`.

use rusqlite::types::{ToSqlOutput, ValueRef};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A connection or transaction, as the facade exposes it.
#[derive(Clone, Copy)]
pub struct Sql<'c>(&'c rusqlite::Connection);

/// What core's functions that read or write in the caller's transaction accept:
/// a [`Sql`] (what plugins hold), or a connection core holds itself. Sealed: only
/// core can reach the engine behind it.
pub trait Handle: sealed::Raw {}

impl<T: sealed::Raw + ?Sized> Handle for T {}

pub(crate) mod sealed {
    /// Proof of being inside core: only core can make one, so only core can call
    /// [`Raw::raw`] even through a generic bound.
    pub struct Inside(());

    pub(crate) const INSIDE: Inside = Inside(());

    /// The engine connection behind a handle.
    pub trait Raw {
        fn raw(&self, _: Inside) -> &rusqlite::Connection;
    }

    macro_rules! raw_by_deref {
        ($($t:ty),*) => {$(
            impl Raw for $t {
                fn raw(&self, _: Inside) -> &rusqlite::Connection {
                    self
                }
            }
        )*};
    }
    raw_by_deref!(
        rusqlite::Connection,
        rusqlite::Transaction<'_>,
        crate::storage::db::DbConn,
        crate::storage::db::PooledConnection,
        crate::tenancy::BoundConn,
        crate::tenancy::SeedContext<'_>
    );

    impl Raw for super::Sql<'_> {
        fn raw(&self, _: Inside) -> &rusqlite::Connection {
            self.0
        }
    }
}

/// The engine connection behind `handle` (core only).
pub(crate) fn raw<H: Handle + ?Sized>(handle: &H) -> &rusqlite::Connection {
    handle.raw(sealed::INSIDE)
}

/// The facade over any handle core accepts.
impl<'c, H: Handle + ?Sized> From<&'c H> for Sql<'c> {
    fn from(handle: &'c H) -> Sql<'c> {
        Sql(raw(handle))
    }
}

/// A value bound to a numbered parameter.
pub trait ToSql {
    #[doc(hidden)]
    fn to_param(&self) -> Param<'_>;
}

/// A bound value, as the engine receives it.
#[doc(hidden)]
pub enum Param<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    OwnedText(String),
    Blob(&'a [u8]),
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

macro_rules! integer_param {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_param(&self) -> Param<'_> {
                Param::Integer(i64::from(*self))
            }
        }
    )*};
}
integer_param!(i64, i32, u32, u16, u8, bool);

impl ToSql for usize {
    fn to_param(&self) -> Param<'_> {
        Param::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToSql for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}

impl ToSql for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToSql for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToSql for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToSql for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

/// Ids are stored as their hyphenated lowercase text.
impl ToSql for Uuid {
    fn to_param(&self) -> Param<'_> {
        Param::OwnedText(self.to_string())
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_param(&self) -> Param<'_> {
        match self {
            Some(v) => v.to_param(),
            None => Param::Null,
        }
    }
}

/// The parameters of a statement: `params![a, b]` binds `?1` to `a`, `?2` to `b`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::storage::sql::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::storage::sql::ToSql),+] as &[&dyn $crate::storage::sql::ToSql] };
}

/// A column value read from a row.
pub trait FromSql: Sized {
    #[doc(hidden)]
    fn from_column(value: ValueRef<'_>) -> std::result::Result<Self, String>;
}

fn kind(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "null",
        ValueRef::Integer(_) => "integer",
        ValueRef::Real(_) => "real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "blob",
    }
}

impl FromSql for i64 {
    fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Integer(i) => Ok(i),
            other => Err(format!("expected an integer, found {}", kind(other))),
        }
    }
}

macro_rules! narrow_integer {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
                let i = i64::from_column(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
narrow_integer!(i32, u32, u64, usize);

impl FromSql for bool {
    fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        Ok(i64::from_column(v)? != 0)
    }
}

impl FromSql for f64 {
    fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Real(r) => Ok(r),
            ValueRef::Integer(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {}", kind(other))),
        }
    }
}

impl FromSql for String {
    fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            other => Err(format!("expected text, found {}", kind(other))),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            other => Err(format!("expected a blob, found {}", kind(other))),
        }
    }
}

impl FromSql for Uuid {
    fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        let text = String::from_column(v)?;
        Uuid::parse_str(&text).map_err(|e| format!("`{text}` is not an id: {e}"))
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_column(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            other => T::from_column(other).map(Some),
        }
    }
}

/// Whether `error` is the violation of a unique constraint (or primary key), for
/// callers that turn a duplicate into a 409 of their own.
pub fn is_unique_violation(error: &Error) -> bool {
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

/// One row of a result.
pub struct Row<'r>(&'r rusqlite::Row<'r>);

impl Row<'_> {
    /// The value of column `index` (from 0), converted; a mismatch is an internal
    /// error naming the column.
    pub fn get<T: FromSql>(&self, index: usize) -> Result<T> {
        let value = self.0.get_ref(index)?;
        T::from_column(value).map_err(|why| Error::internal(format!("column {index}: {why}")))
    }
}

fn bind<'p>(params: &'p [&'p dyn ToSql]) -> Vec<Param<'p>> {
    params.iter().map(|p| p.to_param()).collect()
}

impl<'c> Sql<'c> {
    /// The facade over a connection core holds (or a transaction, which derefs
    /// to one); outside core, `Sql::from(handle)` or `SeedContext::sql`.
    pub(crate) fn of(conn: &'c rusqlite::Connection) -> Sql<'c> {
        Sql(conn)
    }

    /// Runs a statement; returns the rows it changed (writes through a tenant
    /// view report 0 on SQLite: check existence first where it matters).
    pub fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> Result<usize> {
        let bound = bind(params);
        Ok(self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(bound.iter()))?)
    }

    /// Every row, mapped.
    pub fn query_all<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        mut map: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let bound = bind(params);
        let mut stmt = self.0.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(bound.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(map(&Row(row))?);
        }
        Ok(out)
    }

    /// The first row, mapped, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let bound = bind(params);
        let mut stmt = self.0.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(bound.iter()))?;
        match rows.next()? {
            Some(row) => map(&Row(row)).map(Some),
            None => Ok(None),
        }
    }

    /// The first row, mapped; no row at all is an internal error (for queries that
    /// always answer one, such as `SELECT count(*)`).
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, map)?
            .ok_or_else(|| Error::internal(format!("no row from: {sql}")))
    }

    /// Whether the query answers at least one row.
    pub fn exists(&self, sql: &str, params: &[&dyn ToSql]) -> Result<bool> {
        self.query_opt(sql, params, |_| Ok(())).map(|r| r.is_some())
    }

    /// Runs `f` in a savepoint: its writes are kept if it returns `Ok`, undone
    /// (and only they) if it returns `Err`.
    pub fn savepoint<T>(&self, f: impl FnOnce(&Sql<'c>) -> Result<T>) -> Result<T> {
        self.0.execute_batch("SAVEPOINT facade")?;
        match f(self) {
            Ok(value) => {
                self.0.execute_batch("RELEASE facade")?;
                Ok(value)
            }
            Err(e) => {
                self.0.execute_batch("ROLLBACK TO facade; RELEASE facade")?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> rusqlite::Connection {
        let c = rusqlite::Connection::open_in_memory().expect("db");
        c.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, r REAL, b BLOB, flag INTEGER)")
            .expect("schema");
        c
    }

    #[test]
    fn values_round_trip_through_numbered_parameters() {
        let c = conn();
        let sql = Sql::of(&c);
        let id = Uuid::now_v7();
        let none: Option<i64> = None;
        let n = sql
            .execute(
                "INSERT INTO t (n, id, r, b, flag) VALUES (?2, ?1, ?3, ?4, ?5)",
                params![id, 7u32, 1.5, vec![1u8, 2], true],
            )
            .expect("insert");
        assert_eq!(n, 1);
        sql.execute("INSERT INTO t (id, n) VALUES (?1, ?2)", params!["other", none])
            .expect("insert");
        let row = sql
            .query_one(
                "SELECT id, n, r, b, flag FROM t WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<Uuid>(0)?,
                        r.get::<u32>(1)?,
                        r.get::<f64>(2)?,
                        r.get::<Vec<u8>>(3)?,
                        r.get::<bool>(4)?,
                    ))
                },
            )
            .expect("row");
        assert_eq!(row, (id, 7, 1.5, vec![1, 2], true));
        let missing: Option<i64> = sql
            .query_one("SELECT n FROM t WHERE id = 'other'", params![], |r| r.get(0))
            .expect("row");
        assert_eq!(missing, None);
        let all = sql
            .query_all("SELECT id FROM t ORDER BY id", params![], |r| r.get::<String>(0))
            .expect("rows");
        assert_eq!(all.len(), 2);
        assert!(
            sql.exists("SELECT 1 FROM t WHERE id = ?1", params!["other"])
                .expect("exists")
        );
        assert!(
            sql.query_opt("SELECT 1 FROM t WHERE id = ?1", params!["nope"], |r| r
                .get::<i64>(0))
                .expect("query")
                .is_none()
        );
        assert!(
            sql.query_one("SELECT 1 FROM t WHERE id = 'nope'", params![], |r| r
                .get::<i64>(0))
                .is_err()
        );
    }

    #[test]
    fn a_wrong_column_type_is_an_error_naming_the_column() {
        let c = conn();
        let sql = Sql::of(&c);
        sql.execute("INSERT INTO t (id, n) VALUES ('a', -1)", params![])
            .expect("insert");
        let err = sql
            .query_one("SELECT n FROM t", params![], |r| r.get::<u32>(0))
            .expect_err("negative into u32");
        assert!(err.to_string().contains("column 0"), "{err}");
        assert!(
            sql.query_one("SELECT id FROM t", params![], |r| r.get::<i64>(0))
                .is_err()
        );
    }

    #[test]
    fn a_failed_savepoint_undoes_only_its_own_writes() {
        let c = conn();
        let sql = Sql::of(&c);
        sql.execute("INSERT INTO t (id) VALUES ('kept')", params![])
            .expect("insert");
        let failed: Result<()> = sql.savepoint(|s| {
            s.execute("INSERT INTO t (id) VALUES ('undone')", params![])?;
            Err(Error::Conflict("changed my mind".into()))
        });
        assert!(failed.is_err());
        sql.savepoint(|s| s.execute("INSERT INTO t (id) VALUES ('also kept')", params![]))
            .expect("savepoint");
        let ids = sql
            .query_all("SELECT id FROM t ORDER BY id", params![], |r| r.get::<String>(0))
            .expect("rows");
        assert_eq!(ids, ["also kept", "kept"]);
    }
}
