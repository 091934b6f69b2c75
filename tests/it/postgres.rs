//! The shipped schema on PostgreSQL: every migration of core and the built-in
//! plugins applies there, once, with each tenant table isolated by row-level
//! security from its declaration. Skipped (said once) where PostgreSQL is absent.

use postgres::{Client, NoTls};

use crate::harness::TestApp;

/// A fresh database on the test cluster, its owner (a non-superuser, as in a
/// least-privilege setup), and the system and tenant roles.
struct Database {
    owner_url: String,
    system: String,
    tenant: String,
    url_as: Box<dyn Fn(&str) -> String>,
}

fn database() -> Option<Database> {
    let cluster = plinth_test_pg::cluster()?;
    let name = cluster.unique_name("schema");
    let (owner, system, tenant) = (
        format!("{name}_owner"),
        format!("{name}_system"),
        format!("{name}_tenant"),
    );
    let mut admin = Client::connect(&cluster.admin_url(), NoTls).expect("admin");
    for role in [&owner, &system, &tenant] {
        admin
            .batch_execute(&format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"))
            .expect("role");
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {name} OWNER {owner}"))
        .expect("database");
    // PostgreSQL 15: only the schema's owner (or a grantee) may create in `public`.
    Client::connect(&cluster.url(&name), NoTls)
        .and_then(|mut c| c.batch_execute(&format!("ALTER SCHEMA public OWNER TO {owner}")))
        .expect("schema owner");
    let template = cluster.url_as("ROLE", &name);
    let url_as = Box::new(move |role: &str| template.replace("ROLE", role));
    Some(Database {
        owner_url: url_as(&owner),
        system,
        tenant,
        url_as,
    })
}

#[test]
fn every_shipped_migration_applies_on_postgresql_with_tenant_tables_under_forced_rls() {
    let Some(d) = database() else { return };
    let (app, _dir) = TestApp::builder().builtins().build();
    let applied = app
        .migrate_postgres(&d.owner_url, &d.system, &d.tenant)
        .expect("migrate");
    assert_eq!(applied.len(), app.migrations().len());
    assert!(
        app.migrate_postgres(&d.owner_url, &d.system, &d.tenant)
            .expect("again")
            .is_empty()
    );

    let mut db = Client::connect(&d.owner_url, NoTls).expect("connect");
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
            "tenant_api_keys",
            "tenant_billing_accounts",
            "tenant_flag_overrides",
            "tenant_invitations",
            "tenant_invoices",
            "tenant_memberships",
            "tenant_roles",
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
    // No role Plinth serves with is superuser or exempt from row-level security.
    let owner = d.owner_url["postgres://".len()..]
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    for role in [&owner, &d.system, &d.tenant] {
        let row = db
            .query_one(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[role],
            )
            .expect("role");
        assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1), "{role}");
    }
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

#[test]
fn each_role_reaches_only_what_its_sqlite_pool_reaches() {
    let Some(d) = database() else { return };
    let (app, _dir) = TestApp::builder().builtins().build();
    app.migrate_postgres(&d.owner_url, &d.system, &d.tenant)
        .expect("migrate");
    let mut owner = Client::connect(&d.owner_url, NoTls).expect("owner");
    // Two orgs with a member each, written by the root (the owner).
    owner
        .batch_execute(
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
                 VALUES ('ua', 'a@x.test', 'A', 'secret-hash', 'now', 'now'),
                        ('ub', 'b@x.test', 'B', 'secret-hash', 'now', 'now');
             INSERT INTO organizations (id, name, slug, created_at, updated_at)
                 VALUES ('oa', 'A', 'a', 'now', 'now'), ('ob', 'B', 'b', 'now', 'now');
             INSERT INTO tenant_memberships (id, org_id, user_id, role, created_at, updated_at)
                 VALUES ('ma', 'oa', 'ua', 'owner', 'now', 'now'), ('mb', 'ob', 'ub', 'owner', 'now', 'now');
             INSERT INTO audit_log (id, at, action, org_id, details)
                 VALUES ('la', 'now', 'x', 'oa', '{}'), ('lb', 'now', 'x', 'ob', '{}');",
        )
        .expect("root writes across orgs");
    let count = |c: &mut Client, org: Option<&str>, sql: &str| -> Result<i64, postgres::Error> {
        let mut tx = c.transaction()?;
        if let Some(org) = org {
            tx.batch_execute(&format!("SET LOCAL plinth.org = '{org}'"))?;
        }
        let n = tx.query_one(sql, &[])?.get(0);
        tx.commit()?;
        Ok(n)
    };
    assert_eq!(
        count(&mut owner, None, "SELECT count(*) FROM tenant_memberships").expect("root"),
        2
    );

    let mut tenant = Client::connect(&(d.url_as)(&d.tenant), NoTls).expect("tenant");
    let a = Some("oa");
    for (sql, expected) in [
        ("SELECT count(*) FROM org", 1),
        ("SELECT count(*) FROM organizations", 1),
        ("SELECT count(*) FROM memberships", 1),
        ("SELECT count(*) FROM org_users", 1),
        ("SELECT count(*) FROM org_audit_log", 1),
        ("SELECT count(*) FROM plan_catalog", 1),
    ] {
        assert_eq!(count(&mut tenant, a, sql).expect(sql), expected, "{sql}");
    }
    assert_eq!(
        count(&mut tenant, None, "SELECT count(*) FROM org_users").expect("unbound"),
        0
    );
    // Never a password hash, never the system tables.
    for refused in [
        "SELECT count(password_hash) FROM users",
        "SELECT count(*) FROM sessions",
        "SELECT count(*) FROM billing_customers",
        "SELECT count(*) FROM jobs",
    ] {
        let err = count(&mut tenant, a, refused).expect_err(refused);
        assert!(
            format!("{err:?}").contains("permission denied"),
            "{refused}: {err:?}"
        );
    }
    // Appending to the shared logs is allowed, as on SQLite.
    tenant
        .batch_execute(
            "BEGIN; SET LOCAL plinth.org = 'oa';
             INSERT INTO jobs (id, kind, payload, status, max_attempts, run_at, created_at, updated_at)
                 VALUES ('j', 'k', '{}', 'queued', 3, 0, 'now', 'now');
             INSERT INTO audit_log (id, at, action, org_id, details) VALUES ('lc', 'now', 'y', 'oa', '{}');
             COMMIT;",
        )
        .expect("append");

    let mut system = Client::connect(&(d.url_as)(&d.system), NoTls).expect("system");
    assert_eq!(
        count(&mut system, None, "SELECT count(*) FROM users").expect("users"),
        2
    );
    assert_eq!(
        count(&mut system, None, "SELECT count(*) FROM audit_log").expect("audit"),
        3
    );
    let err = count(&mut system, None, "SELECT count(*) FROM tenant_memberships").expect_err("tenant table");
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
}

/// `plinth db copy`: a SQLite deployment with history (audit entries, sessions,
/// an invitation) moves into an empty PostgreSQL database, whose audit chain then
/// verifies, and which serves the same accounts; a second copy is refused.
#[tokio::test]
async fn db_copy_moves_a_sqlite_deployment_into_postgresql_with_its_audit_chain() {
    if crate::harness::on_postgres() || plinth_test_pg::cluster().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let acme = crate::acme::Acme::start_with(TestApp::builder().var("DATABASE_URL", &sqlite)).await;
    let (status, _) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/invitations"),
            Some(serde_json::json!({"email": "moved@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status.as_u16(), 201);
    let entries: i64 = plinth_core::storage::sqlite::db::open_connection(&dir.path().join("plinth.db"))
        .expect("open")
        .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
        .expect("entries");
    assert!(entries > 3, "{entries} audit entries to carry over");
    acme.app.stop().await;

    let target = std::thread::spawn(crate::harness::create_database)
        .join()
        .expect("database");
    let copy =
        |url: &str| crate::cli::plinth(&["db", "copy", "--to", url], &[("DATABASE_URL", sqlite.as_str())]);
    let out = copy(&target);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "audit log intact on the target: {entries} entries checked"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("tenant_invitations"), "{stdout}");

    let again = copy(&target);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The copy serves: the same people sign in, the invitation is there, and a
    // new audit entry continues the copied chain.
    let moved = crate::acme::Acme::start_with(TestApp::builder().var("DATABASE_URL", &target)).await;
    let (status, invitations) = moved
        .send("GET", "owner", &moved.path("/invitations"), None)
        .await;
    assert_eq!(status.as_u16(), 200);
    assert!(
        invitations.to_string().contains("moved@example.com"),
        "{invitations}"
    );
    let verify = crate::cli::plinth(&["audit", "verify"], &[("DATABASE_URL", target.as_str())]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && text.contains("audit log intact"),
        "{text}"
    );
}
