//! Several nodes on one PostgreSQL database (the PostgreSQL half of the suite; a
//! SQLite file serves one process): what one node commits reaches the other's
//! caches within a second, through the database's change notes and each node's
//! LISTEN connection. Each delay is measured over 20 trials; the medians are
//! printed for the record.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::acme::Acme;
use crate::harness::{TestApp, on_postgres};

const TRIALS: usize = 20;
const WITHIN: Duration = Duration::from_secs(1);

/// Two nodes on Acme's database: `a` is Acme's own server, `b` a second one.
async fn two_nodes() -> (Acme, TestApp) {
    // Logins per account are rate limited; the trials log in 20 times.
    let limits = |builder: crate::harness::TestAppBuilder| {
        builder
            .var("PLINTH_AUTH_RATE_PER_ACCOUNT", "1000")
            .var("PLINTH_AUTH_RATE_PER_IP", "1000")
    };
    let acme = Acme::start_with(limits(TestApp::builder())).await;
    let b = limits(TestApp::builder())
        .builtins()
        .in_dir(acme.app.dir.clone())
        .spawn()
        .await;
    (acme, b)
}

/// Two nodes built alike, the second on the first's database.
async fn pair(builder: impl Fn() -> crate::harness::TestAppBuilder) -> (TestApp, TestApp) {
    let a = builder().spawn().await;
    let b = builder().in_dir(a.dir.clone()).spawn().await;
    (a, b)
}

async fn get(node: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let resp = node
        .client
        .get(node.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `seen` on the other node until it holds; the time it took.
async fn delay<F, Fut>(mut seen: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !seen().await {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "never seen on the other node"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t0.elapsed()
}

fn report(what: &str, mut delays: Vec<Duration>) {
    delays.sort();
    let median = delays[delays.len() / 2];
    let worst = delays[delays.len() - 1];
    let _ = writeln!(
        std::io::stderr(),
        "cross-node delay, {what}: median {:.1} ms, worst {:.1} ms over {} trials",
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0,
        delays.len()
    );
    assert!(worst < WITHIN, "{what}: {worst:?} on the other node");
}

#[tokio::test]
async fn a_profile_change_on_one_node_shows_on_the_other_within_a_second() {
    if !on_postgres() {
        return;
    }
    let (acme, b) = two_nodes().await;
    let token = acme.token("member").to_string();
    let mut delays = Vec::new();
    for trial in 0..TRIALS {
        let name = format!("Member {trial}");
        // b has the profile cached before a changes it.
        assert_eq!(get(&b, &token, "/api/auth/me").await.0, 200);
        let (status, _) = acme
            .send("PATCH", "member", "/api/auth/me", Some(json!({ "name": name })))
            .await;
        assert_eq!(status.as_u16(), 200);
        delays
            .push(delay(|| async { get(&b, &token, "/api/auth/me").await.1["name"] == name.as_str() }).await);
    }
    report("profile (PATCH /api/auth/me)", delays);
}

#[tokio::test]
async fn a_logout_or_a_disabled_user_on_one_node_stops_the_token_on_the_other() {
    if !on_postgres() {
        return;
    }
    let (acme, b) = two_nodes().await;
    let mut delays = Vec::new();
    for _ in 0..TRIALS {
        let (access, _) =
            crate::auth::tokens(&acme.app, "member@acme.test", crate::acme::DEMO_PASSWORD).await;
        assert_eq!(get(&b, &access, "/api/auth/me").await.0, 200, "cached live on b");
        let resp = acme
            .app
            .client
            .post(acme.app.url("/api/auth/logout"))
            .bearer_auth(&access)
            .send()
            .await
            .expect("logout");
        assert_eq!(resp.status().as_u16(), 204);
        delays.push(delay(|| async { get(&b, &access, "/api/auth/me").await.0 == 401 }).await);
    }
    report("logout", delays);

    // Staff disable the viewer on a; the viewer's token stops on b.
    let viewer = acme.id("viewer");
    let mut delays = Vec::new();
    for _ in 0..TRIALS {
        let (token, _) = crate::auth::tokens(&acme.app, "viewer@acme.test", crate::acme::DEMO_PASSWORD).await;
        assert_eq!(get(&b, &token, "/api/auth/me").await.0, 200);
        let (status, body) = acme
            .send(
                "POST",
                "stranger",
                &format!("/api/admin/users/{viewer}/disable"),
                None,
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        delays.push(delay(|| async { get(&b, &token, "/api/auth/me").await.0 == 401 }).await);
        let (status, body) = acme
            .send(
                "POST",
                "stranger",
                &format!("/api/admin/users/{viewer}/enable"),
                None,
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
    }
    report("disabled user", delays);
}

#[tokio::test]
async fn a_role_change_on_one_node_applies_on_the_other_within_a_second() {
    if !on_postgres() {
        return;
    }
    let (acme, b) = two_nodes().await;
    let (member, token) = (acme.id("member"), acme.token("member").to_string());
    let org = format!("/api/orgs/{}", acme.org);
    let mut delays = Vec::new();
    for trial in 0..TRIALS {
        let role = if trial % 2 == 0 { "viewer" } else { "member" };
        assert_eq!(get(&b, &token, &org).await.0, 200, "b has the membership cached");
        let (status, body) = acme
            .send(
                "PATCH",
                "owner",
                &format!("{org}/members/{member}"),
                Some(json!({ "role": role })),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        delays.push(delay(|| async { get(&b, &token, &org).await.1["role"] == role }).await);
    }
    report("role change (PATCH .../members/{id})", delays);
}

#[tokio::test]
async fn a_revoked_key_or_a_narrowed_custom_role_stops_on_the_other_node_within_a_second() {
    if !on_postgres() {
        return;
    }
    let (acme, b) = two_nodes().await;
    let org = format!("/api/orgs/{}", acme.org);
    let mut delays = Vec::new();
    for _ in 0..TRIALS {
        let (status, created) = acme
            .send(
                "POST",
                "owner",
                &format!("{org}/api-keys"),
                Some(json!({"name": "trial", "permissions": ["org:read"]})),
            )
            .await;
        assert_eq!(status.as_u16(), 201, "{created}");
        let key = created["key"].as_str().expect("key").to_string();
        assert_eq!(get(&b, &key, &org).await.0, 200, "b has the key cached");
        let id = created["id"].as_str().expect("id");
        let (status, _) = acme
            .send("DELETE", "owner", &format!("{org}/api-keys/{id}"), None)
            .await;
        assert_eq!(status.as_u16(), 204);
        delays.push(delay(|| async { get(&b, &key, &org).await.0 == 401 }).await);
    }
    report("API key revoked (DELETE .../api-keys/{id})", delays);

    // A custom role narrowed on a: its holder loses the permission on b.
    let (status, _) = acme
        .send(
            "POST",
            "owner",
            &format!("{org}/roles"),
            Some(json!({"key": "auditor", "name": "Auditor", "permissions": ["org:read", "audit:read"]})),
        )
        .await;
    assert_eq!(status.as_u16(), 201);
    let viewer = acme.id("viewer");
    let (status, _) = acme
        .send(
            "PATCH",
            "owner",
            &format!("{org}/members/{viewer}"),
            Some(json!({"role": "auditor"})),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    let token = acme.token("viewer").to_string();
    let audit = format!("{org}/audit-logs");
    let mut delays = Vec::new();
    for trial in 0..TRIALS {
        let (permissions, status) = if trial % 2 == 0 {
            (json!(["org:read"]), 403)
        } else {
            (json!(["org:read", "audit:read"]), 200)
        };
        let (changed, body) = acme
            .send(
                "PATCH",
                "owner",
                &format!("{org}/roles/auditor"),
                Some(json!({"permissions": permissions})),
            )
            .await;
        assert_eq!(changed.as_u16(), 200, "{body}");
        delays.push(delay(|| async { get(&b, &token, &audit).await.0 == status }).await);
    }
    report("custom role changed (PATCH .../roles/{key})", delays);
}

#[tokio::test]
async fn a_flag_change_on_one_node_applies_on_the_other_within_a_second() {
    if !on_postgres() {
        return;
    }
    let (acme, b) = two_nodes().await;
    let token = acme.token("owner").to_string();
    let flags = format!("/api/orgs/{}/flags", acme.org);
    let mut delays = Vec::new();
    for trial in 0..TRIALS {
        let enabled = trial % 2 == 1;
        let before = get(&b, &token, &flags).await.1;
        let (status, _) = acme
            .send(
                "PATCH",
                "stranger",
                "/api/admin/flags/new-dashboard",
                Some(json!({ "enabled": enabled })),
            )
            .await;
        assert_eq!(status.as_u16(), 200);
        delays.push(
            delay(|| async {
                let now = get(&b, &token, &flags).await.1;
                now != before
            })
            .await,
        );
    }
    report("flag (PATCH /api/admin/flags/...)", delays);
}

/// Jobs on several nodes: a job that outlives its lease on a live node is renewed
/// and runs once; a job a dead node left running (its lease run out) runs again
/// on another node, once.
#[tokio::test]
async fn leased_jobs_run_once_across_nodes_and_a_dead_nodes_job_runs_again() {
    if !on_postgres() {
        return;
    }
    let (a, b) = pair(|| {
        TestApp::builder()
            .plugin(crate::widgets::Widgets::default())
            .var("PLINTH_JOB_LEASE_SECS", "1")
            .var("PLINTH_JOB_POLL_MS", "20")
    })
    .await;
    let conn = a.conn();
    conn.execute(
        "INSERT INTO widgets (id, name) VALUES ('w-long', 'long'), ('w-dead', 'dead')",
        args![],
    )
    .expect("widgets");
    // Three seconds of work on a one-second lease, with two nodes polling.
    let jobs = a.platform.jobs().clone();
    a.platform
        .db()
        .write(move |tx| jobs.enqueue(tx, "widgets.process", &json!({"id": "w-long", "sleep_ms": 3000})))
        .await
        .expect("enqueue");
    // What a node killed mid-job leaves: running, its lease run out.
    conn.execute(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, lease_until, created_at, updated_at)
         VALUES ('01900000-0000-7000-8000-0000000000d1', 'widgets.process', '{\"id\":\"w-dead\"}', 'running', 1, 5, 0, 1, 'x', 'x')",
        args![],
    )
    .expect("a dead node's job");
    crate::harness::eventually("both jobs are done", || async {
        conn.query_row(
            "SELECT count(*) FROM jobs WHERE kind = 'widgets.process' AND status = 'done'",
            args![],
            |r| r.get::<i64>(0),
        )
        .expect("jobs")
            == 2
    })
    .await;
    let processed: Vec<(String, i64)> = conn
        .query_all("SELECT id, processed FROM widgets ORDER BY id", args![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("widgets");
    assert_eq!(
        processed,
        [("w-dead".to_string(), 1), ("w-long".to_string(), 1)],
        "each job ran once"
    );
    let attempts: i64 = conn
        .query_row(
            "SELECT attempts FROM jobs WHERE payload LIKE '%w-long%'",
            args![],
            |r| r.get(0),
        )
        .expect("attempts");
    assert_eq!(attempts, 1, "the long job was never taken by the other node");
    drop(b);
}

/// Periodic work takes its turn in the database: three nodes, each looking several
/// times a period, enqueue a 600 ms schedule about once a period between them, as
/// one node does (each node ticking on its own clock would give three times that).
#[tokio::test]
async fn periodic_work_runs_once_a_period_across_three_nodes() {
    if !on_postgres() {
        return;
    }
    let every = Duration::from_millis(600);
    let node = || {
        TestApp::builder()
            .plugin(crate::widgets::Widgets {
                tick_every: Some(every),
                ..Default::default()
            })
            .var("PLINTH_JOB_POLL_MS", "20")
    };
    let (a, b) = pair(node).await;
    let c = node().in_dir(a.dir.clone()).spawn().await;
    let window = Duration::from_secs(6);
    tokio::time::sleep(window).await;
    let ticks = crate::jobs::ticks(&a);
    let most = (window.as_millis() / every.as_millis()) as i64 + 1;
    let _ = writeln!(
        std::io::stderr(),
        "three nodes, a {every:?} schedule, {window:?}: {ticks} runs (at most {most})"
    );
    assert!((3..=most).contains(&ticks), "{ticks} runs in {window:?}");
    drop((b, c));
}

/// Sign-in limits count every node's requests: an account limited to 4 attempts a
/// minute gets 2 on each node, then 429 on both.
#[tokio::test]
async fn sign_in_limits_count_across_nodes() {
    if !on_postgres() {
        return;
    }
    let (a, b) = pair(|| TestApp::builder().var("PLINTH_AUTH_RATE_PER_ACCOUNT", "4")).await;
    let attempt = |node: &TestApp| {
        let (client, url) = (node.client.clone(), node.url("/api/auth/login"));
        async move {
            client
                .post(url)
                .json(&json!({"email": "nobody@example.com", "password": "wrong password"}))
                .send()
                .await
                .expect("login")
                .status()
                .as_u16()
        }
    };
    for node in [&a, &b, &a, &b] {
        assert_eq!(attempt(node).await, 401);
    }
    assert_eq!(attempt(&a).await, 429, "the fifth attempt, on a");
    assert_eq!(attempt(&b).await, 429, "and on b");
}

async fn send_on(node: &TestApp, token: &str, method: &str, path: &str, body: Option<Value>) -> u16 {
    let mut req = node
        .client
        .request(method.parse().expect("method"), node.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request").status().as_u16()
}

/// Writes racing on two nodes keep the invariants one SQLite writer kept: of two
/// owners leaving at once one stays; one idempotency key records one usage event
/// however many nodes and requests carry it; the audit chain verifies after.
#[tokio::test]
async fn racing_writes_on_two_nodes_keep_the_invariants() {
    if !on_postgres() {
        return;
    }
    let (acme, b) = two_nodes().await;
    let admin = acme.id("admin");
    let (status, _) = acme
        .send(
            "PATCH",
            "owner",
            &acme.path(&format!("/members/{admin}")),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    let leave = acme.path("/leave");
    let (owner_token, admin_token) = (acme.token("owner").to_string(), acme.token("admin").to_string());
    let (on_a, on_b) = tokio::join!(
        send_on(&acme.app, &owner_token, "POST", &leave, None),
        send_on(&b, &admin_token, "POST", &leave, None),
    );
    let mut statuses = [on_a, on_b];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 409], "one of the two last owners stays");
    let owners: i64 = acme
        .app
        .conn()
        .query_row(
            "SELECT count(*) FROM tenant_memberships WHERE org_id = ?1 AND role = 'owner'",
            args![acme.org.to_string()],
            |r| r.get(0),
        )
        .expect("owners");
    assert_eq!(owners, 1);

    // Twenty requests, ten per node, one key.
    let member = acme.token("member").to_string();
    let usage = acme.path("/usage");
    let body = json!({"metric": "api_calls", "quantity": 3, "idempotency_key": "raced"});
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let node = if i % 2 == 0 { &acme.app } else { &b };
            let request = node
                .client
                .post(node.url(&usage))
                .bearer_auth(&member)
                .json(&body);
            tokio::spawn(async move { request.send().await.expect("usage").status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 200), "{statuses:?}");
    let events: i64 = acme
        .app
        .conn()
        .query_row(
            "SELECT count(*) FROM tenant_usage_events WHERE idempotency_key = 'raced'",
            args![],
            |r| r.get(0),
        )
        .expect("events");
    assert_eq!(events, 1);

    let verify = crate::cli::plinth(
        &["audit", "verify"],
        &[("DATABASE_URL", acme.app.database_url().as_str())],
    );
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && text.contains("audit log intact"),
        "{text}"
    );
}

/// Two `plinth serve` processes share the job queue; one is killed with SIGKILL
/// while its workers are in the middle of sending mail. Every job is done, none
/// twice: the dead node's jobs run again on the other after their lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_job_leaves_nothing_undone_and_nothing_done_twice() {
    if !on_postgres() {
        return;
    }
    let sink = crate::smtp::SmtpSink::start_slow(Duration::from_millis(800)).await;
    let dir = tempfile::tempdir().expect("dir");
    let url = crate::harness::database_url(dir.path());
    let smtp = sink.url();
    let node = {
        let (dir, url, smtp) = (dir.path().to_path_buf(), url.clone(), smtp.clone());
        move || {
            let vars = [
                ("DATABASE_URL", url.as_str()),
                ("SMTP_URL", smtp.as_str()),
                ("PLINTH_JOB_LEASE_SECS", "2"),
                ("PLINTH_JOB_POLL_MS", "50"),
                ("PLINTH_JOB_BACKOFF_MS", "50"),
                ("PLINTH_AUTH_RATE_PER_IP", "10000"),
            ];
            crate::cli::spawn_plinth_with(&dir, crate::cli::free_port(), &[], &vars)
        }
    };
    let (mut a, base_a) = tokio::task::spawn_blocking(node.clone()).await.expect("a");
    let (mut b, base_b) = tokio::task::spawn_blocking(node).await.expect("b");
    let client = reqwest::Client::new();
    let register = |base: &str, i: usize| {
        client
            .post(format!("{base}/api/auth/register"))
            .json(&json!({"email": format!("n{i}@example.com"), "password": "a decent passphrase", "name": "N"}))
            .send()
    };
    let total = 16;
    for i in 0..total / 2 {
        assert_eq!(
            register(&base_a, i).await.expect("register").status().as_u16(),
            202
        );
    }
    // a's workers are each inside an 800 ms send now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill().expect("SIGKILL");
    let _ = a.wait();
    for i in total / 2..total {
        assert_eq!(
            register(&base_b, i).await.expect("register").status().as_u16(),
            202
        );
    }
    let conn = crate::harness::TestConn::open(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let (done, retried) = loop {
        let (done, retried): (i64, i64) = conn
            .query_row(
                "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE attempts > 1)
                 FROM jobs WHERE kind = 'mail.send'",
                args![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("jobs");
        if done == total as i64 || Instant::now() > deadline {
            break (done, retried);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = b.kill();
    let _ = b.wait();
    let mut delivered: Vec<String> = sink.messages().into_iter().flat_map(|m| m.to).collect();
    delivered.sort();
    let unique = {
        let mut u = delivered.clone();
        u.dedup();
        u.len()
    };
    let _ = writeln!(
        std::io::stderr(),
        "node killed mid-job: {total} mail jobs enqueued, {done} done, {retried} run again after the dead node's lease, \
         {} delivered, {} delivered twice",
        delivered.len(),
        delivered.len() - unique
    );
    assert_eq!(done, total as i64, "every job is done");
    assert_eq!(unique, total, "every account got its mail");
    assert_eq!(delivered.len(), unique, "no mail went out twice");
    assert!(retried >= 1, "the killed node was running jobs: {retried}");
}

/// A node whose change listener loses its connection says so: /readyz answers
/// 503 until it is back, /metrics counts the loss, and it listens again.
#[tokio::test]
async fn a_lost_listener_makes_the_node_unready_until_it_reconnects() {
    if !on_postgres() {
        return;
    }
    let app = TestApp::builder().spawn().await;
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    // What a restart of PostgreSQL or a network cut does to the LISTEN connection.
    let killed: i64 = app
        .conn()
        .query_row(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t",
            args![],
            |r| r.get(0),
        )
        .expect("terminate");
    assert_eq!(killed, 1, "one listener connection");
    let t0 = Instant::now();
    let mut saw_unready = false;
    loop {
        let status = app.get("/readyz").await.status().as_u16();
        if status == 503 {
            saw_unready = true;
        }
        if status == 200 && saw_unready {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the listener never came back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    let losses = metrics
        .lines()
        .find(|l| l.contains("change_listener_losses") && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("a losses figure");
    assert!(losses >= 1.0, "{losses}");
}
