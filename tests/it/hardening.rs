//! Reliability under abuse and failure: load shedding, and acknowledged writes
//! surviving SIGKILL and SIGTERM mid-load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{free_port, spawn_plinth};
use crate::harness::TestApp;
use crate::widgets::Widgets;

#[tokio::test]
async fn a_flood_is_shed_with_503_and_retry_after() {
    let app = TestApp::builder()
        .var("PLINTH_MAX_IN_FLIGHT", "2")
        .plugin(Widgets::default())
        .spawn()
        .await;
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/api/widgets/slow?ms=400"));
            tokio::spawn(async move { client.get(url).send().await.expect("request") })
        })
        .collect();
    let (mut ok, mut shed) = (0, 0);
    for r in requests {
        let resp = r.await.expect("join");
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(resp.headers()["retry-after"], "1");
                let body: Value = resp.json().await.expect("problem");
                assert_eq!(body["status"], 503);
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 2 && shed >= 1, "{ok} served, {shed} shed");
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "it recovers at once"
    );
}

async fn login(base: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "owner@acme.test", "password": "demo-password-1"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    body["access_token"].as_str().expect("token").to_string()
}

/// Writers creating orgs until stopped; returns the ids the server acknowledged.
fn start_writers(
    base: &str,
    token: &str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|w| {
            let (base, token, stop) = (base.to_string(), token.to_string(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("client");
                let mut acknowledged = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let sent = client
                        .post(format!("{base}/api/orgs"))
                        .bearer_auth(&token)
                        .json(&json!({"name": format!("Crash {w}-{i}")}))
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status() == StatusCode::CREATED => {
                            if let Ok(body) = resp.json::<Value>().await
                                && let Some(id) = body["id"].as_str()
                            {
                                acknowledged.push(id.to_string());
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                acknowledged
            })
        })
        .collect()
}

fn missing(db: &std::path::Path, ids: &[String]) -> (Vec<String>, String) {
    let conn = plinth_core::db::open_connection(db).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    let lost = ids
        .iter()
        .filter(|id| {
            !conn
                .query_row(
                    "SELECT count(*) FROM organizations WHERE id = ?1",
                    [id.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .is_ok_and(|n| n == 1)
        })
        .cloned()
        .collect();
    (lost, check)
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_mid_load() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("plinth.db");
    let url = format!("sqlite://{}", db.display());
    assert!(
        crate::cli::plinth(&["seed", "--demo"], &[("DATABASE_URL", &url)])
            .status
            .success()
    );
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let (mut server, base) = spawn_plinth(dir.path(), free_port(), &[]);
        let token = login(&base).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&base, &token, stop.clone());
        tokio::time::sleep(Duration::from_millis(400 + round * 150)).await;
        server.kill().expect("SIGKILL");
        let _ = server.wait();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            acknowledged.extend(w.await.expect("writer"));
        }
        let (lost, check) = missing(&db, &acknowledged);
        assert_eq!(check, "ok", "round {round}");
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged writes lost",
            lost.len()
        );
    }
    assert!(
        acknowledged.len() > 20,
        "only {} writes were acknowledged",
        acknowledged.len()
    );
    // Jobs and sessions left by the kills are picked up by the next start.
    let (mut server, base) = spawn_plinth(dir.path(), free_port(), &[]);
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .expect("ready")
            .status(),
        StatusCode::OK
    );
    let _ = server.kill();
    let _ = server.wait();
    eprintln!(
        "crash test: 3 SIGKILLs, {} acknowledged writes, 0 lost",
        acknowledged.len()
    );
}

#[tokio::test]
async fn sigterm_under_load_drops_no_acknowledged_request() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("plinth.db");
    let url = format!("sqlite://{}", db.display());
    assert!(
        crate::cli::plinth(&["seed", "--demo"], &[("DATABASE_URL", &url)])
            .status
            .success()
    );
    let (mut server, base) = spawn_plinth(dir.path(), free_port(), &[]);
    let token = login(&base).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&base, &token, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "{exit}");
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.expect("writer"));
    }
    let (lost, check) = missing(&db, &acknowledged);
    assert_eq!(check, "ok");
    assert!(lost.is_empty(), "{} acknowledged writes lost", lost.len());
    assert!(!acknowledged.is_empty());
}
