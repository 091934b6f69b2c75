//! `plinth db copy`: every row of a SQLite database into a freshly migrated,
//! otherwise empty PostgreSQL database, in one transaction on the target.
//!
//! Both sides carry the same migrations, so every table of the target has its
//! namesake in the source with the same columns. Rows are copied verbatim (ids,
//! times, the audit chain's sequence and hashes), parents before children, with
//! the target's own triggers off while it fills: they would renumber invoices,
//! count usage twice or note changes nobody watches. Rows the migrations put in
//! the target (the plan catalogue) make way for the source's.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::params;
use crate::storage::isolation::identifier;
use crate::storage::sql::{Sql, ToSql, Value};

/// Rows per INSERT statement (PostgreSQL takes at most 65,535 parameters).
const BATCH_ROWS: usize = 500;

/// How many tables, views or other relations the target's schema holds.
pub(crate) fn relations(target: &Sql<'_>) -> Result<i64> {
    target.query_one(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
        params![],
        |r| r.get(0),
    )
}

/// Copies every table but the migration record; returns (table, rows) in the
/// order copied. `target` is a transaction on the schema's owner.
pub(crate) fn copy(source: &Sql<'_>, target: &Sql<'_>) -> Result<Vec<(String, u64)>> {
    let mut copied = Vec::new();
    for table in tables_parents_first(target)? {
        identifier(&table)?;
        if !source.has_table(&table)? {
            return Err(Error::internal(format!(
                "the source has no table `{table}`: migrate it with this version first"
            )));
        }
        let columns: Vec<String> = target.query_all(
            "SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = CAST(?1 AS text)::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            params![table],
            |r| r.get(0),
        )?;
        for column in &columns {
            identifier(column)?;
        }
        target.batch(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))?;
        target.execute(&format!("DELETE FROM {table}"), params![])?;
        let list = columns.join(", ");
        let mut rows: Vec<Vec<Value>> = Vec::with_capacity(BATCH_ROWS);
        let mut count = 0u64;
        let mut failure = None;
        source.query_each(&format!("SELECT {list} FROM {table}"), params![], |r| {
            let row = (0..columns.len())
                .map(|i| r.get::<Value>(i))
                .collect::<Result<Vec<_>>>()?;
            rows.push(row);
            if rows.len() == BATCH_ROWS {
                if let Err(e) = insert(target, &table, &list, columns.len(), &rows) {
                    failure = Some(e);
                    return Ok(false);
                }
                count += rows.len() as u64;
                rows.clear();
            }
            Ok(true)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !rows.is_empty() {
            insert(target, &table, &list, columns.len(), &rows)?;
            count += rows.len() as u64;
        }
        target.batch(&format!("ALTER TABLE {table} ENABLE TRIGGER USER"))?;
        copied.push((table, count));
    }
    Ok(copied)
}

fn insert(target: &Sql<'_>, table: &str, list: &str, width: usize, rows: &[Vec<Value>]) -> Result<()> {
    let values: Vec<String> = (0..rows.len())
        .map(|r| {
            let cells: Vec<String> = (1..=width).map(|c| format!("?{}", r * width + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    let sql = format!("INSERT INTO {table} ({list}) VALUES {}", values.join(", "));
    let params: Vec<&dyn ToSql> = rows.iter().flatten().map(|v| v as &dyn ToSql).collect();
    target
        .execute(&sql, &params)
        .map_err(|e| Error::internal(format!("copying {table}: {e}")))?;
    Ok(())
}

/// The schema's tables but the migration record, each after the tables its
/// foreign keys name.
fn tables_parents_first(target: &Sql<'_>) -> Result<Vec<String>> {
    let tables: Vec<String> = target.query_all(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname <> 'plinth_migrations'
         ORDER BY c.relname",
        params![],
        |r| r.get(0),
    )?;
    let edges: Vec<(String, String)> = target.query_all(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
         WHERE contype = 'f' AND conrelid <> confrelid",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (child, parent) in &edges {
        parents.entry(child.as_str()).or_default().push(parent.as_str());
    }
    let mut ordered: Vec<String> = Vec::with_capacity(tables.len());
    let mut placed: HashSet<&str> = HashSet::new();
    while ordered.len() < tables.len() {
        let before = ordered.len();
        for table in &tables {
            let ready = parents.get(table.as_str()).is_none_or(|ps| {
                ps.iter()
                    .all(|p| placed.contains(p) || !tables.iter().any(|t| t == p))
            });
            if !placed.contains(table.as_str()) && ready {
                placed.insert(table.as_str());
                ordered.push(table.clone());
            }
        }
        if ordered.len() == before {
            return Err(Error::internal("foreign keys form a cycle: no order to copy in"));
        }
    }
    Ok(ordered)
}
