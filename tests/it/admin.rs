//! The platform admin API, the tamper-evident audit log and erasure.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::acme::{Acme, PRINCIPALS};
use crate::harness::eventually;

/// Every admin route, aimed at harmless targets (a missing id where it would
/// change something).
fn admin_routes(acme: &Acme) -> Vec<(&'static str, String, Option<Value>)> {
    let nobody = Uuid::now_v7();
    let viewer = acme.id("viewer");
    let org = acme.org;
    vec![
        ("GET", "/api/admin/users?q=a".into(), None),
        ("GET", format!("/api/admin/users/{viewer}"), None),
        ("POST", format!("/api/admin/users/{nobody}/disable"), None),
        ("POST", format!("/api/admin/users/{nobody}/enable"), None),
        ("POST", format!("/api/admin/users/{nobody}/staff"), None),
        ("DELETE", format!("/api/admin/users/{nobody}/staff"), None),
        ("POST", format!("/api/admin/users/{nobody}/revoke-sessions"), None),
        (
            "POST",
            format!("/api/admin/users/{nobody}/force-password-reset"),
            None,
        ),
        ("POST", format!("/api/admin/users/{nobody}/impersonate"), None),
        ("DELETE", format!("/api/admin/users/{nobody}"), None),
        ("GET", "/api/admin/orgs".into(), None),
        ("GET", format!("/api/admin/orgs/{org}"), None),
        ("POST", format!("/api/admin/orgs/{nobody}/suspend"), None),
        ("POST", format!("/api/admin/orgs/{nobody}/unsuspend"), None),
        ("DELETE", format!("/api/admin/orgs/{nobody}"), None),
        ("GET", "/api/admin/audit-logs".into(), None),
        ("GET", "/api/admin/audit-logs/export?format=ndjson".into(), None),
        ("GET", "/api/admin/audit-logs/verify".into(), None),
        ("GET", "/api/admin/stats".into(), None),
        ("GET", "/api/admin/system".into(), None),
        ("GET", "/api/admin/flags".into(), None),
    ]
}

async fn impersonate(acme: &Acme, who: &str) -> Value {
    let (status, body) = acme
        .send(
            "POST",
            "stranger",
            &format!("/api/admin/users/{}/impersonate", acme.id(who)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn every_admin_route_is_for_staff_acting_as_themselves() {
    let acme = Acme::start().await;
    let impersonation = impersonate(&acme, "member").await;
    let fake = impersonation["access_token"].as_str().expect("token").to_string();
    let mut failures = Vec::new();
    for (method, path, body) in admin_routes(&acme) {
        let (staff, _) = acme.send(method, "stranger", &path, body.clone()).await;
        if !(staff.is_success() || staff == StatusCode::NOT_FOUND) {
            failures.push(format!("{method} {path} as staff: {staff}"));
        }
        for who in PRINCIPALS.iter().filter(|w| **w != "stranger") {
            let (status, _) = acme.send(method, who, &path, body.clone()).await;
            if status != StatusCode::FORBIDDEN {
                failures.push(format!("{method} {path} as {who}: {status}"));
            }
        }
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let anonymous = acme
            .app
            .client
            .request(m.clone(), acme.app.url(&path))
            .send()
            .await
            .expect("request");
        if anonymous.status() != StatusCode::UNAUTHORIZED {
            failures.push(format!("{method} {path} without a token: {}", anonymous.status()));
        }
        let impersonated = acme
            .app
            .client
            .request(m, acme.app.url(&path))
            .bearer_auth(&fake)
            .send()
            .await
            .expect("request");
        if impersonated.status() != StatusCode::FORBIDDEN {
            failures.push(format!(
                "{method} {path} with an impersonation token: {}",
                impersonated.status()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn impersonation_acts_as_the_user_is_audited_and_cannot_change_the_password() {
    let acme = Acme::start().await;
    let token = impersonate(&acme, "member").await;
    assert_eq!(token["expires_in"], 600);
    let access = token["access_token"].as_str().expect("token");
    let me = crate::auth::me_json(&acme.app, access).await;
    assert_eq!(me["email"], "member@acme.test");
    let members = acme
        .app
        .client
        .get(acme.app.url(&acme.path("/members")))
        .bearer_auth(access)
        .send()
        .await
        .expect("members");
    assert_eq!(members.status(), StatusCode::OK);
    let change = acme
        .app
        .client
        .post(acme.app.url("/api/auth/password/change"))
        .bearer_auth(access)
        .json(&json!({"current_password": "demo-password-1", "new_password": "a brand new passphrase"}))
        .send()
        .await
        .expect("change");
    assert_eq!(change.status(), StatusCode::FORBIDDEN);
    let (_, log) = acme
        .send(
            "GET",
            "stranger",
            "/api/admin/audit-logs?action=impersonation.request",
            None,
        )
        .await;
    let entries = log["items"].as_array().expect("items");
    assert!(entries.len() >= 2, "{log}");
    assert_eq!(entries[0]["actor_id"], acme.id("stranger").to_string());
    assert_eq!(entries[0]["target_id"], acme.id("member").to_string());
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_at_once() {
    let acme = Acme::start().await;
    let path = acme.path("/members");
    assert_eq!(acme.send("GET", "member", &path, None).await.0, StatusCode::OK);
    let (status, user) = acme
        .send(
            "POST",
            "stranger",
            &format!("/api/admin/users/{}/disable", acme.id("member")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["disabled"], true);
    assert_eq!(
        acme.send("GET", "member", &path, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let login = crate::auth::login(&acme.app, "member@acme.test", "demo-password-1").await;
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
    let (status, _) = acme
        .send(
            "POST",
            "stranger",
            &format!("/api/admin/users/{}/enable", acme.id("member")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        crate::auth::login(&acme.app, "member@acme.test", "demo-password-1")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_platform_keeps_at_least_one_staff_member() {
    let acme = Acme::start().await;
    let staff = acme.id("stranger");
    let (status, _) = acme
        .send(
            "DELETE",
            "stranger",
            &format!("/api/admin/users/{staff}/staff"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, granted) = acme
        .send(
            "POST",
            "stranger",
            &format!("/api/admin/users/{}/staff", acme.id("viewer")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(granted["is_platform_admin"], true);
    assert_eq!(
        acme.send("GET", "viewer", "/api/admin/stats", None).await.0,
        StatusCode::OK,
        "the new flag applies at once"
    );
    let (status, _) = acme
        .send(
            "DELETE",
            "viewer",
            &format!("/api/admin/users/{staff}/staff"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn users_are_searched_by_prefix_and_filtered() {
    let acme = Acme::start().await;
    let (_, page) = acme
        .send("GET", "stranger", "/api/admin/users?q=ADMIN@", None)
        .await;
    let emails: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, ["admin@acme.test"]);
    let (_, staff) = acme
        .send("GET", "stranger", "/api/admin/users?staff=true", None)
        .await;
    assert_eq!(staff["items"].as_array().map(Vec::len), Some(1));
    let (_, unverified) = acme
        .send("GET", "stranger", "/api/admin/users?verified=false", None)
        .await;
    assert_eq!(unverified["items"][0]["email"], "outsider@example.com");
    let (_, first) = acme
        .send("GET", "stranger", "/api/admin/users?limit=2", None)
        .await;
    let cursor = first["next_cursor"].as_str().expect("more");
    let (_, second) = acme
        .send(
            "GET",
            "stranger",
            &format!("/api/admin/users?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    let (_, detail) = acme
        .send(
            "GET",
            "stranger",
            &format!("/api/admin/users/{}", acme.id("owner")),
            None,
        )
        .await;
    assert_eq!(detail["memberships"][0]["role"], "owner");
    assert!(!detail["sessions"].as_array().expect("sessions").is_empty());
}

#[tokio::test]
async fn a_suspended_org_answers_403_and_keeps_its_data() {
    let acme = Acme::start().await;
    let (status, org) = acme
        .send(
            "POST",
            "stranger",
            &format!("/api/admin/orgs/{}/suspend", acme.org),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(org["suspended"], true);
    assert_eq!(org["member_count"], 4);
    let (status, problem) = acme.send("GET", "member", &acme.path("/members"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem["detail"].as_str().expect("detail").contains("suspended"));
    acme.send(
        "POST",
        "stranger",
        &format!("/api/admin/orgs/{}/unsuspend", acme.org),
        None,
    )
    .await;
    let (status, members) = acme.send("GET", "member", &acme.path("/members"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(members["items"].as_array().map(Vec::len), Some(4));
    let (_, found) = acme.send("GET", "stranger", "/api/admin/orgs?q=glob", None).await;
    assert_eq!(found["items"][0]["slug"], "globex");
    assert_eq!(
        acme.send(
            "DELETE",
            "stranger",
            &format!("/api/admin/orgs/{}", acme.globex),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        acme.send("GET", "outsider", &format!("/api/orgs/{}", acme.globex), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn stats_agree_with_the_database() {
    let acme = Acme::start().await;
    let (status, stats) = acme.send("GET", "stranger", "/api/admin/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    let conn = acme.app.conn();
    let count = |sql: &str| -> i64 { conn.query_row(sql, args![], |r| r.get(0)).expect("count") };
    assert_eq!(stats["users"], count("SELECT count(*) FROM users"));
    assert_eq!(
        stats["verified_users"],
        count("SELECT count(*) FROM users WHERE email_verified_at IS NOT NULL")
    );
    assert_eq!(
        stats["staff"],
        count("SELECT count(*) FROM users WHERE is_platform_admin = 1")
    );
    assert_eq!(stats["orgs"], count("SELECT count(*) FROM organizations"));
    assert_eq!(
        stats["memberships"],
        count("SELECT count(*) FROM tenant_memberships")
    );
    let signups: i64 = stats["signups_per_day"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(signups, count("SELECT count(*) FROM users"));
    let (_, system) = acme.send("GET", "stranger", "/api/admin/system", None).await;
    assert!(system["database_bytes"].as_u64().expect("size") > 0);
    assert_eq!(
        system["version"],
        env!("CARGO_PKG_VERSION"),
        "the product's version"
    );
    let plugins: Vec<&str> = system["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(plugins, ["teams", "admin", "billing", "flags"]);
    assert!(
        system["caches"]
            .as_array()
            .expect("caches")
            .iter()
            .any(|c| c["name"] == "sessions")
    );
}

/// Every text value of every table, for scanning.
fn scan(conn: &crate::harness::TestConn, needle: &str) -> Vec<String> {
    let columns = match conn.engine() {
        plinth_core::storage::EngineKind::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        plinth_core::storage::EngineKind::Postgres => {
            "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c
             JOIN pg_tables t ON t.tablename = c.table_name AND t.schemaname = c.table_schema
             WHERE c.table_schema = current_schema()"
        }
    };
    let columns: Vec<(String, String)> = conn
        .query_all(columns, args![], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("columns");
    let mut hits = Vec::new();
    {
        for (table, column) in columns {
            let n: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE ?1"),
                    args![format!("%{needle}%")],
                    |r| r.get(0),
                )
                .expect("scan");
            if n > 0 {
                hits.push(format!("{table}.{column} ({n})"));
            }
        }
    }
    hits
}

#[tokio::test]
async fn erasure_leaves_no_personal_data_and_keeps_the_chain() {
    let acme = Acme::start().await;
    let email = "erase.me@example.com";
    let (_, user) = acme.join(email).await;
    crate::auth::login(&acme.app, email, "not the password").await;
    crate::auth::post(&acme.app, "/api/auth/password-reset", json!({"email": email})).await;
    eventually("the reset mail is written", || async {
        crate::auth::outbox_token(&acme.app, email, "reset-password").is_some()
    })
    .await;
    let conn = acme.app.conn();
    assert!(
        !scan(&conn, email).is_empty(),
        "the fixture spread the email around"
    );

    let (status, _) = acme
        .send("DELETE", "stranger", &format!("/api/admin/users/{user}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let hits = scan(&conn, email);
    assert!(hits.is_empty(), "the email survives in {hits:?}");
    let entries: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE actor_id = ?1 OR target_id = ?1",
            args![user.to_string()],
            |r| r.get(0),
        )
        .expect("count");
    assert!(entries >= 3, "audit entries stay, under the pseudonym");
    let (_, verify) = acme
        .send("GET", "stranger", "/api/admin/audit-logs/verify", None)
        .await;
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(
        acme.send("GET", "owner", &acme.path("/members"), None).await.1["items"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    // The last owner of an org cannot be erased.
    let (status, _) = acme
        .send(
            "DELETE",
            "stranger",
            &format!("/api/admin/users/{}", acme.id("outsider")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_audit_chain_reveals_edits_and_deletions_made_behind_its_back() {
    let acme = Acme::start().await;
    let (_, report) = acme
        .send("GET", "stranger", "/api/admin/audit-logs/verify", None)
        .await;
    assert_eq!(report["intact"], true);
    let total = report["checked"].as_i64().expect("checked");
    assert!(total >= 6, "{report}");
    let conn = acme.app.conn();
    let edit = conn.execute("UPDATE audit_log SET details = '{}' WHERE seq = 3", args![]);
    assert!(edit.is_err(), "the trigger refuses updates");
    assert!(
        conn.execute("DELETE FROM audit_log WHERE seq = 3", args![])
            .is_err()
    );

    // What someone with the sqlite3 shell could do: drop the guards, edit a row.
    conn.drop_trigger("audit_log_no_update", "audit_log");
    conn.drop_trigger("audit_log_no_delete", "audit_log");
    conn.execute(
        "UPDATE audit_log SET action = 'auth.logout' WHERE seq = 3",
        args![],
    )
    .expect("tamper");
    let (_, report) = acme
        .send("GET", "stranger", "/api/admin/audit-logs/verify", None)
        .await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["broken_at"], 3);
    assert_eq!(report["checked"], 2);
    let cli = crate::cli::plinth(
        &["audit", "verify"],
        &[("DATABASE_URL", &acme.app.database_url())],
    );
    assert!(!cli.status.success());
    assert!(
        String::from_utf8_lossy(&cli.stdout).contains("BROKEN at entry 3"),
        "{}",
        String::from_utf8_lossy(&cli.stdout)
    );
}

#[tokio::test]
async fn a_deleted_audit_entry_is_reported_missing() {
    let acme = Acme::start().await;
    let conn = acme.app.conn();
    conn.drop_trigger("audit_log_no_delete", "audit_log");
    conn.execute("DELETE FROM audit_log WHERE seq = 2", args![])
        .expect("delete");
    let (_, report) = acme
        .send("GET", "stranger", "/api/admin/audit-logs/verify", None)
        .await;
    assert_eq!(report["broken_at"], 2);
    assert!(report["reason"].as_str().expect("reason").contains("missing"));
}

#[tokio::test]
async fn archiving_anchors_the_chain_and_new_entries_continue_it() {
    let acme = Acme::start().await;
    let before: i64 = acme
        .app
        .conn()
        .query_row("SELECT count(*) FROM audit_log", args![], |r| r.get(0))
        .expect("count");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let dir = acme.app.dir.path().join("archive");
    let url = acme.app.database_url();
    let out = crate::cli::plinth(
        &["audit", "archive", "--older-than-days", "0"],
        &[
            ("DATABASE_URL", &url),
            ("PLINTH_AUDIT_ARCHIVE_DIR", dir.to_str().expect("dir")),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archived: usize = std::fs::read_dir(&dir)
        .expect("archive dir")
        .map(|f| {
            std::fs::read_to_string(f.expect("file").path())
                .expect("read")
                .lines()
                .count()
        })
        .sum();
    assert_eq!(archived as i64, before);
    acme.send(
        "POST",
        "owner",
        &acme.path("/invitations"),
        Some(json!({"email": "after@example.com", "role": "viewer"})),
    )
    .await;
    let (_, report) = acme
        .send("GET", "stranger", "/api/admin/audit-logs/verify", None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["checked"].as_i64().expect("checked") >= 1);
}

#[tokio::test]
async fn audit_logs_are_filtered_and_exported_as_csv_and_ndjson() {
    let acme = Acme::start().await;
    acme.send(
        "PATCH",
        "owner",
        &acme.path(""),
        Some(json!({"name": "Acme Corp"})),
    )
    .await;
    let (_, page) = acme
        .send(
            "GET",
            "stranger",
            &format!("/api/admin/audit-logs?org_id={}&action=org.updated", acme.org),
            None,
        )
        .await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["details"]["after"]["name"], "Acme Corp");
    let export = |format: &'static str| {
        let (client, url, token) = (
            acme.app.client.clone(),
            acme.app
                .url(&format!("/api/admin/audit-logs/export?format={format}")),
            acme.token("stranger").to_string(),
        );
        async move { client.get(url).bearer_auth(token).send().await.expect("export") }
    };
    let csv = export("csv").await;
    assert_eq!(csv.headers()["content-type"], "text/csv");
    let text = csv.text().await.expect("csv");
    assert!(text.starts_with("id,seq,at,actor_id,action"), "{text}");
    let ndjson = export("ndjson").await.text().await.expect("ndjson");
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // The second export includes the audit entry of the first.
    assert_eq!(lines.len(), text.lines().count());
    assert!(lines.iter().any(|l| l["action"] == "org.updated"));
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Fills the audit log with `n` entries straight into the file.
pub fn fill_audit_log(path: &std::path::Path, n: u32) {
    let mut conn = plinth_core::storage::sqlite::db::open_connection(path).expect("open");
    let tx = conn.transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO audit_log (id, seq, at, actor_id, action, target_type, target_id, org_id, details, prev_hash, hash)
                 VALUES (?1, ?2, '2026-01-01T00:00:00.000Z', ?3, 'load.test', 'user', ?3, NULL, ?4, 'x', 'x')",
            )
            .expect("prepare");
        for i in 0..n {
            stmt.execute(rusqlite::params![
                Uuid::now_v7().to_string(),
                1_000_000 + i64::from(i),
                Uuid::now_v7().to_string(),
                json!({"n": i, "note": "a row of moderate width to make the export sizeable"}).to_string()
            ])
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

#[tokio::test]
async fn exporting_100k_entries_streams_in_constant_memory() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let made = crate::cli::plinth(
        &["create-admin", "--email", "boss@example.com"],
        &[
            ("DATABASE_URL", &url),
            ("PLINTH_ADMIN_PASSWORD", "a long staff password"),
        ],
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    fill_audit_log(&dir.path().join("plinth.db"), 100_000);
    let (mut child, base) = crate::cli::spawn_plinth(dir.path(), crate::cli::free_port(), &[]);
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "boss@example.com", "password": "a long staff password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_string();
    let before = peak_rss_kib(child.id());
    let mut resp = client
        .get(format!("{base}/api/admin/audit-logs/export?format=csv"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), StatusCode::OK);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let after = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines > 100_000, "{lines} lines");
    let growth_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    let streamed_mib = bytes as f64 / 1024.0 / 1024.0;
    eprintln!(
        "exported {lines} lines, {streamed_mib:.1} MiB; peak RSS {before} -> {after} KiB (+{growth_mib:.1} MiB)"
    );
    assert!(streamed_mib > 15.0, "the export is big enough to tell");
    assert!(
        growth_mib < streamed_mib / 3.0,
        "memory grew {growth_mib:.1} MiB for {streamed_mib:.1} MiB streamed"
    );
}

#[tokio::test]
async fn wildcards_in_admin_search_match_only_themselves() {
    let acme = Acme::start().await;
    let items = |v: &Value| v["items"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    for q in ["%", "_", "%25", "_cme", "\\"] {
        let (status, users) = acme
            .send("GET", "stranger", &format!("/api/admin/users?q={q}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(items(&users), 0, "users matching {q:?}: {users}");
        let (status, orgs) = acme
            .send("GET", "stranger", &format!("/api/admin/orgs?q={q}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(items(&orgs), 0, "orgs matching {q:?}: {orgs}");
    }
    let (_, literal) = acme
        .send(
            "POST",
            "owner",
            "/api/orgs",
            Some(json!({"name": "100% Pure_Co"})),
        )
        .await;
    assert!(literal["id"].is_string(), "{literal}");
    let (_, found) = acme
        .send("GET", "stranger", "/api/admin/orgs?q=100%25", None)
        .await;
    assert_eq!(items(&found), 1, "{found}");
    assert_eq!(found["items"][0]["name"], "100% Pure_Co");
    let (_, found) = acme
        .send("GET", "stranger", "/api/admin/orgs?q=100%25%20pure_c", None)
        .await;
    assert_eq!(items(&found), 1, "{found}");
    let (_, none) = acme
        .send("GET", "stranger", "/api/admin/orgs?q=100%25%20pure_x", None)
        .await;
    assert_eq!(items(&none), 0, "{none}");
    let (_, plain) = acme.send("GET", "stranger", "/api/admin/users?q=own", None).await;
    assert_eq!(plain["items"][0]["email"], "owner@acme.test");
}
