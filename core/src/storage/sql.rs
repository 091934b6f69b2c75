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

use uuid::Uuid;

use super::postgres::bind as pg;
use super::sqlite::bind as lite;
use crate::error::{Error, Result};

/// A connection or transaction, as the facade exposes it.
#[derive(Clone, Copy)]
pub struct Sql<'c>(Engine<'c>);

/// The engine connection behind a handle.
#[derive(Clone, Copy)]
pub(crate) enum Engine<'c> {
    Sqlite(&'c lite::Conn),
    Postgres(&'c pg::PgConn),
}

/// Calls the engine binding's function of the same name on whichever engine.
macro_rules! dispatch {
    ($engine:expr, $function:ident($($arg:expr),*)) => {
        match $engine {
            Engine::Sqlite(c) => lite::$function(c, $($arg),*),
            Engine::Postgres(c) => pg::$function(c, $($arg),*),
        }
    };
}

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

    /// The engine connection behind a handle. (The trait is public only as the
    /// sealed supertrait of `Handle`; nothing outside core can name it or the
    /// engine it answers.)
    #[allow(private_interfaces)]
    pub trait Raw {
        fn raw(&self, _: Inside) -> super::Engine<'_>;
    }

    /// Handles that are (or dereference to) an engine's connection.
    macro_rules! raw_engine {
        ($t:ty, $engine:ident) => {
            impl $crate::storage::sql::sealed::Raw for $t {
                #[allow(private_interfaces)]
                fn raw(&self, _: $crate::storage::sql::sealed::Inside) -> $crate::storage::sql::Engine<'_> {
                    $crate::storage::sql::Engine::$engine(self)
                }
            }
        };
    }
    pub(crate) use raw_engine;

    impl Raw for super::Sql<'_> {
        #[allow(private_interfaces)]
        fn raw(&self, _: Inside) -> super::Engine<'_> {
            self.0
        }
    }
}

/// The engine connection behind `handle` (storage only: the rest of core speaks
/// the facade too).
pub(in crate::storage) fn raw<H: Handle + ?Sized>(handle: &H) -> Engine<'_> {
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
#[derive(Debug)]
pub enum Param<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    OwnedText(String),
    Blob(&'a [u8]),
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

/// A column's value as the engine answers it, borrowed from the row.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// A column value read from a row.
pub trait FromSql: Sized {
    #[doc(hidden)]
    fn from_column(value: Column<'_>) -> std::result::Result<Self, String>;
}

fn kind(v: Column<'_>) -> &'static str {
    match v {
        Column::Null => "null",
        Column::Integer(_) => "integer",
        Column::Real(_) => "real",
        Column::Text(_) => "text",
        Column::Blob(_) => "blob",
    }
}

impl FromSql for i64 {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        match v {
            Column::Integer(i) => Ok(i),
            other => Err(format!("expected an integer, found {}", kind(other))),
        }
    }
}

macro_rules! narrow_integer {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
                let i = i64::from_column(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
narrow_integer!(i32, u32, u64, usize);

impl FromSql for bool {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        Ok(i64::from_column(v)? != 0)
    }
}

impl FromSql for f64 {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        match v {
            Column::Real(r) => Ok(r),
            Column::Integer(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {}", kind(other))),
        }
    }
}

impl FromSql for String {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        match v {
            Column::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            other => Err(format!("expected text, found {}", kind(other))),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        match v {
            Column::Blob(b) => Ok(b.to_vec()),
            other => Err(format!("expected a blob, found {}", kind(other))),
        }
    }
}

impl FromSql for Uuid {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        let text = String::from_column(v)?;
        Uuid::parse_str(&text).map_err(|e| format!("`{text}` is not an id: {e}"))
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        match v {
            Column::Null => Ok(None),
            other => T::from_column(other).map(Some),
        }
    }
}

/// Whether `error` is the violation of a unique constraint (or primary key), for
/// callers that turn a duplicate into a 409 of their own.
pub fn is_unique_violation(error: &Error) -> bool {
    lite::is_unique_violation(error) || pg::is_unique_violation(error)
}

/// One row of a result.
pub struct Row<'r>(RowOf<'r>);

enum RowOf<'r> {
    Sqlite(&'r lite::EngineRow<'r>),
    Postgres(&'r pg::PgRow),
}

/// Calls the engine binding's row function of the same name.
macro_rules! on_row {
    ($row:expr, $function:ident($($arg:expr),*)) => {
        match $row {
            RowOf::Sqlite(r) => lite::$function(r, $($arg),*),
            RowOf::Postgres(r) => pg::$function(r, $($arg),*),
        }
    };
}

impl<'r> Row<'r> {
    pub(crate) fn sqlite(row: &'r lite::EngineRow<'r>) -> Self {
        Row(RowOf::Sqlite(row))
    }

    pub(crate) fn postgres(row: &'r pg::PgRow) -> Self {
        Row(RowOf::Postgres(row))
    }

    /// The value of column `index` (from 0), converted; a mismatch is an internal
    /// error naming the column.
    pub fn get<T: FromSql>(&self, index: usize) -> Result<T> {
        let value = on_row!(&self.0, column(index))?;
        T::from_column(value).map_err(|why| Error::internal(format!("column {index}: {why}")))
    }

    /// How many columns the row has (for statements whose shape is not known in
    /// advance, such as the external-plugin host's).
    pub fn len(&self) -> usize {
        on_row!(&self.0, column_count())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of column `index`.
    pub fn name(&self, index: usize) -> Result<String> {
        on_row!(&self.0, column_name(index))
    }
}

/// A value of any type the facade stores, owned: for statements built at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl ToSql for Value {
    fn to_param(&self) -> Param<'_> {
        match self {
            Value::Null => Param::Null,
            Value::Integer(i) => Param::Integer(*i),
            Value::Real(r) => Param::Real(*r),
            Value::Text(t) => Param::Text(t),
            Value::Blob(b) => Param::Blob(b),
        }
    }
}

impl FromSql for Value {
    fn from_column(v: Column<'_>) -> std::result::Result<Self, String> {
        Ok(match v {
            Column::Null => Value::Null,
            Column::Integer(i) => Value::Integer(i),
            Column::Real(r) => Value::Real(r),
            Column::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            Column::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

fn bind<'p>(params: &'p [&'p dyn ToSql]) -> Vec<Param<'p>> {
    params.iter().map(|p| p.to_param()).collect()
}

impl<'c> Sql<'c> {
    /// The facade over a connection core holds (or a transaction, which derefs
    /// to one); outside core, `Sql::from(handle)` or `SeedContext::sql`.
    pub(crate) fn of<H: Handle + ?Sized>(conn: &'c H) -> Sql<'c> {
        Sql(raw(conn))
    }

    /// Runs a statement; returns the rows it changed (writes through a tenant
    /// view report 0 on SQLite: check existence first where it matters).
    pub fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> Result<usize> {
        dispatch!(self.0, execute(sql, &bind(params)))
    }

    /// Runs `each` on every row as it is read, without collecting them (constant
    /// memory over any number of rows); `each` answers whether to go on.
    pub fn query_each(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        each: impl FnMut(&Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        dispatch!(self.0, query(sql, &bind(params), each))
    }

    /// Every row, mapped.
    pub fn query_all<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        mut map: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.query_each(sql, params, |row| {
            out.push(map(row)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row, mapped, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut map = Some(map);
        let mut out = None;
        self.query_each(sql, params, |row| {
            if let Some(map) = map.take() {
                out = Some(map(row)?);
            }
            Ok(false)
        })?;
        Ok(out)
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

    /// The names of the columns `sql` answers (even when it answers no row).
    pub fn columns(&self, sql: &str) -> Result<Vec<String>> {
        dispatch!(self.0, column_names(sql))
    }

    /// The engine behind this handle, for the few places where what runs must
    /// differ (migrations' texts).
    pub fn engine(&self) -> super::EngineKind {
        match self.0 {
            Engine::Sqlite(_) => super::EngineKind::Sqlite,
            Engine::Postgres(_) => super::EngineKind::Postgres,
        }
    }

    /// Whether a table (or view) of this name exists.
    pub fn has_table(&self, name: &str) -> Result<bool> {
        dispatch!(self.0, has_table(name))
    }

    /// Runs several statements without parameters (schema changes, core only).
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        dispatch!(self.0, batch(sql))
    }

    /// Runs `f` in a savepoint: its writes are kept if it returns `Ok`, undone
    /// (and only they) if it returns `Err`.
    pub fn savepoint<T>(&self, f: impl FnOnce(&Sql<'c>) -> Result<T>) -> Result<T> {
        self.batch("SAVEPOINT facade")?;
        match f(self) {
            Ok(value) => {
                self.batch("RELEASE facade")?;
                Ok(value)
            }
            Err(e) => {
                self.batch("ROLLBACK TO facade; RELEASE facade")?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn on_each_engine_pub(test: impl Fn(Sql<'_>)) {
        on_each_engine(test)
    }

    /// Runs `test` on a fresh SQLite database and, when PostgreSQL is installed, on
    /// a fresh PostgreSQL database, each with the table `t` in its engine's types.
    fn on_each_engine(test: impl Fn(Sql<'_>)) {
        let c = lite::open_in_memory().expect("db");
        Sql::of(&c)
            .batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, r REAL, b BLOB, flag INTEGER)")
            .expect("schema");
        test(Sql::of(&c));
        if let Some(pg) = postgres_database() {
            Sql::of(&pg)
                .batch(
                    "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, r DOUBLE PRECISION, b BYTEA, flag BOOLEAN)",
                )
                .expect("schema");
            test(Sql::of(&pg));
        }
    }

    /// A connection to a new database of the test cluster, if there is one.
    fn postgres_database() -> Option<pg::PgConn> {
        let cluster = plinth_test_pg::cluster()?;
        let name = cluster.unique_name("facade");
        pg::PgConn::connect(&cluster.admin_url())
            .and_then(|admin| Sql::of(&admin).batch(&format!("CREATE DATABASE {name}")))
            .expect("create database");
        Some(pg::PgConn::connect(&cluster.url(&name)).expect("connect"))
    }

    #[test]
    fn values_round_trip_through_numbered_parameters() {
        on_each_engine(values_round_trip);
    }

    fn values_round_trip(sql: Sql<'_>) {
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
        on_each_engine(wrong_column_type);
    }

    fn wrong_column_type(sql: Sql<'_>) {
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
        on_each_engine(|sql| {
            // PostgreSQL has savepoints only inside a transaction.
            sql.batch("BEGIN").expect("begin");
            failed_savepoint(sql);
            sql.batch("COMMIT").expect("commit");
        });
    }

    fn failed_savepoint(sql: Sql<'_>) {
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

#[cfg(test)]
mod engine_tests {
    use super::*;

    /// What differs between the engines and the facade hides: bare and numbered
    /// parameters, a duplicate key, the shape of a statement, the catalog.
    #[test]
    fn both_engines_answer_alike_where_the_facade_owns_the_difference() {
        tests::on_each_engine_pub(|sql| {
            sql.execute(
                "INSERT INTO t (id, n, flag) VALUES (?, ?, ?)",
                params!["a", 1, false],
            )
            .expect("bare parameters");
            let dup = sql
                .execute("INSERT INTO t (id, n) VALUES (?1, ?2)", params!["a", 2])
                .expect_err("duplicate key");
            assert!(is_unique_violation(&dup), "{dup}");
            assert!(!is_unique_violation(&Error::Conflict("x".into())));
            assert_eq!(
                sql.columns("SELECT id, n AS count FROM t WHERE id = ?1")
                    .expect("columns"),
                ["id", "count"]
            );
            assert!(sql.has_table("t").expect("catalog"));
            assert!(!sql.has_table("nope").expect("catalog"));
            let flag: bool = sql
                .query_one("SELECT flag FROM t WHERE id = ?1", params!["a"], |r| r.get(0))
                .expect("flag");
            assert!(!flag);
            let mut seen = 0;
            sql.query_each("SELECT id FROM t", params![], |row| {
                assert_eq!(row.len(), 1);
                assert_eq!(row.name(0).expect("name"), "id");
                assert_eq!(row.get::<Value>(0).expect("value"), Value::Text("a".into()));
                seen += 1;
                Ok(true)
            })
            .expect("each");
            assert_eq!(seen, 1);
            // Aggregates answer alike: sum() of integers is numeric on PostgreSQL.
            sql.execute("INSERT INTO t (id, n, r) VALUES ('b', 41, 0.25)", params![])
                .expect("insert");
            let (total, fraction, negative): (i64, f64, i64) = sql
                .query_one(
                    "SELECT sum(n), sum(r) + 0.5, -sum(n) * 100000000 FROM t",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .expect("sums");
            assert_eq!((total, fraction, negative), (42, 0.75, -4_200_000_000));
            // Searches ignore ASCII case on both engines.
            assert!(
                sql.exists("SELECT 1 FROM t WHERE id LIKE ?1", params!["A"])
                    .expect("like")
            );
        });
    }
}
