//! The migration run on SQLite: one immediate transaction, waited for across
//! processes, holding the write lock from reading what is applied to the last record.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::db::write_gate;
use crate::error::{Error, Result};
use crate::storage::isolation::TenantTable;
use crate::storage::migrations::{Migration, apply_pending};
use crate::storage::sql::Sql;

/// Applies every pending migration, each in its own savepoint together with its
/// record, so a failing migration leaves no trace (those before it stay applied).
/// Returns what was applied. Then the isolation of the declared tenant tables is
/// brought up to date in the same transaction (see [`super::isolation`]).
///
/// The whole run holds the database's write lock from reading what is applied to
/// the last record: a second process migrating the same file at the same moment
/// waits for it, then finds nothing left to do.
pub fn run(conn: &Connection, set: &[Migration], tenant_tables: &[TenantTable]) -> Result<Vec<Migration>> {
    let gate = write_gate(conn);
    let _turn = gate.lock();
    let tx = begin_waiting(conn)?;
    let sql = Sql::of(&tx);
    let isolated = match apply_pending(&sql, set)? {
        Ok(pending) => super::isolation::install(&sql, tenant_tables).map(|_| pending),
        Err(e) => Err(e),
    };
    // What applied before a failure stays applied (each migration is whole).
    tx.commit()?;
    isolated
}

/// Starts an immediate transaction, waiting as long as another process holds the
/// write lock (its migrations may take longer than the busy timeout).
fn begin_waiting(conn: &Connection) -> Result<Transaction<'_>> {
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        match Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
            Ok(tx) => return Ok(tx),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy => {
                if !told {
                    tracing::info!("waiting for another process to finish with the database");
                    told = true;
                }
                if started.elapsed() > MIGRATION_WAIT {
                    return Err(Error::Unavailable(format!(
                        "the database stayed locked by another process for {} s",
                        MIGRATION_WAIT.as_secs()
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long a migration run waits for another process's run to finish.
const MIGRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
