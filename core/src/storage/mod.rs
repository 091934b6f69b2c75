//! Storage: the SQL facade every area speaks, migrations, change notes, and the
//! engine behind them.
//!
//! Nothing outside `storage::sqlite` and `storage::postgres` names an engine: the
//! rest of core and every plugin reach the database through [`sql::Sql`], the
//! engine-neutral pools in [`db`] and the migration set in [`migrations`].

pub mod changes;
pub mod db;
pub mod isolation;
pub mod migrations;
pub(crate) mod postgres;
pub mod sql;
pub mod sqlite;

pub use sqlite::backup;

/// The database engines Plinth runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Sqlite,
    Postgres,
}
