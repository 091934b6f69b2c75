//! The `plinth` binary as a user runs it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PRODUCTION: [(&str, &str); 6] = [
    ("PLINTH_ENV", "production"),
    ("SECRET_KEY", "0123456789abcdef0123456789abcdef-secret"),
    ("JWT_SECRET", "fedcba9876543210fedcba9876543210-jwt"),
    ("SMTP_URL", "smtp://127.0.0.1:2525"),
    ("APP_URL", "https://app.example.com"),
    ("PLINTH_LOG", "warn"),
];

fn command(vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plinth"));
    cmd.env_clear().env("PLINTH_LOG", "warn");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `plinth ARGS` with only the given variables set.
pub fn plinth(args: &[&str], vars: &[(&str, &str)]) -> Output {
    command(vars).args(args).output().expect("run plinth")
}

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("plinth.db").display())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A minimal HTTP/1.1 GET over std, so these tests need no async runtime.
pub fn http_get(base: &str, path: &str) -> Option<(u16, String)> {
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Starts `plinth serve` on a port and waits until /readyz answers 200.
pub fn spawn_plinth(dir: &Path, port: u16, extra: &[&str]) -> (Child, String) {
    spawn_plinth_with(dir, port, extra, &[])
}

/// [`spawn_plinth`] with more environment variables.
pub fn spawn_plinth_with(dir: &Path, port: u16, extra: &[&str], vars: &[(&str, &str)]) -> (Child, String) {
    let addr = format!("127.0.0.1:{port}");
    let url = db_url(dir);
    let mut args = vec!["serve", "--addr", addr.as_str()];
    args.extend_from_slice(extra);
    let mut all = vec![("DATABASE_URL", url.as_str())];
    all.extend_from_slice(vars);
    let mut child = command(&all)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn plinth");
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = http_get(&base, "/readyz") {
            return (child, base);
        }
        if let Some(exit) = child.try_wait().expect("wait") {
            panic!("plinth exited early: {exit}");
        }
        assert!(Instant::now() < deadline, "plinth did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn production_refuses_to_start_and_names_each_missing_secret() {
    let out = plinth(&["migrate"], &[("PLINTH_ENV", "production")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["SECRET_KEY", "JWT_SECRET", "DATABASE_URL", "SMTP_URL", "APP_URL"] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
}

#[test]
fn production_refuses_development_default_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let url = db_url(dir.path());
    let mut vars = PRODUCTION.to_vec();
    vars.retain(|(k, _)| *k != "JWT_SECRET");
    vars.push((
        "JWT_SECRET",
        "plinth-development-jwt-secret-do-not-use-in-production",
    ));
    vars.push(("DATABASE_URL", &url));
    let out = plinth(&["migrate"], &vars);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET is the development default"));
}

#[test]
fn invalid_values_are_named() {
    let out = plinth(
        &["migrate"],
        &[("DATABASE_URL", "mysql://x"), ("PLINTH_ENV", "staging")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL must look like sqlite://PATH"), "{err}");
    assert!(err.contains("PLINTH_ENV"), "{err}");
    // A PostgreSQL URL whose server does not answer: a clear failure, no panic.
    let port = free_port().to_string();
    let url = format!("postgres://nobody@127.0.0.1:{port}/plinth");
    let postgres = plinth(&["migrate"], &[("DATABASE_URL", url.as_str())]);
    assert_eq!(postgres.status.code(), Some(1));
    let err = String::from_utf8_lossy(&postgres.stderr);
    assert!(
        err.contains("error connecting to server") && err.contains("refused"),
        "{err}"
    );
    let backup = plinth(&["backup", "x.db"], &[("DATABASE_URL", url.as_str())]);
    let err = String::from_utf8_lossy(&backup.stderr);
    assert!(err.contains("pg_dump"), "{err}");
}

#[test]
fn migrate_applies_once_then_reports_up_to_date() {
    let dir = tempfile::tempdir().expect("dir");
    let url = db_url(&dir.path().join("nested"));
    let first = plinth(&["migrate"], &[("DATABASE_URL", &url)]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied core/0001_create_jobs"));
    let second = plinth(&["migrate"], &[("DATABASE_URL", &url)]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("database is up to date"));
}

#[test]
fn migrations_started_at_the_same_moment_apply_once() {
    for round in 0..3 {
        let dir = tempfile::tempdir().expect("dir");
        let url = db_url(dir.path());
        let runs: Vec<Child> = (0..4)
            .map(|_| {
                command(&[("DATABASE_URL", &url)])
                    .arg("migrate")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let outs: Vec<Output> = runs
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect();
        for out in &outs {
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let applying = outs
            .iter()
            .filter(|o| String::from_utf8_lossy(&o.stdout).contains("applied core/0001_create_jobs"))
            .count();
        assert_eq!(applying, 1, "round {round}: exactly one process applies");
        let conn = rusqlite::Connection::open(dir.path().join("plinth.db")).expect("db");
        let (rows, distinct): (i64, i64) = conn
            .query_row(
                "SELECT count(*), count(DISTINCT owner || '/' || version) FROM plinth_migrations",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("count");
        assert_eq!(rows, distinct);
        let again = plinth(&["migrate"], &[("DATABASE_URL", &url)]);
        assert!(String::from_utf8_lossy(&again.stdout).contains("database is up to date"));
    }
}

#[test]
fn a_second_server_on_the_same_file_stops_at_once_naming_the_lock() {
    let dir = tempfile::tempdir().expect("dir");
    let url = db_url(dir.path());
    let (port_a, port_b) = (free_port(), free_port());
    let start = |port: u16| {
        let addr = format!("127.0.0.1:{port}");
        command(&[("DATABASE_URL", &url)])
            .args(["serve", "--addr", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    // Both start at the same moment on a file that does not exist yet.
    let mut servers = [start(port_a), start(port_b)];
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        if let Some(i) = (0..2).find(|&i| servers[i].try_wait().expect("wait").is_some()) {
            break i;
        }
        assert!(Instant::now() < deadline, "neither server stopped");
        std::thread::sleep(Duration::from_millis(20));
    };
    let running = 1 - stopped;
    let mut err = String::new();
    servers[stopped]
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    let lock = format!("{}.lock", dir.path().join("plinth.db").display());
    assert!(err.contains(&lock), "the message names the lock: {err}");
    assert!(err.contains("already running"), "{err}");
    assert!(!err.contains("migration"), "it stops before migrating: {err}");
    let base = format!("http://127.0.0.1:{}", [port_a, port_b][running]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&base, "/readyz").map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "the first server serves");
        assert!(
            servers[running].try_wait().expect("wait").is_none(),
            "the first server runs on"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[test]
fn seed_demo_creates_the_demo_accounts_and_production_refuses_it() {
    let dir = tempfile::tempdir().expect("dir");
    let url = db_url(dir.path());
    let out = plinth(&["seed", "--demo"], &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn =
        plinth_core::storage::sqlite::db::open_connection(&dir.path().join("plinth.db")).expect("conn");
    let emails: Vec<String> = conn
        .prepare("SELECT email FROM users ORDER BY email")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        emails,
        [
            "admin@acme.test",
            "member@acme.test",
            "owner@acme.test",
            "staff@plinth.test",
            "viewer@acme.test"
        ]
    );

    let mut vars = PRODUCTION.to_vec();
    vars.push(("DATABASE_URL", &url));
    let refused = plinth(&["seed", "--demo"], &vars);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused when PLINTH_ENV=production"));

    let nothing = plinth(&["seed"], &[("DATABASE_URL", &url)]);
    assert!(!nothing.status.success());
}

#[test]
fn seed_creates_synthetic_tenant_accounts() {
    let dir = tempfile::tempdir().expect("dir");
    let url = db_url(dir.path());
    let out = plinth(
        &["seed", "--orgs", "3", "--members", "4"],
        &[("DATABASE_URL", &url)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn =
        plinth_core::storage::sqlite::db::open_connection(&dir.path().join("plinth.db")).expect("conn");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM users WHERE email LIKE '%.load.test'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 12);
    let orgs: i64 = conn
        .query_row(
            "SELECT count(*) FROM organizations WHERE slug LIKE 'org-%'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(orgs, 3);
    let owners: i64 = conn
        .query_row(
            "SELECT count(*) FROM tenant_memberships WHERE role = 'owner'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(owners, 3, "member0 owns each synthetic org");
    let again = plinth(
        &["seed", "--orgs", "3", "--members", "4"],
        &[("DATABASE_URL", &url)],
    );
    assert!(again.status.success());
    let members: i64 = conn
        .query_row("SELECT count(*) FROM tenant_memberships", [], |r| r.get(0))
        .expect("count");
    assert_eq!(members, 12, "seeding twice adds nothing");
}

#[test]
fn create_admin_creates_staff_and_enforces_the_password_policy() {
    let dir = tempfile::tempdir().expect("dir");
    let url = db_url(dir.path());
    let short = plinth(
        &["create-admin", "--email", "root@example.com"],
        &[("DATABASE_URL", &url), ("PLINTH_ADMIN_PASSWORD", "short")],
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password: must be at least 10"));

    let mut child = command(&[("DATABASE_URL", &url)])
        .args(["create-admin", "--email", "Root@Example.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"a-long-enough-password\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let conn =
        plinth_core::storage::sqlite::db::open_connection(&dir.path().join("plinth.db")).expect("conn");
    let (email, staff, hash): (String, bool, String) = conn
        .query_row(
            "SELECT email, is_platform_admin, password_hash FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("user");
    assert_eq!(email, "root@example.com");
    assert!(staff);
    assert!(plinth_core::identity::passwords::verify(
        "a-long-enough-password",
        &hash
    ));
}

#[test]
fn plugins_lists_the_registered_plugins() {
    let out = plinth(&["plugins"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("teams") && text.contains("enabled"), "{text}");
    let off = plinth(&["plugins"], &[("PLINTH_DISABLED_PLUGINS", "teams")]);
    assert!(String::from_utf8_lossy(&off.stdout).contains("disabled"));
}

#[test]
fn serve_demo_answers_the_ops_endpoints_spec_and_docs() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, base) = spawn_plinth(dir.path(), free_port(), &["--demo"]);
    let check = |path: &str| http_get(&base, path).expect("answer");
    let (status, body) = check("/healthz");
    assert_eq!((status, body.contains("ok")), (200, true));
    assert_eq!(check("/readyz").0, 200);
    let (status, body) = check("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("plinth_http_requests_total"), "{body}");
    let (status, body) = check("/api/openapi.json");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // chunked transfer: the document is the part between the first { and the last }
        let start = body.find('{').unwrap_or(0);
        let end = body.rfind('}').map_or(body.len(), |e| e + 1);
        serde_json::from_str(&body[start..end]).expect("json document")
    });
    assert_eq!(doc["openapi"], "3.0.0");
    assert_eq!(check("/docs").0, 200);
    let _ = child.kill();
    let _ = child.wait();
}
