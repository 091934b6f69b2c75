//! Tenant isolation on SQLite, generated from the declarations
//! ([`crate::storage::isolation`]): for each tenant table a view filtered on
//! `current_org()` and INSTEAD OF triggers that refuse rows of another org.
//!
//! Run inside the migration transaction after the migrations: what differs from the
//! declaration (new table, new column, a hand-written view of an older release) is
//! dropped and created again; what matches is left alone, so an unchanged schema
//! costs a few catalog reads and no schema change.

use crate::error::Result;
use crate::params;
use crate::storage::isolation::{TenantTable, Writes, check_columns};
use crate::storage::sql::Sql;

const GUARD: &str =
    "SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();";

struct Column {
    name: String,
    not_null: bool,
    default: Option<String>,
    primary_key: bool,
}

/// Creates or refreshes the isolation of every declared table; answers how many
/// were (re)created.
pub(crate) fn install(sql: &Sql<'_>, tables: &[TenantTable]) -> Result<usize> {
    let mut changed = 0;
    for table in tables {
        let wanted = ddl(table, &columns(sql, table)?)?;
        let present: Vec<(String, String)> = sql.query_all(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = ?1 AND type IN ('view', 'trigger') ORDER BY name",
            params![table.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut expected: Vec<(String, String)> = wanted.clone();
        expected.sort();
        if present == expected {
            continue;
        }
        // Dropping the view drops its triggers with it.
        sql.batch(&format!("DROP VIEW IF EXISTS {}", table.name))?;
        for (_, statement) in &wanted {
            sql.batch(statement)?;
        }
        tracing::info!(table = table.name, "tenant isolation (re)created");
        changed += 1;
    }
    Ok(changed)
}

fn columns(sql: &Sql<'_>, table: &TenantTable) -> Result<Vec<Column>> {
    let columns = sql.query_all(
        "SELECT name, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid",
        params![table.table()],
        |r| {
            Ok(Column {
                name: r.get(0)?,
                not_null: r.get(1)?,
                default: r.get(2)?,
                primary_key: r.get::<i64>(3)? > 0,
            })
        },
    )?;
    check_columns(table, columns.iter().map(|c| c.name.as_str()))?;
    Ok(columns)
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn refuse(why: &str) -> String {
    format!("SELECT RAISE(ABORT, {});", quoted(why))
}

/// The view and its three triggers, as (name, statement).
fn ddl(table: &TenantTable, columns: &[Column]) -> Result<Vec<(String, String)>> {
    let name = table.name;
    let base = table.table();
    let all: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let view = format!(
        "CREATE VIEW {name} AS SELECT {} FROM {base} WHERE org_id = current_org()",
        all.join(", ")
    );

    let (insert_body, update_body, delete_body) = match table.writes {
        Writes::None(why) => (refuse(why), refuse(why), refuse(why)),
        writes => {
            let inserted: Vec<&Column> = columns
                .iter()
                .filter(|c| !table.generated.contains(&c.name.as_str()))
                .collect();
            let values: Vec<String> = inserted
                .iter()
                .map(|c| match (&c.default, c.not_null) {
                    // An INSTEAD OF trigger sees an omitted column as NULL: the
                    // table's default applies as if it had been omitted there.
                    (Some(default), true) => format!("coalesce(NEW.{}, {default})", c.name),
                    _ => format!("NEW.{}", c.name),
                })
                .collect();
            let insert = format!(
                "{GUARD}\n    INSERT INTO {base} ({}) VALUES ({});",
                inserted
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                values.join(", ")
            );

            let key: Vec<String> = columns
                .iter()
                .filter(|c| c.primary_key && c.name != "org_id")
                .map(|c| format!(" AND {0} = OLD.{0}", c.name))
                .collect();
            let settable = |c: &&Column| !c.primary_key && c.name != "org_id";
            let frozen: Vec<&str> = columns
                .iter()
                .filter(settable)
                .filter(|c| !table.may_change(&c.name) && !table.generated.contains(&c.name.as_str()))
                .map(|c| c.name.as_str())
                .collect();
            let set: Vec<String> = columns
                .iter()
                .filter(settable)
                .filter(|c| table.may_change(&c.name))
                .map(|c| format!("{0} = NEW.{0}", c.name))
                .collect();
            let mut update = GUARD.to_string();
            if !frozen.is_empty() {
                let changed: Vec<String> = frozen.iter().map(|c| format!("NEW.{c} IS NOT OLD.{c}")).collect();
                update.push_str(&format!(
                    "\n    SELECT RAISE(ABORT, {}) WHERE {};",
                    quoted(&format!("{name}: {} cannot change", frozen.join(", "))),
                    changed.join(" OR ")
                ));
            }
            if !set.is_empty() {
                update.push_str(&format!(
                    "\n    UPDATE {base} SET {} WHERE org_id = current_org(){};",
                    set.join(", "),
                    key.concat()
                ));
            }
            let delete = match writes {
                Writes::NoDelete(why) => refuse(why),
                _ => format!("DELETE FROM {base} WHERE org_id = current_org(){};", key.concat()),
            };
            (insert, update, delete)
        }
    };
    let trigger = |event: &str, body: &str| {
        let trigger = format!("{name}_{}", event.to_lowercase());
        let statement =
            format!("CREATE TRIGGER {trigger} INSTEAD OF {event} ON {name} BEGIN\n    {body}\nEND");
        (trigger, statement)
    };
    Ok(vec![
        (name.to_string(), view),
        trigger("INSERT", &insert_body),
        trigger("UPDATE", &update_body),
        trigger("DELETE", &delete_body),
    ])
}
