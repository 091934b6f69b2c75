//! Backups under load, restores, and the lock that keeps a restore off a running
//! server's database.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::acme::Acme;
use crate::harness::{TestApp, eventually};

#[tokio::test]
async fn a_backup_taken_under_write_load_restores_consistently() {
    if crate::harness::on_postgres() {
        return; // backups copy a SQLite file (PostgreSQL has pg_dump)
    }
    let acme = Acme::start().await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, token) = (
                acme.app.client.clone(),
                acme.app.url("/api/orgs"),
                acme.token("owner").to_string(),
            );
            tokio::spawn(async move {
                let mut acknowledged = 0;
                for i in 0..40 {
                    let resp = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"name": format!("Load {w}-{i}")}))
                        .send()
                        .await
                        .expect("request");
                    if resp.status() == StatusCode::CREATED {
                        acknowledged += 1;
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (db, dest) = (
        acme.app.db_path(),
        acme.app.dir.path().join("backups").join("mid-load.db"),
    );
    let target = dest.clone();
    tokio::task::spawn_blocking(move || plinth_core::storage::backup::backup(&db, &target))
        .await
        .expect("join")
        .expect("backup while writing");
    let mut acknowledged = 0;
    for w in writers {
        acknowledged += w.await.expect("writer");
    }
    assert_eq!(acknowledged, 160);

    let restored_dir = tempfile::tempdir().expect("dir");
    let restored = restored_dir.path().join("plinth.db");
    plinth_core::storage::backup::restore(&dest, &restored).expect("restore");
    let conn = plinth_core::storage::sqlite::db::open_connection(&restored).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    let orgs: i64 = conn
        .query_row("SELECT count(*) FROM organizations", [], |r| r.get(0))
        .expect("count");
    assert!((2..=162).contains(&orgs), "{orgs} orgs in the snapshot");
    let owners: i64 = conn
        .query_row(
            "SELECT count(DISTINCT org_id) FROM tenant_memberships WHERE role = 'owner'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        owners, orgs,
        "every org in the snapshot has its owner: no half-written transaction"
    );
    let chain = plinth_core::audit::verify(&conn).expect("verify");
    assert_eq!(chain.broken, None, "the audit chain of the snapshot is whole");
}

#[tokio::test]
async fn restore_refuses_the_database_of_a_running_server_and_a_damaged_backup() {
    if crate::harness::on_postgres() {
        return; // backups copy a SQLite file (PostgreSQL has pg_dump)
    }
    let app = TestApp::builder().spawn().await;
    let backup = app.dir.path().join("copy.db");
    plinth_core::storage::backup::backup(&app.db_path(), &backup).expect("backup");
    let refused = plinth_core::storage::backup::restore(&backup, &app.db_path()).expect_err("refused");
    assert!(
        refused.to_string().contains("stop it before restoring"),
        "{refused}"
    );

    let garbage = app.dir.path().join("garbage.db");
    std::fs::write(&garbage, b"not a database at all, just text").expect("write");
    let other = tempfile::tempdir().expect("dir");
    assert!(plinth_core::storage::backup::restore(&garbage, &other.path().join("x.db")).is_err());

    let dir = app.stop().await;
    plinth_core::storage::backup::restore(&backup, &crate::harness::db_path(dir.path()))
        .expect("restore once stopped");
    assert!(
        dir.path().join("plinth.db.before-restore").exists(),
        "the replaced file is kept"
    );
}

#[test]
fn the_cli_backs_up_and_restores() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let seeded = crate::cli::plinth(&["seed", "--demo"], &[("DATABASE_URL", &url)]);
    assert!(seeded.status.success());
    let copy = dir.path().join("backup.db");
    let out = crate::cli::plinth(
        &["backup", copy.to_str().expect("path")],
        &[("DATABASE_URL", &url)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (mut server, _) = crate::cli::spawn_plinth(dir.path(), crate::cli::free_port(), &[]);
    let refused = crate::cli::plinth(
        &["restore", copy.to_str().expect("path")],
        &[("DATABASE_URL", &url)],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a server is running"));
    let _ = server.kill();
    let _ = server.wait();

    let fresh = tempfile::tempdir().expect("dir");
    let fresh_url = format!("sqlite://{}", fresh.path().join("plinth.db").display());
    let out = crate::cli::plinth(
        &["restore", copy.to_str().expect("path")],
        &[("DATABASE_URL", &fresh_url)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn =
        plinth_core::storage::sqlite::db::open_connection(&fresh.path().join("plinth.db")).expect("open");
    let users: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .expect("count");
    assert_eq!(users, 5);
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_few() {
    if crate::harness::on_postgres() {
        return; // backups copy a SQLite file (PostgreSQL has pg_dump)
    }
    let dir = tempfile::tempdir().expect("dir");
    let app = TestApp::builder()
        .var("PLINTH_BACKUP_DIR", dir.path().to_str().expect("path"))
        .var("PLINTH_BACKUP_INTERVAL_SECS", "1")
        .var("PLINTH_BACKUP_KEEP", "2")
        .spawn()
        .await;
    let count = || std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0);
    eventually("two backups exist", || async { count() >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(), 2, "older backups are pruned");
    drop(app);
}
