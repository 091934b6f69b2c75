//! The shipped schema on PostgreSQL: every migration of core and the built-in
//! plugins applies there, once, with each tenant table isolated by row-level
//! security from its declaration. Skipped (said once) where PostgreSQL is absent.

use postgres::{Client, NoTls};

use crate::harness::TestApp;

/// A fresh database and a serving role on the test cluster, as URLs.
fn database() -> Option<(String, String)> {
    let cluster = plinth_test_pg::cluster()?;
    let name = cluster.unique_name("schema");
    let role = format!("app_{name}");
    let mut admin = Client::connect(&cluster.admin_url(), NoTls).expect("admin");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("database");
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"))
        .expect("role");
    Some((cluster.url(&name), role))
}

#[test]
fn every_shipped_migration_applies_on_postgresql_with_tenant_tables_under_forced_rls() {
    let Some((url, role)) = database() else { return };
    let (app, _dir) = TestApp::builder().builtins().build();
    let applied = app.migrate_postgres(&url, &role).expect("migrate");
    assert_eq!(applied.len(), app.migrations().len());
    assert!(app.migrate_postgres(&url, &role).expect("again").is_empty());

    let mut db = Client::connect(&url, NoTls).expect("connect");
    let tenant_tables: Vec<(String, bool, bool)> = db
        .query(
            "SELECT relname::text, relrowsecurity, relforcerowsecurity FROM pg_class
             WHERE relkind = 'r' AND relname LIKE 'tenant\\_%' AND relnamespace = 'public'::regnamespace
             ORDER BY relname",
            &[],
        )
        .expect("tables")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let names: Vec<&str> = tenant_tables.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenant_activity",
            "tenant_billing_accounts",
            "tenant_flag_overrides",
            "tenant_invitations",
            "tenant_invoices",
            "tenant_memberships",
            "tenant_usage_events",
            "tenant_usage_totals"
        ]
    );
    for (name, enabled, forced) in &tenant_tables {
        assert!(
            *enabled && *forced,
            "{name}: row-level security enabled and forced"
        );
    }
    // Every view runs with its caller's rights.
    let views: Vec<(String, Option<String>)> = db
        .query(
            "SELECT relname::text, array_to_string(reloptions, ',') FROM pg_class
             WHERE relkind = 'v' AND relnamespace = 'public'::regnamespace ORDER BY relname",
            &[],
        )
        .expect("views")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(views.len() >= 11, "{views:?}");
    for (name, options) in &views {
        assert!(
            options
                .as_deref()
                .is_some_and(|o| o.contains("security_invoker=true")),
            "{name} is security_invoker: {options:?}"
        );
    }
    // The serving role is neither superuser nor exempt from row-level security.
    let row = db
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .expect("role");
    assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1));
    // The ledgers' database-side rules hold there too.
    db.batch_execute(
        "INSERT INTO organizations (id, name, slug, created_at, updated_at) VALUES ('o', 'O', 'o', 'now', 'now');
         BEGIN; SET LOCAL plinth.org = 'o';
         INSERT INTO tenant_invoices (id, org_id, source, status, currency, subtotal, total, amount_due, created_at, updated_at)
             VALUES ('i1', 'o', 'local', 'open', 'usd', 100, 100, 100, 'now', 'now');
         COMMIT;",
    )
    .expect("a local invoice");
    let number: String = {
        let mut tx = db.transaction().expect("tx");
        tx.batch_execute("SET LOCAL plinth.org = 'o'").expect("bind");
        let number = tx
            .query_one("SELECT number FROM tenant_invoices WHERE id = 'i1'", &[])
            .expect("number")
            .get(0);
        tx.commit().expect("commit");
        number
    };
    assert_eq!(number, "INV-000001", "numbered by the database");
    let update = db.batch_execute("UPDATE audit_log SET action = 'x'");
    assert!(update.is_ok(), "no rows, no trigger");
    db.batch_execute("INSERT INTO audit_log (id, at, action, details) VALUES ('a1', 'now', 'x', '{}')")
        .expect("append");
    let tamper = db.batch_execute("UPDATE audit_log SET action = 'y' WHERE id = 'a1'");
    assert!(format!("{tamper:?}").contains("append-only"), "{tamper:?}");
}
