//! The facade's binding to PostgreSQL: how [`Sql`](crate::storage::sql::Sql) runs
//! statements on a `postgres` client, binds the facade's values to whatever type
//! the server inferred for each parameter, reads columns, and how the engine's
//! errors become core's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;

use bytes::BytesMut;

use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use postgres::{Client, Statement};

use super::dialect;
use crate::error::{Error, Result};
use crate::storage::sql::{Column, Param, Row};

/// One PostgreSQL connection as the facade holds it: the client and its prepared
/// statements, by the facade's SQL text. Used from one thread at a time (a pooled
/// connection on a blocking thread), hence the cells.
pub(crate) struct PgConn {
    /// Always `Some` but while being dropped (see `Drop`).
    client: RefCell<Option<Client>>,
    statements: RefCell<HashMap<String, Statement>>,
    /// A tenant connection: statements that could change its role or its org
    /// binding are refused before they reach the server.
    tenant: bool,
    /// Inside a transaction begun by [`PgConn::begin`] and not yet ended: a
    /// connection going back to its pool in this state is dropped, not reused.
    in_transaction: std::cell::Cell<bool>,
    /// A statement that may have written ran since the change notes were last
    /// taken (see [`PgConn::take_changes`]).
    wrote: std::cell::Cell<bool>,
    /// Tables whose committed changes were read but not yet announced.
    noted: RefCell<Vec<String>>,
}

/// The engine's row, wrapped by the facade's [`Row`].
pub(crate) type PgRow = postgres::Row;

/// Prepared statements kept per connection before the cache starts over.
const STATEMENT_CACHE: usize = 256;

impl PgConn {
    pub(crate) fn new(client: Client) -> Self {
        PgConn {
            client: RefCell::new(Some(client)),
            statements: RefCell::new(HashMap::new()),
            tenant: false,
            in_transaction: std::cell::Cell::new(false),
            wrote: std::cell::Cell::new(false),
            noted: RefCell::new(Vec::new()),
        }
    }

    /// The tables the committed writes on this connection changed since last
    /// asked, as the statement triggers of [`super::notes`] recorded them; only
    /// asks the server when a statement other than a SELECT ran.
    pub(crate) fn take_changes(&self) -> Result<Vec<String>> {
        if self.wrote.replace(false) {
            let taken = self.read_notes(super::notes::TAKE)?;
            self.noted.borrow_mut().extend(taken);
        }
        Ok(std::mem::take(&mut *self.noted.borrow_mut()))
    }

    /// Runs `sql` (ending with [`super::notes::TAKE`]) and reads the notes it answers.
    fn read_notes(&self, sql: &str) -> Result<Vec<String>> {
        let rows = self.client()?.simple_query(sql)?;
        Ok(rows
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => row.get(0).map(super::notes::parse),
                _ => None,
            })
            .unwrap_or_default())
    }

    fn note_statement(&self, sql: &str) {
        let first = sql.trim_start().get(..6).unwrap_or_default();
        if !first.eq_ignore_ascii_case("select") {
            self.wrote.set(true);
        }
    }

    fn client(&self) -> Result<std::cell::RefMut<'_, Client>> {
        std::cell::RefMut::filter_map(self.client.borrow_mut(), Option::as_mut)
            .map_err(|_| Error::internal("the PostgreSQL connection is closed"))
    }

    /// Begins a transaction, then runs `prelude` (locks, the org binding) in the
    /// same round trip.
    pub(crate) fn begin(&self, prelude: &str) -> Result<()> {
        self.in_transaction.set(true);
        self.client()?.batch_execute(&format!("BEGIN; {prelude}"))?;
        Ok(())
    }

    /// Commits (`true`) or rolls back the transaction begun by [`PgConn::begin`].
    /// A committed transaction that wrote reads its change notes in the same round
    /// trip as its COMMIT; a rolled-back one has none (they rolled back with it).
    pub(crate) fn end(&self, commit: bool) -> Result<()> {
        if commit && self.wrote.replace(false) {
            let taken = self.read_notes(&format!("COMMIT; {}", super::notes::TAKE))?;
            self.noted.borrow_mut().extend(taken);
        } else {
            self.client()?
                .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })?;
            if !commit {
                self.wrote.set(false);
            }
        }
        self.in_transaction.set(false);
        Ok(())
    }

    /// Whether the connection can go back to its pool: open, and not inside a
    /// transaction (a closure that panicked mid-write).
    pub(crate) fn is_reusable(&self) -> bool {
        !self.in_transaction.get() && self.client.borrow().as_ref().is_some_and(|c| !c.is_closed())
    }

    pub(crate) fn ping(&self) -> Result<()> {
        self.client()?.simple_query("")?;
        Ok(())
    }

    /// This connection as a tenant connection (see [`refused_on_tenant`]).
    pub(crate) fn tenant(mut self) -> Self {
        self.tenant = true;
        self
    }

    /// Connects to `url` without TLS (a local or private-network server).
    pub(crate) fn connect(url: &str) -> Result<Self> {
        Ok(PgConn::new(Client::connect(url, postgres::NoTls)?))
    }

    /// [`PgConn::connect`] with a parsed configuration.
    pub(crate) fn connect_with(config: &postgres::Config) -> Result<Self> {
        Ok(PgConn::new(config.connect(postgres::NoTls)?))
    }

    fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        if self.tenant && refused_on_tenant(sql) {
            return Err(Error::internal(format!(
                "refused on a tenant connection (it could change the role or the org binding): {sql}"
            )));
        }
        let statement = self.client()?.prepare(&dialect::rewrite(sql))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// The client closes its connection with a runtime of its own, which cannot start
/// on an async runtime's thread (a pool dropped there at shutdown): such a drop
/// happens on a thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            let client = self.client.get_mut().take();
            let _ = std::thread::Builder::new()
                .name("plinth-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

crate::storage::sql::sealed::raw_engine!(PgConn, Postgres);

/// The statement binding a transaction to `org`. A setting takes no parameter; the
/// id is formatted, never caller text.
pub(crate) fn bind_org_sql(org: uuid::Uuid) -> String {
    format!(
        "SET LOCAL {} = '{}'",
        super::isolation::ORG_SETTING,
        org.hyphenated()
    )
}

/// The client's error with the server's words: `postgres::Error` alone displays as
/// "db error", which says nothing in a log or a failed migration.
#[derive(Debug)]
pub(crate) struct PgFailure(postgres::Error);

impl std::fmt::Display for PgFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(f, "{}: {}", db.severity(), db.message())?;
                if let Some(detail) = db.detail() {
                    write!(f, " ({detail})")?;
                }
                if let Some(position) = db.position() {
                    write!(f, " at {position:?}")?;
                }
                Ok(())
            }
            None => {
                // "error connecting to server" alone hides why (refused, timed out, auth).
                write!(f, "{}", self.0)?;
                if let Some(cause) = self.0.source() {
                    write!(f, ": {cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl StdError for PgFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::internal(PgFailure(e))
    }
}

fn values<'p>(params: &'p [Param<'p>]) -> Vec<&'p (dyn PgToSql + Sync)> {
    params.iter().map(|p| p as &(dyn PgToSql + Sync)).collect()
}

pub(crate) fn execute(conn: &PgConn, sql: &str, params: &[Param<'_>]) -> Result<usize> {
    let statement = conn.statement(sql)?;
    conn.note_statement(sql);
    let n = conn.client()?.execute(&statement, &values(params))?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Runs `each` over the rows until it answers `false` or they run out. The rows
/// are fetched first, so `each` may run statements of its own on the connection.
pub(crate) fn query(
    conn: &PgConn,
    sql: &str,
    params: &[Param<'_>],
    mut each: impl FnMut(&Row<'_>) -> Result<bool>,
) -> Result<()> {
    let statement = conn.statement(sql)?;
    conn.note_statement(sql);
    let rows = conn.client()?.query(&statement, &values(params))?;
    for row in &rows {
        if !each(&Row::postgres(row))? {
            break;
        }
    }
    Ok(())
}

pub(crate) fn batch(conn: &PgConn, sql: &str) -> Result<()> {
    if conn.tenant && refused_on_tenant(sql) {
        return Err(Error::internal(format!("refused on a tenant connection: {sql}")));
    }
    conn.note_statement(sql);
    Ok(conn.client()?.batch_execute(sql)?)
}

/// Whether `sql` could change a connection's role or settings (its org binding):
/// `SET`, `RESET`, `DO` blocks (which could run them), `DISCARD`, or a call of
/// `set_config` anywhere, quoted or not. A prepared statement is one statement, so
/// its first word says what it is. Row-level security holds whatever the binding
/// says; this keeps tenant SQL from choosing the binding.
pub(crate) fn refused_on_tenant(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let first = lower
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default().trim())
        .find(|l| !l.is_empty())
        .and_then(|l| {
            l.split(|c: char| !c.is_ascii_alphabetic())
                .find(|w| !w.is_empty())
        })
        .unwrap_or_default()
        .to_string();
    matches!(first.as_str(), "set" | "reset" | "do" | "discard")
        || lower.contains("set_config")
        || lower.contains("u&")
}

pub(crate) fn has_table(conn: &PgConn, name: &str) -> Result<bool> {
    let rows = conn.client()?.query(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname = $1 AND n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'p')",
        &[&name],
    )?;
    Ok(!rows.is_empty())
}

pub(crate) fn column_names(conn: &PgConn, sql: &str) -> Result<Vec<String>> {
    Ok(conn
        .statement(sql)?
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect())
}

pub(crate) fn column<'r>(row: &'r PgRow, index: usize) -> Result<Column<'r>> {
    let ty = row
        .columns()
        .get(index)
        .ok_or_else(|| Error::internal(format!("no column {index}")))?
        .type_()
        .clone();
    let value = match ty {
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)?
            .map(|v| Column::Integer(v.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)?
            .map(|v| Column::Integer(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Column::Integer),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)?
            .map(|v| Column::Integer(v.into())),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(index)?
            .map(|v| Column::Real(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(index)?.map(Column::Real),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => row
            .try_get::<_, Option<&str>>(index)?
            .map(|v| Column::Text(v.as_bytes())),
        Type::BYTEA => row.try_get::<_, Option<&[u8]>>(index)?.map(Column::Blob),
        // `sum()` of integers answers numeric: read it as SQLite would answer.
        Type::NUMERIC => row.try_get::<_, Option<Numeric>>(index)?.map(|n| n.0),
        other => {
            return Err(Error::internal(format!(
                "column {index} has type {other}, which the facade does not read"
            )));
        }
    };
    Ok(value.unwrap_or(Column::Null))
}

/// A `numeric` value as the facade reads it: an integer when it has no fraction
/// and fits, else a real.
struct Numeric(Column<'static>);

impl<'a> postgres::types::FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn StdError + Sync + Send>> {
        // Binary format: ndigits, weight, sign, dscale (i16 each), then ndigits
        // base-10000 digits, the first worth 10000^weight.
        let word = |i: usize| -> std::result::Result<i16, Box<dyn StdError + Sync + Send>> {
            let bytes = raw.get(2 * i..2 * i + 2).ok_or("short numeric")?;
            Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
        };
        let (ndigits, weight, sign, dscale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
        if sign == 0xC000 {
            return Err("NaN is not a number the facade reads".into());
        }
        let mut value = 0f64;
        let mut integer: Option<i64> = Some(0);
        for k in 0..usize::try_from(ndigits)? {
            let digit = word(4 + k)?;
            let exponent = i32::from(weight) - i32::try_from(k)?;
            value += f64::from(digit) * 10_000f64.powi(exponent);
            integer = match (integer, u32::try_from(exponent)) {
                (Some(acc), Ok(e)) => 10_000i64
                    .checked_pow(e)
                    .and_then(|scale| i64::from(digit).checked_mul(scale))
                    .and_then(|part| acc.checked_add(part)),
                _ if digit == 0 => integer,
                _ => None,
            };
        }
        let negative = sign == 0x4000;
        Ok(Numeric(match integer {
            Some(i) if dscale == 0 => Column::Integer(if negative { -i } else { i }),
            _ => Column::Real(if negative { -value } else { value }),
        }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

pub(crate) fn column_count(row: &PgRow) -> usize {
    row.len()
}

pub(crate) fn column_name(row: &PgRow, index: usize) -> Result<String> {
    row.columns()
        .get(index)
        .map(|c| c.name().to_string())
        .ok_or_else(|| Error::internal(format!("no column {index}")))
}

pub(crate) fn is_unique_violation(error: &Error) -> bool {
    let Error::Internal(cause) = error else {
        return false;
    };
    cause
        .downcast_ref::<PgFailure>()
        .and_then(|f| f.0.code())
        .is_some_and(|code| *code == SqlState::UNIQUE_VIOLATION)
}

/// The facade's values take the type the server inferred for their parameter:
/// one integer binds to `smallint`, `integer`, `bigint` or `boolean` alike, as it
/// does on SQLite; a value that cannot take the type is an error naming it.
impl PgToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let textual = matches!(
            *ty,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
        );
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Integer(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ if textual => i.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a {ty} parameter").into()),
            },
            Param::Real(r) => match *ty {
                Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                Type::FLOAT8 => r.to_sql(ty, out),
                _ => Err(format!("a number cannot be bound to a {ty} parameter").into()),
            },
            Param::Text(s) if textual => s.to_sql(ty, out),
            Param::OwnedText(s) if textual => s.as_str().to_sql(ty, out),
            Param::Text(_) | Param::OwnedText(_) => {
                Err(format!("text cannot be bound to a {ty} parameter").into())
            }
            Param::Blob(b) if *ty == Type::BYTEA => b.to_sql(ty, out),
            Param::Blob(_) => Err(format!("bytes cannot be bound to a {ty} parameter").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
