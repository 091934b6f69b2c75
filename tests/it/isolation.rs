//! Row-level isolation, proven with deliberately unfiltered SQL through the
//! org-bound handle, for every tenant table the schema holds; and one test per
//! pitfall the prototype hit (see ARCHITECTURE.md).

use plinth_core::storage::EngineKind;
use reqwest::StatusCode;
use serde_json::json;

use crate::acme::Acme;
use crate::harness::{TestApp, TestConn};

/// Tables with an `org_id` column that are not tenant tables, and why.
/// audit_log: written by core for every area, read by tenants through `org_audit_log`.
/// billing_customers: the routing index from a Stripe customer id to its org, read
/// by webhook processing before it can bind; it holds no tenant data.
const SHARED_WITH_ORG_ID: [&str; 2] = ["audit_log", "billing_customers"];

/// Ledgers: their views refuse every delete (rows go only with their org).
const APPEND_ONLY: [&str; 2] = ["tenant_usage_events", "tenant_invoices"];

/// Derived tables: written only by triggers on their ledger; their views refuse
/// every direct write.
const DERIVED: [&str; 1] = ["tenant_usage_totals"];

/// Every table carrying `org_id`, from the schema itself.
fn tables_with_org_id(conn: &TestConn) -> Vec<String> {
    let sql = match conn.engine() {
        EngineKind::Sqlite => {
            "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND p.name = 'org_id' ORDER BY m.name"
        }
        EngineKind::Postgres => {
            "SELECT c.table_name::text FROM information_schema.columns c
             JOIN pg_tables t ON t.tablename = c.table_name AND t.schemaname = c.table_schema
             WHERE c.table_schema = current_schema() AND c.column_name = 'org_id' ORDER BY 1"
        }
    };
    conn.query_all(sql, args![], |r| r.get(0)).expect("tables")
}

/// The tenant tables (base tables behind views).
pub fn tenant_tables(conn: &TestConn) -> Vec<String> {
    tables_with_org_id(conn)
        .into_iter()
        .filter(|t| !SHARED_WITH_ORG_ID.contains(&t.as_str()))
        .collect()
}

fn view_of(table: &str) -> String {
    table.strip_prefix("tenant_").expect("tenant prefix").to_string()
}

fn count(conn: &TestConn, sql: &str, org: &str) -> i64 {
    conn.query_row(sql, args![org], |r| r.get(0)).expect("count")
}

/// PostgreSQL's guards of one tenant table: row-level security enabled and forced,
/// a `security_invoker` view filtering by `current_org()`, and the foreign key
/// that deletes its rows with their org.
fn postgres_guards(conn: &TestConn, table: &str, view: &str) {
    let (enabled, forced): (bool, bool) = conn
        .query_row(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ?1",
            args![table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("table");
    assert!(
        enabled && forced,
        "{table}: row-level security enabled {enabled}, forced {forced}"
    );
    let (definition, options): (String, String) = conn
        .query_row(
            "SELECT pg_get_viewdef(c.oid), coalesce(array_to_string(c.reloptions, ','), '')
             FROM pg_class c WHERE c.relname = ?1 AND c.relkind = 'v'",
            args![view],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|_| panic!("{table} has no view {view}"));
    assert!(definition.contains("current_org()"), "{view}: {definition}");
    assert!(options.contains("security_invoker=true"), "{view}: {options}");
    assert_deleted_with_its_org(conn, table);
}

/// The table's `org_id` references organizations ON DELETE CASCADE.
fn assert_deleted_with_its_org(conn: &TestConn, table: &str) {
    let sql = match conn.engine() {
        EngineKind::Sqlite => {
            "SELECT count(*) = 1 FROM pragma_foreign_key_list(?1)
             WHERE \"from\" = 'org_id' AND \"table\" = 'organizations' AND on_delete = 'CASCADE'"
        }
        EngineKind::Postgres => {
            "SELECT count(*) = 1 FROM pg_constraint
             WHERE conrelid = CAST(?1 AS text)::regclass AND confrelid = 'organizations'::regclass
               AND contype = 'f' AND confdeltype = 'c'"
        }
    };
    let cascades: bool = conn.query_row(sql, args![table], |r| r.get(0)).expect("fk");
    assert!(
        cascades,
        "{table}.org_id must reference organizations ON DELETE CASCADE"
    );
}

/// Acme and Globex each with rows in every tenant table.
async fn two_orgs() -> Acme {
    let acme = Acme::start().await;
    for (who, org) in [("owner", acme.org), ("outsider", acme.globex)] {
        let (status, _) = acme
            .send(
                "POST",
                who,
                &format!("/api/orgs/{org}/invitations"),
                Some(json!({"email": "x@example.com", "role": "viewer"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        // Billing: a plan (account row), usage, and a closed period's invoice.
        let (status, _) = acme
            .send(
                "PUT",
                "stranger",
                &format!("/api/admin/orgs/{org}/billing/subscription"),
                Some(json!({"plan_id": "pro"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = acme
            .send(
                "POST",
                who,
                &format!("/api/orgs/{org}/usage"),
                Some(json!({"metric": "api_calls", "quantity": 3, "idempotency_key": "fixture"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, closed) = acme
            .send(
                "POST",
                "stranger",
                &format!("/api/admin/orgs/{org}/billing/close-period"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(closed["invoice"]["number"].is_string(), "{closed}");
        // A custom role and an API key.
        let (status, _) = acme
            .send(
                "POST",
                who,
                &format!("/api/orgs/{org}/roles"),
                Some(json!({"key": "support", "name": "Support", "permissions": ["org:read"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = acme
            .send(
                "POST",
                who,
                &format!("/api/orgs/{org}/api-keys"),
                Some(json!({"name": "fixture", "permissions": ["org:read"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let override_path = format!("/api/admin/flags/new-dashboard/overrides/{org}");
        let (status, _) = acme
            .send("PUT", "stranger", &override_path, Some(json!({"value": true})))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let conn = acme.app.conn();
    for table in tenant_tables(&conn) {
        for org in [acme.org, acme.globex] {
            let n = count(
                &conn,
                &format!("SELECT count(*) FROM {table} WHERE org_id = ?1"),
                &org.to_string(),
            );
            assert!(n > 0, "fixture: {table} has no row for {org}");
        }
    }
    acme
}

#[tokio::test]
async fn every_table_with_org_id_is_a_tenant_table_behind_a_view_with_guards() {
    let app = TestApp::builder().builtins().spawn().await;
    let conn = app.conn();
    let tables = tenant_tables(&conn);
    assert!(tables.len() >= 3, "{tables:?}");
    for table in &tables {
        assert!(
            table.starts_with("tenant_"),
            "{table} carries org_id but is not a tenant_ table"
        );
        let view = view_of(table);
        if conn.engine() == EngineKind::Postgres {
            postgres_guards(&conn, table, &view);
            continue;
        }
        let is_view: bool = conn
            .query_row(
                "SELECT count(*) = 1 FROM sqlite_master WHERE type = 'view' AND name = ?1",
                args![&view],
                |r| r.get(0),
            )
            .expect("view");
        assert!(is_view, "{table} has no view {view}");
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = ?1",
                args![&view],
                |r| r.get(0),
            )
            .expect("view sql");
        assert!(
            sql.contains("org_id = current_org()"),
            "{view} does not filter by current_org(): {sql}"
        );
        for op in ["insert", "update", "delete"] {
            let trigger = format!("{view}_{op}");
            let body: String = conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                    args![&trigger],
                    |r| r.get(0),
                )
                .unwrap_or_else(|_| panic!("{view} lacks its {op} trigger"));
            if DERIVED.contains(&table.as_str()) || (op == "delete" && APPEND_ONLY.contains(&table.as_str()))
            {
                assert!(
                    body.contains("RAISE(ABORT"),
                    "{trigger} of a ledger does not refuse"
                );
                continue;
            }
            assert!(body.contains("current_org()"), "{trigger} does not check the org");
        }
        assert_deleted_with_its_org(&conn, table);
    }
}

#[tokio::test]
async fn unfiltered_selects_through_the_bound_handle_see_only_that_org() {
    let acme = two_orgs().await;
    let conn = acme.app.conn();
    for table in tenant_tables(&conn) {
        let view = view_of(&table);
        let expected = count(
            &conn,
            &format!("SELECT count(*) FROM {table} WHERE org_id = ?1"),
            &acme.org.to_string(),
        );
        let sql = format!("SELECT count(*), count(DISTINCT org_id), max(org_id) FROM {view}");
        let (n, distinct, org): (i64, i64, String) = acme
            .app
            .platform
            .tenancy()
            .bind(acme.org)
            .call(move |c| {
                c.query_one(&sql, plinth_core::params![], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .await
            .expect("query");
        assert_eq!((n, distinct, org), (expected, 1, acme.org.to_string()), "{view}");
    }
}

#[tokio::test]
async fn writes_through_the_bound_handle_cannot_touch_another_org() {
    let acme = two_orgs().await;
    let conn = acme.app.conn();
    let globex = acme.globex.to_string();
    let tables = tenant_tables(&conn);
    let before: Vec<i64> = tables
        .iter()
        .map(|t| {
            count(
                &conn,
                &format!("SELECT count(*) FROM {t} WHERE org_id = ?1"),
                &globex,
            )
        })
        .collect();
    let bound = acme.app.platform.tenancy().bind(acme.org);
    for table in &tables {
        let view = view_of(table);
        // A row claiming another org is refused.
        let (v, g) = (view.clone(), globex.clone());
        let insert = bound
            .write(move |tx| {
                tx.execute(
                    &format!("INSERT INTO {v} (org_id) VALUES (?1)"),
                    plinth_core::params![g],
                )
            })
            .await;
        assert!(
            insert.is_err(),
            "insert into {view} with another org_id succeeded"
        );
        // Moving the org's rows to another org is refused.
        let (v, g) = (view.clone(), globex.clone());
        let moved = bound
            .write(move |tx| tx.execute(&format!("UPDATE {v} SET org_id = ?1"), plinth_core::params![g]))
            .await;
        assert!(moved.is_err(), "update of {view} to another org_id succeeded");
    }
    // Unfiltered deletes take the bound org's rows and nothing else.
    let mut order = tables.clone();
    order.sort_by_key(|t| t == "tenant_memberships");
    for table in &order {
        let view = view_of(table);
        let deleted = bound
            .write(move |tx| tx.execute(&format!("DELETE FROM {view}"), plinth_core::params![]))
            .await;
        if APPEND_ONLY.contains(&table.as_str()) || DERIVED.contains(&table.as_str()) {
            assert!(deleted.is_err(), "a delete from the ledger {table} succeeded");
            continue;
        }
        deleted.expect("delete");
        assert_eq!(
            count(
                &conn,
                &format!("SELECT count(*) FROM {table} WHERE org_id = ?1"),
                &acme.org.to_string()
            ),
            0
        );
    }
    // Naming another org's row by id changes nothing either.
    let globex_membership: String = conn
        .query_row(
            "SELECT id FROM tenant_memberships WHERE org_id = ?1",
            args![&globex],
            |r| r.get(0),
        )
        .expect("id");
    bound
        .write(move |tx| {
            tx.execute(
                "UPDATE memberships SET role = 'viewer' WHERE id = ?1",
                plinth_core::params![globex_membership],
            )?;
            tx.execute(
                "DELETE FROM memberships WHERE id = ?1",
                plinth_core::params![globex_membership],
            )?;
            Ok(())
        })
        .await
        .expect("no-op writes");
    let after: Vec<i64> = tables
        .iter()
        .map(|t| {
            count(
                &conn,
                &format!("SELECT count(*) FROM {t} WHERE org_id = ?1"),
                &globex,
            )
        })
        .collect();
    assert_eq!(before, after, "Globex's rows are untouched");
    let role: String = conn
        .query_row(
            "SELECT role FROM tenant_memberships WHERE org_id = ?1",
            args![&globex],
            |r| r.get(0),
        )
        .expect("role");
    assert_eq!(role, "owner");
}

#[tokio::test]
async fn tenant_connections_reach_views_and_nothing_else() {
    let acme = two_orgs().await;
    let bound = acme.app.platform.tenancy().bind(acme.org);
    let refused = [
        "SELECT * FROM tenant_memberships",
        "SELECT * FROM tenant_activity",
        "SELECT * FROM users",
        "SELECT * FROM organizations",
        "SELECT * FROM sessions",
        "SELECT * FROM refresh_tokens",
        "SELECT * FROM audit_log",
        "SELECT * FROM jobs",
        "SELECT * FROM mail_outbox",
        "SELECT * FROM memberships JOIN users ON users.id = memberships.user_id",
        "DELETE FROM audit_log",
        "UPDATE jobs SET status = 'done'",
        "CREATE TABLE sneaky (a)",
        "CREATE TEMP VIEW sneaky AS SELECT * FROM tenant_memberships",
        "CREATE TEMP TRIGGER sneaky AFTER INSERT ON memberships BEGIN SELECT 1; END",
        "DROP VIEW memberships",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA foreign_keys = OFF",
        "PRAGMA writable_schema = ON",
        // The role and the org binding are not the tenant SQL's to choose.
        "SET ROLE postgres",
        "RESET ROLE",
        "SET LOCAL plinth.org = 'another'",
        "SELECT set_config('plinth.org', 'another', true)",
        "SELECT pg_catalog.SET_CONFIG('plinth.org', 'another', false)",
        "RESET ALL",
        "DISCARD ALL",
        "DO $$ BEGIN PERFORM set_config('plinth.org', 'another', true); END $$",
    ];
    // PostgreSQL lets the tenant role read these tables (its views run with its
    // rights), and row-level security shows it the bound org's rows only.
    // (the statement SQLite refuses, what PostgreSQL shows of the same rows)
    let filtered = [
        (
            "SELECT * FROM tenant_memberships",
            "SELECT org_id FROM tenant_memberships",
        ),
        (
            "SELECT * FROM tenant_activity",
            "SELECT org_id FROM tenant_activity",
        ),
        ("SELECT * FROM organizations", "SELECT id FROM organizations"),
        ("SELECT * FROM audit_log", "SELECT org_id FROM audit_log"),
    ];
    for sql in refused {
        if crate::harness::on_postgres() && filtered.iter().any(|(refused, _)| *refused == sql) {
            continue;
        }
        let result = bound
            .call(move |c| c.query_all(sql, plinth_core::params![], |_| Ok(())).map(|_| ()))
            .await;
        assert!(result.is_err(), "a tenant connection may run: {sql}");
    }
    if crate::harness::on_postgres() {
        for (_, sql) in filtered {
            let orgs: Vec<Option<String>> = bound
                .call(move |c| c.query_all(sql, plinth_core::params![], |r| r.get(0)))
                .await
                .expect(sql);
            assert!(!orgs.is_empty(), "{sql} sees the bound org's rows");
            assert!(
                orgs.iter()
                    .all(|o| o.as_deref() == Some(acme.org.to_string().as_str())),
                "{sql} shows another org's rows: {orgs:?}"
            );
        }
    }
    // What tenant code needs still works: views, and appending to the shared logs.
    let jobs = acme.app.platform.jobs().clone();
    bound
        .write(move |tx| {
            tx.query_one("SELECT count(*) FROM org_users", plinth_core::params![], |r| {
                r.get::<i64>(0)
            })?;
            tx.query_one(
                "SELECT count(*) FROM org_audit_log",
                plinth_core::params![],
                |r| r.get::<i64>(0),
            )?;
            jobs.enqueue(tx, "nobody.handles.this", &json!({}))?;
            plinth_core::audit::record(tx, &plinth_core::audit::AuditEntry::new("test.entry"))?;
            Ok(())
        })
        .await
        .expect("allowed statements");
}

#[tokio::test]
async fn system_connections_refuse_tenant_tables_and_see_no_tenant_rows() {
    let acme = two_orgs().await;
    let db = acme.app.platform.db().clone();
    let direct = db
        .call(|c| {
            c.query_one(
                "SELECT count(*) FROM tenant_memberships",
                plinth_core::params![],
                |r| r.get::<i64>(0),
            )
        })
        .await;
    assert!(direct.is_err(), "the system pool reads tenant_memberships");
    let through_view = db
        .call(|c| {
            c.query_one("SELECT count(*) FROM memberships", plinth_core::params![], |r| {
                r.get::<i64>(0)
            })
        })
        .await;
    match through_view {
        // SQLite: unbound, current_org() is NULL and no row matches.
        Ok(n) => assert_eq!(n, 0, "an unbound view shows rows"),
        // PostgreSQL: the system role has no privilege on tenant views at all.
        Err(e) => assert!(crate::harness::on_postgres(), "{e}"),
    }
    let org = acme.org.to_string();
    let write = db
        .call(move |c| {
            c.execute(
                "INSERT INTO memberships (org_id) VALUES (?1)",
                plinth_core::params![org],
            )
        })
        .await;
    assert!(write.is_err(), "an unbound connection wrote a tenant row");
    let ddl = db
        .call(|c| c.execute("CREATE TABLE sneaky (a)", plinth_core::params![]))
        .await;
    assert!(ddl.is_err());
}

/// Pitfall: a pooled connection carried the last request's org into the next one.
#[tokio::test]
async fn a_pooled_connection_never_carries_an_org_into_the_next_checkout() {
    let acme = Acme::start_with(TestApp::builder().var("PLINTH_DB_POOL_SIZE", "1")).await;
    let tenancy = acme.app.platform.tenancy().clone();
    let current = |org| {
        let db = tenancy.bind(org);
        async move {
            db.call(|c| {
                c.query_one("SELECT current_org()", plinth_core::params![], |r| {
                    r.get::<Option<String>>(0)
                })
            })
            .await
            .expect("query")
        }
    };
    assert_eq!(current(acme.org).await, Some(acme.org.to_string()));
    assert_eq!(current(acme.globex).await, Some(acme.globex.to_string()));
    // A panic half-way still unbinds (the guard drops on unwind).
    let panicked = tenancy
        .bind(acme.org)
        .call(|_| -> plinth_core::Result<()> { panic!("handler bug") })
        .await;
    assert!(panicked.is_err());
    assert_eq!(current(acme.globex).await, Some(acme.globex.to_string()));
}

/// Pitfalls: a cached statement kept the org (or the authorizer) it was prepared
/// with; `current_org()` declared deterministic was folded at prepare time.
#[tokio::test]
async fn cached_statements_follow_the_binding_of_each_checkout() {
    let acme = Acme::start_with(TestApp::builder().var("PLINTH_DB_POOL_SIZE", "1")).await;
    let tenancy = acme.app.platform.tenancy().clone();
    let members = |org| {
        let db = tenancy.bind(org);
        async move {
            db.call(|c| {
                c.query_one("SELECT count(*) FROM memberships", plinth_core::params![], |r| {
                    r.get::<i64>(0)
                })
            })
            .await
            .expect("query")
        }
    };
    for _ in 0..3 {
        assert_eq!(members(acme.org).await, 4);
        assert_eq!(members(acme.globex).await, 1);
    }
}

/// Pitfall: with STAT4, statements re-prepare for every new parameter after ANALYZE.
#[tokio::test]
async fn the_bundled_sqlite_is_built_without_stat4() {
    if crate::harness::on_postgres() {
        return; // SQLite's build options: nothing to check on PostgreSQL
    }
    let app = TestApp::builder().spawn().await;
    let stat4: i64 = app
        .conn()
        .query_row(
            "SELECT count(*) FROM pragma_compile_options WHERE compile_options LIKE 'ENABLE_STAT4%'",
            args![],
            |r| r.get(0),
        )
        .expect("options");
    assert_eq!(stat4, 0);
}

/// Pitfall: a connection without `current_org()` fails on every view.
#[tokio::test]
async fn every_kind_of_connection_knows_current_org() {
    let app = TestApp::builder().builtins().spawn().await;
    let tool = app.conn();
    let unbound: Option<String> = tool
        .query_row("SELECT current_org()", args![], |r| r.get(0))
        .expect("function");
    assert_eq!(unbound, None);
    let n: i64 = tool
        .query_row("SELECT count(*) FROM memberships", args![], |r| r.get(0))
        .expect("view");
    assert_eq!(n, 0);
    let system = app
        .platform
        .db()
        .call(|c| {
            c.query_one("SELECT current_org()", plinth_core::params![], |r| {
                r.get::<Option<String>>(0)
            })
        })
        .await
        .expect("function");
    assert_eq!(system, None);
}

/// Pitfall: a cache key without the org id let a hit cross tenants.
#[tokio::test]
async fn membership_cache_entries_never_cross_orgs() {
    let acme = Acme::start().await;
    for _ in 0..2 {
        assert_eq!(
            acme.send("GET", "outsider", &format!("/api/orgs/{}", acme.globex), None)
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            acme.send("GET", "outsider", &acme.path(""), None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            acme.send("GET", "owner", &acme.path(""), None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            acme.send("GET", "owner", &format!("/api/orgs/{}", acme.globex), None)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn tenant_queries_use_the_org_index() {
    if crate::harness::on_postgres() {
        return; // SQLite's query plans: nothing to check on PostgreSQL
    }
    let acme = Acme::start().await;
    let plan: Vec<String> = acme
        .app
        .platform
        .tenancy()
        .bind(acme.org)
        .call(|c| {
            c.query_all(
                "EXPLAIN QUERY PLAN SELECT role FROM memberships WHERE user_id = ?1",
                plinth_core::params!["x"],
                |r| r.get::<String>(3),
            )
        })
        .await
        .expect("plan");
    assert!(plan.iter().all(|step| !step.starts_with("SCAN")), "{plan:?}");
}
