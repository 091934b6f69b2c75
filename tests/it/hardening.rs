//! Reliability under abuse and failure: load shedding, and acknowledged writes
//! surviving SIGKILL and SIGTERM mid-load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{free_port, spawn_plinth_with};
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
    login_as(base, "owner@acme.test").await
}

async fn acme_id(base: &str, token: &str) -> String {
    let orgs: Value = reqwest::Client::new()
        .get(format!("{base}/api/orgs"))
        .bearer_auth(token)
        .send()
        .await
        .expect("orgs")
        .json()
        .await
        .expect("json");
    orgs["items"][0]["id"].as_str().expect("acme").to_string()
}

async fn login_as(base: &str, email: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": "demo-password-1"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    body["access_token"].as_str().expect("token").to_string()
}

/// What a crash-test writer writes, and where the acknowledged id must be found.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Write {
    Org,
    Usage,
    Invitation,
    Webhook,
}

impl Write {
    fn table(self) -> &'static str {
        match self {
            Write::Org => "organizations",
            Write::Usage => "tenant_usage_events",
            Write::Invitation => "tenant_invitations",
            Write::Webhook => "billing_webhook_events",
        }
    }
}

/// One writer per kind (orgs, usage events, invitations, signed webhook events),
/// writing until stopped; each returns the ids the server acknowledged with 2xx.
fn start_writers(
    base: &str,
    token: &str,
    org: &str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Write, String)>>> {
    [Write::Org, Write::Usage, Write::Invitation, Write::Webhook]
        .into_iter()
        .map(|kind| {
            let (base, token, org, stop) = (base.to_string(), token.to_string(), org.to_string(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("client");
                let mut acknowledged = Vec::new();
                let mut i = 0;
                let run = uuid::Uuid::now_v7().simple().to_string();
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let key = format!("{run}-{i}");
                    let request = match kind {
                        Write::Org => client
                            .post(format!("{base}/api/orgs"))
                            .json(&json!({"name": format!("Crash {key}")})),
                        Write::Usage => client.post(format!("{base}/api/orgs/{org}/usage")).json(
                            &json!({"metric": "crash_events", "quantity": 1, "idempotency_key": key}),
                        ),
                        Write::Invitation => client
                            .post(format!("{base}/api/orgs/{org}/invitations"))
                            .json(&json!({"email": format!("crash-{key}@example.com"), "role": "viewer"})),
                        Write::Webhook => {
                            let body = json!({
                                "id": format!("evt_crash_{key}"), "object": "event", "type": "customer.updated",
                                "created": crate::billing::now(),
                                "data": {"object": {"object": "customer", "id": "cus_crash", "metadata": {}}},
                            })
                            .to_string();
                            let sig = crate::billing::stripe_signature(&body, crate::billing::SECRET, crate::billing::now());
                            client
                                .post(format!("{base}/api/webhooks/stripe"))
                                .header("content-type", "application/json")
                                .header("stripe-signature", sig)
                                .body(body)
                        }
                    };
                    let request = if kind == Write::Webhook { request } else { request.bearer_auth(&token) };
                    match request.send().await {
                        Ok(resp) if resp.status().is_success() => {
                            if kind == Write::Webhook {
                                acknowledged.push((kind, format!("evt_crash_{key}")));
                            } else if let Ok(body) = resp.json::<Value>().await
                                && let Some(id) = body["id"].as_str()
                            {
                                acknowledged.push((kind, id.to_string()));
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

fn missing(db: &std::path::Path, ids: &[(Write, String)]) -> (Vec<(Write, String)>, String) {
    let conn = plinth_core::storage::sqlite::db::open_connection(db).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    let lost = ids
        .iter()
        .filter(|(kind, id)| {
            !conn
                .query_row(
                    &format!("SELECT count(*) FROM {} WHERE id = ?1", kind.table()),
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
    let vars = [
        ("STRIPE_WEBHOOK_SECRET", crate::billing::SECRET),
        ("PLINTH_JOB_POLL_MS", "50"),
    ];
    let mut acknowledged: Vec<(Write, String)> = Vec::new();
    for round in 0..3 {
        let (mut server, base) = spawn_plinth_with(dir.path(), free_port(), &[], &vars);
        let token = login(&base).await;
        let client = reqwest::Client::new();
        let acme = acme_id(&base, &token).await;
        if round == 0 {
            // Unlimited seats, so invitations are never refused for the plan.
            let staff = login_as(&base, "staff@plinth.test").await;
            let set = client
                .put(format!("{base}/api/admin/orgs/{acme}/billing/subscription"))
                .bearer_auth(&staff)
                .json(&json!({"plan_id": "business"}))
                .send()
                .await
                .expect("plan");
            assert_eq!(set.status(), StatusCode::OK);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&base, &token, &acme, stop.clone());
        tokio::time::sleep(Duration::from_millis(600 + round * 200)).await;
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
            "round {round}: {} acknowledged writes lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }
    for kind in [Write::Org, Write::Usage, Write::Invitation, Write::Webhook] {
        let n = acknowledged.iter().filter(|(k, _)| *k == kind).count();
        assert!(n > 5, "only {n} {kind:?} writes were acknowledged");
    }
    // Jobs left by the kills (webhook processing) are picked up by the next start.
    let (mut server, base) = spawn_plinth_with(dir.path(), free_port(), &[], &vars);
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .expect("ready")
            .status(),
        StatusCode::OK
    );
    let conn = plinth_core::storage::sqlite::db::open_connection(&db).expect("open");
    crate::harness::eventually("every stored webhook event is processed", || async {
        conn.query_row(
            "SELECT count(*) FROM billing_webhook_events WHERE processed_at IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n == 0)
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let count = |kind: Write| acknowledged.iter().filter(|(k, _)| *k == kind).count();
    eprintln!(
        "crash test: 3 SIGKILLs, {} acknowledged writes ({} orgs, {} usage events, {} invitations, {} webhook events), 0 lost",
        acknowledged.len(),
        count(Write::Org),
        count(Write::Usage),
        count(Write::Invitation),
        count(Write::Webhook)
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
    let vars = [("STRIPE_WEBHOOK_SECRET", crate::billing::SECRET)];
    let (mut server, base) = spawn_plinth_with(dir.path(), free_port(), &[], &vars);
    let token = login(&base).await;
    let acme = acme_id(&base, &token).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&base, &token, &acme, stop.clone());
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

#[tokio::test]
async fn concurrent_read_then_write_transactions_never_fail_busy() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let db = app.platform.db().clone();
    db.write(|tx| {
        tx.execute(
            "INSERT INTO widgets (id, name) VALUES ('counter', 'counter')",
            plinth_core::params![],
        )
    })
    .await
    .expect("seed");
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    // Read, then write what was read: a deferred transaction here
                    // would hit SQLITE_BUSY_SNAPSHOT under contention.
                    db.write(|tx| {
                        let n: i64 = tx.query_one(
                            "SELECT processed FROM widgets WHERE id = 'counter'",
                            plinth_core::params![],
                            |r| r.get(0),
                        )?;
                        tx.execute(
                            "UPDATE widgets SET processed = ?1 WHERE id = 'counter'",
                            plinth_core::params![n + 1],
                        )?;
                        Ok(())
                    })
                    .await
                    .expect("no busy error");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let n: i64 = app
        .conn()
        .query_row(
            "SELECT processed FROM widgets WHERE id = 'counter'",
            args![],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 400, "no lost update");
}

#[tokio::test]
async fn trace_is_refused() {
    let app = TestApp::builder().spawn().await;
    let resp = app
        .client
        .request(reqwest::Method::TRACE, app.url("/api/auth/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn logs_of_a_production_run_hold_no_secret_or_token() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("server.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let (jwt, key) = (
        "fedcba9876543210fedcba9876543210-jwt",
        "0123456789abcdef0123456789abcdef-secret",
    );
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_plinth"))
        .env_clear()
        .envs([
            ("PLINTH_ENV", "production"),
            ("DATABASE_URL", url.as_str()),
            ("SECRET_KEY", key),
            ("JWT_SECRET", jwt),
            // Nobody listens there: mail jobs fail and log their errors.
            ("SMTP_URL", "smtp://127.0.0.1:9"),
            ("APP_URL", "https://app.example.com"),
            ("PLINTH_LOG", "debug"),
            ("PLINTH_JOB_POLL_MS", "50"),
            ("PLINTH_JOB_BACKOFF_MS", "50"),
        ])
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stderr(std::fs::File::create(&log).expect("log file"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready);
    let password = "an unmistakable passphrase 77";
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body).send();
    post(
        "/api/auth/register",
        json!({"email": "ada@example.com", "password": password, "name": "Ada"}),
    )
    .await
    .expect("register");
    let login: Value = post(
        "/api/auth/login",
        json!({"email": "ada@example.com", "password": password}),
    )
    .await
    .expect("login")
    .json()
    .await
    .expect("json");
    let (access, refresh) = (
        login["access_token"].as_str().expect("a").to_string(),
        login["refresh_token"].as_str().expect("r").to_string(),
    );
    post("/api/auth/refresh", json!({ "refresh_token": refresh }))
        .await
        .expect("refresh");
    post(
        "/api/auth/login",
        json!({"email": "ada@example.com", "password": "wrong password here"}),
    )
    .await
    .expect("login");
    let org: Value = client
        .post(format!("{base}/api/orgs"))
        .bearer_auth(&access)
        .json(&json!({"name": "Logs Inc"}))
        .send()
        .await
        .expect("org")
        .json()
        .await
        .expect("json");
    client
        .post(format!(
            "{base}/api/orgs/{}/invitations",
            org["id"].as_str().expect("id")
        ))
        .bearer_auth(&access)
        .json(&json!({"email": "bob@example.com", "role": "member"}))
        .send()
        .await
        .expect("invite");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let conn =
        plinth_core::storage::sqlite::db::open_connection(&dir.path().join("plinth.db")).expect("open");
    let mails: Vec<String> = conn
        .prepare("SELECT text_body FROM mail_outbox")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let tokens_in_mail: Vec<String> = mails
        .iter()
        .filter_map(|m| {
            let at = m
                .find("token=")
                .map(|i| i + 6)
                .or_else(|| m.find("/invitations/").map(|i| i + 13))?;
            Some(
                m[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || *c == '.')
                    .collect(),
            )
        })
        .collect();
    assert!(tokens_in_mail.len() >= 2, "{mails:?}");
    for token in &tokens_in_mail {
        client
            .get(format!("{base}/api/invitations/{token}"))
            .send()
            .await
            .expect("preview");
    }
    let _ = server.kill();
    let _ = server.wait();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.lines().count() > 10, "a real log was captured");
    let mut secrets = vec![
        password.to_string(),
        access,
        refresh,
        jwt.to_string(),
        key.to_string(),
    ];
    secrets.extend(tokens_in_mail);
    for secret in secrets {
        assert!(
            !text.contains(&secret),
            "the log contains a secret: {}…",
            &secret[..8.min(secret.len())]
        );
    }
}

#[tokio::test]
async fn a_client_that_stops_mid_request_is_disconnected_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::builder()
        .var("PLINTH_IDLE_TIMEOUT_SECS", "1")
        .spawn()
        .await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    // Half a request line, then silence (a slow or stalled client holding a slot).
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
        .await
        .expect("the server never closed the connection");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection to close, got {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
}

/// Reads one whole HTTP/1.1 response with a Content-Length from `socket`.
async fn read_response(socket: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.expect("read");
        assert!(n > 0, "the connection closed before the response ended");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .expect("content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_idle_timeout_and_busy_ones_do_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::builder()
        .var("PLINTH_IDLE_TIMEOUT_SECS", "1")
        .spawn()
        .await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    // Busy: a request every 300 ms for 2.4 s, over twice the timeout, on one connection.
    let mut busy = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    for _ in 0..8 {
        busy.write_all(request).await.expect("write");
        let response = read_response(&mut busy).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Idle: one request, then silence; the server closes it after about a second.
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    idle.write_all(request).await.expect("write");
    let response = read_response(&mut idle).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("the server never closed the idle connection");
    assert!(matches!(read, Ok(0) | Err(_)), "expected a close, got {read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
}
