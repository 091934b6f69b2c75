//! Tenant tables declared by a plugin: core generates their isolation (view and
//! guarded triggers) from the declaration and the table's own columns, keeps it in
//! step with later migrations, and leaves an unchanged schema alone.

use std::sync::Arc;

use plinth_core::params;
use plinth_core::storage::migrations::Migration;
use plinth_core::tenancy::{TenantDb, TenantTable, bound};
use plinth_core::{App, Plugin, Result};
use uuid::Uuid;

use crate::harness::{TestApp, db_path};

/// A plugin whose only isolation is its declaration: the migration creates the
/// base table and nothing else.
struct Gadgets {
    /// Ships a second migration adding a column.
    with_color: bool,
    /// Declares a table no migration creates.
    phantom: bool,
}

const CREATE: &str = "CREATE TABLE tenant_gadgets (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    serial TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 1
) STRICT;";

impl Plugin for Gadgets {
    fn name(&self) -> &'static str {
        "gadgets"
    }

    fn description(&self) -> &'static str {
        "Gadgets: a tenant table declared, not written by hand"
    }

    fn migrations(&self) -> Result<Vec<Migration>> {
        let mut set = vec![Migration {
            owner: "gadgets".into(),
            version: 1,
            name: "create_gadgets".into(),
            sql: CREATE.into(),
            postgres: None,
        }];
        if self.with_color {
            set.push(Migration {
                owner: "gadgets".into(),
                version: 2,
                name: "add_color".into(),
                sql: "ALTER TABLE tenant_gadgets ADD COLUMN color TEXT;".into(),
                postgres: None,
            });
        }
        Ok(set)
    }

    fn tenant_tables(&self) -> Vec<TenantTable> {
        let mut tables = vec![
            TenantTable::new("gadgets")
                .immutable(&["serial"])
                .no_delete("gadgets are kept"),
        ];
        if self.phantom {
            tables.push(TenantTable::new("phantoms"));
        }
        tables
    }
}

fn gadgets(with_color: bool) -> Gadgets {
    Gadgets {
        with_color,
        phantom: false,
    }
}

async fn new_org(app: &App, slug: &str) -> TenantDb {
    let org = Uuid::now_v7();
    let db = app.platform().tenancy().bind(org);
    let slug = slug.to_string();
    db.write(move |sql| bound::create_org(sql, org, "Org", &slug))
        .await
        .expect("org");
    db
}

async fn count(db: &TenantDb) -> i64 {
    db.call(|sql| sql.query_one("SELECT count(*) FROM gadgets", params![], |r| r.get(0)))
        .await
        .expect("count")
}

fn schema_version(dir: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db_path(dir))
        .expect("open")
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .expect("schema version")
}

#[tokio::test]
async fn a_declared_tenant_table_is_isolated_without_hand_written_ddl() {
    let (app, _dir) = TestApp::builder().plugin(gadgets(false)).build();
    app.migrate().expect("migrate");
    let (a, b) = (new_org(&app, "a").await, new_org(&app, "b").await);
    let (a_id, b_id) = (a.org_id(), b.org_id());
    let gadget = Uuid::now_v7();

    // Omitted columns take the table's default, as on the table itself.
    a.write(move |sql| {
        sql.execute(
            "INSERT INTO gadgets (id, org_id, serial) VALUES (?1, ?2, 'g-1')",
            params![gadget, a_id],
        )
    })
    .await
    .expect("insert");
    let size: i64 = a
        .call(move |sql| {
            sql.query_one("SELECT size FROM gadgets WHERE id = ?1", params![gadget], |r| {
                r.get(0)
            })
        })
        .await
        .expect("size");
    assert_eq!(size, 1);
    assert_eq!(
        (count(&a).await, count(&b).await),
        (1, 0),
        "b sees none of a's rows"
    );

    // A row of another org is refused, whoever writes it.
    let foreign = a
        .write(move |sql| {
            sql.execute(
                "INSERT INTO gadgets (id, org_id, serial) VALUES (?1, ?2, 'g-2')",
                params![Uuid::now_v7(), b_id],
            )
        })
        .await
        .expect_err("row of b through a's handle");
    assert!(refused(&foreign, "tenant isolation"), "{foreign}");
    let moved = a
        .write(move |sql| sql.execute("UPDATE gadgets SET org_id = ?1", params![b_id]))
        .await
        .expect_err("moving a row to b");
    assert!(refused(&moved, "tenant isolation"), "{moved}");

    // b's writes cannot reach a's row (PostgreSQL refuses the DELETE outright:
    // the declaration grants no DELETE on gadgets).
    let on_postgres = crate::harness::on_postgres();
    b.write(move |sql| {
        sql.execute("UPDATE gadgets SET size = 9 WHERE id = ?1", params![gadget])?;
        if !on_postgres {
            sql.execute("DELETE FROM gadgets WHERE id = ?1", params![gadget])?;
        }
        Ok(())
    })
    .await
    .expect("b's writes touch nothing");

    // What the declaration adds: an immutable column and no deletes.
    let serial = a
        .write(move |sql| {
            sql.execute(
                "UPDATE gadgets SET serial = 'other' WHERE id = ?1",
                params![gadget],
            )
        })
        .await
        .expect_err("serial is immutable");
    assert!(refused(&serial, "gadgets: serial cannot change"), "{serial}");
    a.write(move |sql| sql.execute("UPDATE gadgets SET size = 3 WHERE id = ?1", params![gadget]))
        .await
        .expect("size may change");
    let delete = a
        .write(move |sql| sql.execute("DELETE FROM gadgets WHERE id = ?1", params![gadget]))
        .await
        .expect_err("no deletes");
    assert!(refused(&delete, "gadgets are kept"), "{delete}");
    let row: (i64, String) = a
        .call(move |sql| {
            sql.query_one(
                "SELECT size, serial FROM gadgets WHERE id = ?1",
                params![gadget],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
        .expect("row");
    assert_eq!(row, (3, "g-1".to_string()));

    // SQLite's tenant pool reaches only views; PostgreSQL's reads the base table
    // (its views run with the reader's rights) and row-level security shows it
    // the bound org's rows only.
    let base = a
        .call(|sql| {
            sql.query_one("SELECT count(*) FROM tenant_gadgets", params![], |r| {
                r.get::<i64>(0)
            })
        })
        .await;
    match base {
        Ok(n) => assert!(
            crate::harness::on_postgres() && n == 1,
            "{n} rows through the base table"
        ),
        Err(e) => assert!(!crate::harness::on_postgres(), "{e}"),
    }
}

/// Whether a write was refused by the isolation: SQLite's generated triggers say
/// why in the declaration's words; PostgreSQL refuses by row-level security, the
/// view's check option or the column privileges generated from the declaration.
fn refused(error: &plinth_core::Error, sqlite_says: &str) -> bool {
    let text = error.to_string();
    if crate::harness::on_postgres() {
        ["row-level security", "check option", "permission denied"]
            .iter()
            .any(|why| text.contains(why))
    } else {
        text.contains(sqlite_says)
    }
}

#[tokio::test]
async fn a_column_added_by_a_later_migration_reaches_the_view_and_an_unchanged_schema_is_left_alone() {
    let (first, dir) = TestApp::builder().plugin(gadgets(false)).build();
    first.migrate().expect("migrate v1");
    drop(first);

    let (app, dir) = TestApp::builder().plugin(gadgets(true)).in_dir(dir).build();
    let applied = app.migrate().expect("migrate v2");
    assert_eq!(applied.len(), 1, "only the new migration");
    let a = new_org(&app, "a").await;
    let a_id = a.org_id();
    a.write(move |sql| {
        sql.execute(
            "INSERT INTO gadgets (id, org_id, serial, color) VALUES (?1, ?2, 's', 'teal')",
            params![Uuid::now_v7(), a_id],
        )
    })
    .await
    .expect("insert with the new column");
    let color: String = a
        .call(|sql| sql.query_one("SELECT color FROM gadgets", params![], |r| r.get(0)))
        .await
        .expect("color");
    assert_eq!(color, "teal");
    a.write(|sql| sql.execute("UPDATE gadgets SET color = 'red'", params![]))
        .await
        .expect("update the new column");

    let before = schema_version(dir.path());
    assert!(app.migrate().expect("again").is_empty());
    assert_eq!(
        schema_version(dir.path()),
        before,
        "nothing to regenerate, no schema change"
    );
}

#[test]
fn a_declared_table_that_no_migration_creates_stops_the_run_and_says_which() {
    let (app, _dir) = TestApp::builder()
        .plugin(Gadgets {
            with_color: false,
            phantom: true,
        })
        .build();
    let err = app.migrate().expect_err("phantom table");
    let text = err.to_string();
    assert!(
        text.contains("tenant_phantoms") && text.contains("does not exist"),
        "{text}"
    );
}

#[test]
fn every_shipped_tenant_table_is_isolated_from_its_declaration() {
    if crate::harness::on_postgres() {
        // SQLite's generated views and triggers; PostgreSQL's row-level security
        // is checked table by table in isolation.rs and postgres.rs.
        return;
    }
    let (app, dir) = TestApp::builder().builtins().build();
    app.migrate().expect("migrate");
    let conn = rusqlite::Connection::open(db_path(dir.path())).expect("open");
    let tables: Vec<String> = conn
        .prepare("SELECT substr(name, 8) FROM sqlite_master WHERE type = 'table' AND name LIKE 'tenant\\_%' ESCAPE '\\' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<std::result::Result<_, _>>()
        .expect("rows");
    assert_eq!(
        tables,
        [
            "activity",
            "api_keys",
            "billing_accounts",
            "flag_overrides",
            "invitations",
            "invoices",
            "memberships",
            "roles",
            "usage_events",
            "usage_totals"
        ]
    );
    for name in &tables {
        let objects: Vec<(String, String)> = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE tbl_name = ?1 AND type IN ('view', 'trigger') ORDER BY name")
            .expect("prepare")
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<std::result::Result<_, _>>()
            .expect("rows");
        let names: Vec<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
        let expected = [
            name.clone(),
            format!("{name}_delete"),
            format!("{name}_insert"),
            format!("{name}_update"),
        ];
        assert_eq!(names, expected, "{name}");
        let view = &objects[0].1;
        assert!(
            view.starts_with(&format!("CREATE VIEW {name} AS SELECT "))
                && view.ends_with(&format!("FROM tenant_{name} WHERE org_id = current_org()")),
            "{view}"
        );
    }
    // Running again regenerates nothing.
    let before = schema_version(dir.path());
    assert!(app.migrate().expect("again").is_empty());
    assert_eq!(schema_version(dir.path()), before);
    let _keep: Arc<_> = dir;
}
