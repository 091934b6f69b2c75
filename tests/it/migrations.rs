//! Migrations through the real app: fresh, re-run, tampered, pending.

use std::sync::Arc;

use serde_json::Value;

use crate::harness::TestApp;
use crate::widgets::{MIGRATION, Widgets};

fn widgets_from(dir: &std::path::Path) -> Widgets {
    Widgets {
        migrations_dir: Some(dir.to_path_buf()),
        ..Widgets::default()
    }
}

#[tokio::test]
async fn a_fresh_database_is_migrated_and_ready() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["migrations"], "ok");
    let recorded: Vec<(String, i64)> = app
        .conn()
        .query_all(
            "SELECT owner, version FROM plinth_migrations ORDER BY owner, version",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("rows");
    let mut expected: Vec<(String, i64)> = plinth_core::storage::migrations::core_migrations()
        .expect("core migrations")
        .iter()
        .map(|m| (m.owner.to_string(), i64::from(m.version)))
        .collect();
    expected.push(("widgets".into(), 1));
    assert_eq!(recorded, expected);
    if !crate::harness::on_postgres() {
        let mode: String = app
            .sqlite()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }
}

#[test]
fn running_migrations_again_applies_nothing() {
    let (app, _dir) = TestApp::builder().plugin(Widgets::default()).build();
    let all = app.migrations().len();
    assert!(all > 1);
    assert_eq!(app.migrate().expect("first").len(), all);
    assert_eq!(app.migrate().expect("second").len(), 0);
}

#[test]
fn a_tampered_migration_file_is_refused() {
    let files = tempfile::tempdir().expect("dir");
    let file = files.path().join("0001_create_widgets.sql");
    std::fs::write(&file, MIGRATION).expect("write");
    let (app, dir) = TestApp::builder().plugin(widgets_from(files.path())).build();
    app.migrate().expect("applies");
    drop(app);

    std::fs::write(&file, format!("{MIGRATION}\n-- edited later")).expect("tamper");
    let (app, _) = TestApp::builder()
        .in_dir(Arc::clone(&dir))
        .plugin(widgets_from(files.path()))
        .build();
    let err = app.migrate().expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("widgets/0001") && text.contains("changed after it was applied"),
        "{text}"
    );
}

#[tokio::test]
async fn pending_migrations_make_the_server_not_ready() {
    let files = tempfile::tempdir().expect("dir");
    std::fs::write(files.path().join("0001_create_widgets.sql"), MIGRATION).expect("write");
    let (app, dir) = TestApp::builder().plugin(widgets_from(files.path())).build();
    app.migrate().expect("applies");
    drop(app);

    std::fs::write(
        files.path().join("0002_add_color.sql"),
        "ALTER TABLE widgets ADD COLUMN color TEXT;",
    )
    .expect("write");
    let app = TestApp::builder()
        .in_dir(dir)
        .plugin(widgets_from(files.path()))
        .without_migrating()
        .spawn()
        .await;
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.expect("problem");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("migrations are pending")
    );
}

/// A database made by Plinth 0.1.0 (`plinth seed --demo`, dumped as SQL so the
/// fixture stays reviewable) migrates forward and serves under this build.
#[tokio::test]
async fn a_database_made_by_the_previous_release_migrates_and_serves() {
    if crate::harness::on_postgres() {
        // 0.1.0 existed on SQLite only.
        return;
    }
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    {
        let conn = plinth_core::storage::sqlite::db::open_connection(&crate::harness::db_path(dir.path()))
            .expect("open");
        // The dump creates tables in name order: rows may precede their parents'.
        conn.execute_batch("PRAGMA foreign_keys = OFF").expect("pragma");
        conn.execute_batch(include_str!("../data/v0.1.0-demo.sql"))
            .expect("load the 0.1.0 database");
        conn.execute_batch("PRAGMA foreign_keys = ON").expect("pragma");
        let broken: Vec<String> = conn
            .prepare("PRAGMA foreign_key_check")
            .expect("check")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(broken.is_empty(), "the fixture is consistent: {broken:?}");
    }
    let view_sql = |conn: &rusqlite::Connection, name: &str| -> String {
        conn.query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .expect("catalog")
    };
    let hand_written = {
        let conn = plinth_core::storage::sqlite::db::open_connection(&crate::harness::db_path(dir.path()))
            .expect("open");
        view_sql(&conn, "invoices_update")
    };
    let app = TestApp::builder().in_dir(dir).builtins().spawn().await;
    let ready: Value = app.get("/readyz").await.json().await.expect("json");
    assert_eq!(ready["migrations"], "ok");
    // 0.1.0 wrote its isolation by hand; the first start replaces it with the one
    // generated from the declarations.
    let generated = view_sql(&app.sqlite(), "invoices_update");
    assert_ne!(generated, hand_written);
    assert!(
        generated.contains("invoices: source, stripe_invoice_id, created_at cannot change"),
        "{generated}"
    );
    assert!(
        view_sql(&app.sqlite(), "invitations")
            .starts_with("CREATE VIEW invitations AS SELECT id, org_id, email, role, token_hash,")
    );

    let login = |email: &'static str| {
        let app = &app;
        async move {
            let resp = crate::auth::login(app, email, crate::acme::DEMO_PASSWORD).await;
            assert_eq!(resp.status().as_u16(), 200, "{email} logs in");
            let body: Value = resp.json().await.expect("json");
            body["access_token"].as_str().expect("token").to_string()
        }
    };
    let owner = login("owner@acme.test").await;
    let get = |path: String, token: String| {
        let app = &app;
        async move {
            let resp = app
                .client
                .get(app.url(&path))
                .bearer_auth(token)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, orgs) = get("/api/orgs".into(), owner.clone()).await;
    assert_eq!(orgs["items"][0]["slug"], "acme");
    assert_eq!(orgs["items"][0]["role"], "owner");
    let org = orgs["items"][0]["id"].as_str().expect("org").to_string();
    let (status, members) = get(format!("/api/orgs/{org}/members"), owner.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(members["items"].as_array().map(Vec::len), Some(4));
    let (_, subscription) = get(format!("/api/orgs/{org}/billing/subscription"), owner.clone()).await;
    assert_eq!(subscription["plan"]["id"], "pro");
    assert_eq!(subscription["status"], "active");
    let (status, flags) = get(format!("/api/orgs/{org}/flags"), owner.clone()).await;
    assert_eq!(status, 200, "{flags}");
    // New writes land on the old file, and its audit chain stays intact.
    let invite = app
        .client
        .post(app.url(&format!("/api/orgs/{org}/invitations")))
        .bearer_auth(&owner)
        .json(&serde_json::json!({"email": "new@example.com", "role": "member"}))
        .send()
        .await
        .expect("invite");
    assert_eq!(invite.status().as_u16(), 201);
    let staff = login("staff@plinth.test").await;
    let (_, chain) = get("/api/admin/audit-logs/verify".into(), staff).await;
    assert_eq!(chain["intact"], true, "{chain}");
    assert!(chain["checked"].as_i64().expect("checked") >= 3, "{chain}");
}
