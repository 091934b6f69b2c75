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
        .prepare("SELECT owner, version FROM plinth_migrations ORDER BY owner, version")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut expected: Vec<(String, i64)> = plinth_core::migrations::core_migrations()
        .expect("core migrations")
        .iter()
        .map(|m| (m.owner.to_string(), i64::from(m.version)))
        .collect();
    expected.push(("widgets".into(), 1));
    assert_eq!(recorded, expected);
    let mode: String = app
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
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
