//! Identity end to end: registration, verification, login, tokens, sessions,
//! password change and reset, abuse controls and audit.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, eventually};
use crate::smtp::SmtpSink;

const PASSWORD: &str = "a decent passphrase";
pub const DEV_JWT_SECRET: &str = "plinth-development-jwt-secret-do-not-use-in-production";

pub async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("request")
}

fn bearer(req: RequestBuilder, token: &str) -> RequestBuilder {
    req.header("authorization", format!("Bearer {token}"))
}

pub async fn register(app: &TestApp, email: &str) {
    let resp = post(
        app,
        "/api/auth/register",
        json!({"email": email, "password": PASSWORD, "name": "Ada"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/api/auth/login",
        json!({"email": email, "password": password}),
    )
    .await
}

/// Logs in and returns (access, refresh).
pub async fn tokens(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let resp = login(app, email, password).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    (
        body["access_token"].as_str().expect("access").to_string(),
        body["refresh_token"].as_str().expect("refresh").to_string(),
    )
}

pub async fn me(app: &TestApp, access: &str) -> reqwest::Response {
    bearer(app.client.get(app.url("/api/auth/me")), access)
        .send()
        .await
        .expect("request")
}

/// `GET /me` as JSON.
pub async fn me_json(app: &TestApp, access: &str) -> Value {
    me(app, access).await.json().await.expect("json")
}

/// The token of the newest `page` link mailed to `email`, from the outbox.
pub fn outbox_token(app: &TestApp, email: &str, page: &str) -> Option<String> {
    let body: String = app
        .conn()
        .query_row(
            "SELECT text_body FROM mail_outbox WHERE to_address = ?1 ORDER BY id DESC LIMIT 1",
            args![email],
            |r| r.get(0),
        )
        .ok()?;
    token_in(&body, page)
}

/// The token after `/<prefix>` in the newest mail to `email` (hex and dots).
pub fn outbox_token_path(app: &TestApp, email: &str, prefix: &str) -> Option<String> {
    let body: String = app
        .conn()
        .query_row(
            "SELECT text_body FROM mail_outbox WHERE to_address = ?1 ORDER BY id DESC LIMIT 1",
            args![email],
            |r| r.get(0),
        )
        .ok()?;
    let marker = format!("/{prefix}");
    let start = body.find(&marker)? + marker.len();
    Some(
        body[start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '.')
            .collect(),
    )
}

fn token_in(text: &str, page: &str) -> Option<String> {
    let marker = format!("/{page}?token=");
    let start = text.find(&marker)? + marker.len();
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect(),
    )
}

fn audit_actions(app: &TestApp) -> Vec<String> {
    app.conn()
        .query_all("SELECT action FROM audit_log ORDER BY id", args![], |r| r.get(0))
        .expect("rows")
}

async fn registered_and_verified(app: &TestApp, email: &str) {
    register(app, email).await;
    let token = outbox_token(app, email, "verify-email").expect("verification link");
    let resp = post(app, "/api/auth/verify-email", json!({ "token": token })).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_newcomer_registers_verifies_over_smtp_and_logs_in() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .var("SMTP_URL", &sink.url())
        .var("APP_URL", "https://app.example.com")
        .spawn()
        .await;
    let resp = app
        .client
        .post(app.url("/api/auth/register"))
        .header("host", "evil.example.net")
        .json(&json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "name": "Ada Lovelace"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    eventually("the verification mail reaches the SMTP server", || async {
        !sink.messages().is_empty()
    })
    .await;
    let mail = &sink.messages()[0];
    assert_eq!(mail.to, vec!["<ada@example.com>".to_string()]);
    assert_eq!(mail.from, "<no-reply@plinth.localhost>");
    assert!(
        mail.data.contains("Subject: Confirm your email address"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("text/html"), "multipart with an HTML part");
    assert!(
        mail.data.contains("https://app.example.com/verify-email?token="),
        "links come from APP_URL, never the Host header: {}",
        mail.data
    );
    let token = token_in(&mail.data, "verify-email").expect("token");
    assert_eq!(token.len(), 64, "256 bits, hex");

    // Once sent, the outbox keeps no live token.
    eventually("the outbox row is marked sent", || async {
        app.conn()
            .query_row(
                "SELECT sent_at IS NOT NULL AND text_body = '' FROM mail_outbox",
                args![],
                |r| r.get::<bool>(0),
            )
            .unwrap_or(false)
    })
    .await;
    let stored: String = app
        .conn()
        .query_row("SELECT hash FROM user_tokens", args![], |r| r.get(0))
        .expect("hash");
    assert_ne!(stored, token, "tokens are stored hashed");

    let (access, _) = tokens(&app, "ada@example.com", PASSWORD).await;
    let before = me_json(&app, &access).await;
    assert_eq!(before["email_verified"], false);
    assert_eq!(before["email"], "ada@example.com");

    let resp = post(&app, "/api/auth/verify-email", json!({ "token": token })).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let after = me_json(&app, &access).await;
    assert_eq!(after["email_verified"], true);
    let again = post(&app, "/api/auth/verify-email", json!({ "token": token })).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn without_smtp_mail_is_kept_in_the_outbox() {
    let app = TestApp::builder().spawn().await;
    register(&app, "dev@example.com").await;
    let (subject, sent): (String, Option<String>) = app
        .conn()
        .query_row("SELECT subject, sent_at FROM mail_outbox", args![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("outbox row");
    assert_eq!(subject, "Confirm your email address");
    assert_eq!(sent, None);
    assert!(outbox_token(&app, "dev@example.com", "verify-email").is_some());
    let jobs: i64 = app
        .conn()
        .query_row("SELECT count(*) FROM jobs", args![], |r| r.get(0))
        .expect("count");
    assert_eq!(jobs, 0, "nothing to deliver without SMTP");
}

#[tokio::test]
async fn registration_validates_every_field_at_once() {
    let app = TestApp::builder().spawn().await;
    let resp = post(
        &app,
        "/api/auth/register",
        json!({"email": "not-an-email", "password": "Password123", "name": " "}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.expect("json");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["email", "name", "password"]);
    assert!(
        body["errors"][2]["message"]
            .as_str()
            .expect("msg")
            .contains("commonly used")
    );
    let users: i64 = app
        .conn()
        .query_row("SELECT count(*) FROM users", args![], |r| r.get(0))
        .expect("count");
    assert_eq!(users, 0);
}

#[tokio::test]
async fn registering_a_taken_email_looks_the_same_and_warns_its_owner() {
    let app = TestApp::builder().spawn().await;
    register(&app, "taken@example.com").await;
    let first: Value = post(
        &app,
        "/api/auth/register",
        json!({"email": "new@example.com", "password": PASSWORD, "name": "N"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let resp = post(
        &app,
        "/api/auth/register",
        json!({"email": "TAKEN@example.com", "password": "another passphrase", "name": "X"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let second: Value = resp.json().await.expect("json");
    assert_eq!(first, second, "same answer for new and taken emails");
    let count: i64 = app
        .conn()
        .query_row(
            "SELECT count(*) FROM users WHERE email = 'taken@example.com'",
            args![],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(count, 1);
    let subject: String = app
        .conn()
        .query_row(
            "SELECT subject FROM mail_outbox WHERE to_address = 'taken@example.com' ORDER BY id DESC LIMIT 1",
            args![],
            |r| r.get(0),
        )
        .expect("mail");
    assert_eq!(subject, "You already have an account");
}

#[tokio::test]
async fn login_failures_say_nothing_about_the_account() {
    let app = TestApp::builder().spawn().await;
    register(&app, "known@example.com").await;
    let wrong = login(&app, "known@example.com", "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let wrong: Value = wrong.json().await.expect("json");
    let unknown: Value = login(&app, "unknown@example.com", "not the password")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(wrong, unknown);
    let actions = audit_actions(&app);
    assert_eq!(actions.iter().filter(|a| *a == "auth.login_failed").count(), 2);
}

#[tokio::test]
async fn login_returns_the_documented_token_pair() {
    let app = TestApp::builder().spawn().await;
    register(&app, "pair@example.com").await;
    let body: Value = login(&app, "Pair@Example.com", PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["email"], "pair@example.com");
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() == 64));
    let access = body["access_token"].as_str().expect("access");
    assert_eq!(me(&app, access).await.status(), StatusCode::OK);
    assert!(audit_actions(&app).contains(&"auth.login".to_string()));
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn claims(sub: &str, sid: &str, exp_offset: i64, aud: &str) -> Value {
    let now = unix_now();
    json!({"sub": sub, "sid": sid, "iat": now, "nbf": now, "exp": now + exp_offset, "iss": "plinth", "aud": aud})
}

#[tokio::test]
async fn forged_and_stale_access_tokens_are_refused() {
    let app = TestApp::builder().spawn().await;
    register(&app, "jwt@example.com").await;
    let (access, _) = tokens(&app, "jwt@example.com", PASSWORD).await;
    let payload: Value = {
        use base64_decode::decode_segment;
        serde_json::from_slice(&decode_segment(access.split('.').nth(1).expect("payload"))).expect("claims")
    };
    let (sub, sid) = (
        payload["sub"].as_str().expect("sub"),
        payload["sid"].as_str().expect("sid"),
    );
    let key = EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes());
    let sign = |claims: &Value, alg: Algorithm, key: &EncodingKey| {
        encode(&Header::new(alg), claims, key).expect("sign")
    };

    // The control: a token we sign ourselves with the right key and claims works.
    let good = sign(&claims(sub, sid, 600, "plinth-api"), Algorithm::HS256, &key);
    assert_eq!(me(&app, &good).await.status(), StatusCode::OK);

    let b64 = |v: &Value| base64_decode::encode_segment(v.to_string().as_bytes());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(sub, sid, 600, "plinth-api"))
    );
    let cases = [
        ("alg none", alg_none),
        (
            "wrong key",
            sign(
                &claims(sub, sid, 600, "plinth-api"),
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another secret of decent length!"),
            ),
        ),
        (
            "HS512",
            sign(&claims(sub, sid, 600, "plinth-api"), Algorithm::HS512, &key),
        ),
        (
            "expired",
            sign(&claims(sub, sid, -60, "plinth-api"), Algorithm::HS256, &key),
        ),
        (
            "wrong audience",
            sign(&claims(sub, sid, 600, "someone-else"), Algorithm::HS256, &key),
        ),
        (
            "exp of the wrong type",
            sign(
                &json!({"sub": sub, "sid": sid, "iat": 0, "nbf": 0, "exp": "never", "iss": "plinth", "aud": "plinth-api"}),
                Algorithm::HS256,
                &key,
            ),
        ),
        (
            "no exp",
            sign(
                &json!({"sub": sub, "sid": sid, "iat": 0, "nbf": 0, "iss": "plinth", "aud": "plinth-api"}),
                Algorithm::HS256,
                &key,
            ),
        ),
        ("not yet valid", {
            let mut c = claims(sub, sid, 600, "plinth-api");
            c["nbf"] = json!(unix_now() + 300);
            sign(&c, Algorithm::HS256, &key)
        }),
        (
            "unknown session",
            sign(
                &claims(sub, &uuid::Uuid::now_v7().to_string(), 600, "plinth-api"),
                Algorithm::HS256,
                &key,
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (name, token) in cases {
        let resp = me(&app, &token).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: Value = resp.json().await.expect("problem");
        assert_eq!(body["type"], "/problems/unauthorized", "{name}");
    }
    let missing = app
        .client
        .get(app.url("/api/auth/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
}

/// Minimal base64url, so the test needs no extra crate.
pub mod base64_decode {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode_segment(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    pub fn decode_segment(input: &str) -> Vec<u8> {
        let vals: Vec<u32> = input
            .bytes()
            .filter_map(|c| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32))
            .collect();
        let mut out = Vec::new();
        for chunk in vals.chunks(4) {
            let mut n = 0u32;
            for (i, v) in chunk.iter().enumerate() {
                n |= v << (18 - 6 * i);
            }
            for i in 0..chunk.len().saturating_sub(1) {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let app = TestApp::builder().spawn().await;
    register(&app, "rot@example.com").await;
    let (access, refresh1) = tokens(&app, "rot@example.com", PASSWORD).await;
    let rotated: Value = post(&app, "/api/auth/refresh", json!({ "refresh_token": refresh1 }))
        .await
        .json()
        .await
        .expect("json");
    let refresh2 = rotated["refresh_token"].as_str().expect("refresh").to_string();
    let access2 = rotated["access_token"].as_str().expect("access").to_string();
    assert_ne!(refresh1, refresh2);
    assert_eq!(me(&app, &access2).await.status(), StatusCode::OK);

    // A thief replays the first token: the whole session goes.
    let replay = post(&app, "/api/auth/refresh", json!({ "refresh_token": refresh1 })).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    for token in [&access, &access2] {
        assert_eq!(
            me(&app, token).await.status(),
            StatusCode::UNAUTHORIZED,
            "access tokens die at once"
        );
    }
    let after = post(&app, "/api/auth/refresh", json!({ "refresh_token": refresh2 })).await;
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the latest refresh token died too"
    );
    let reason: String = app
        .conn()
        .query_row("SELECT revoked_reason FROM sessions", args![], |r| r.get(0))
        .expect("session");
    assert_eq!(reason, "refresh_token_reuse");
    let forged = post(
        &app,
        "/api/auth/refresh",
        json!({ "refresh_token": "00".repeat(32) }),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_with_the_current_one_marked_and_can_be_revoked() {
    let app = TestApp::builder().spawn().await;
    register(&app, "s@example.com").await;
    register(&app, "other@example.com").await;
    let (laptop, _) = tokens(&app, "s@example.com", PASSWORD).await;
    let (phone, _) = tokens(&app, "s@example.com", PASSWORD).await;
    let (stranger, _) = tokens(&app, "other@example.com", PASSWORD).await;

    let list: Value = bearer(app.client.get(app.url("/api/auth/sessions")), &laptop)
        .header("user-agent", "laptop-browser")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(items[0]["ip"], "127.0.0.1");
    let phone_id = items.iter().find(|s| s["current"] == false).expect("phone")["id"]
        .as_str()
        .expect("id")
        .to_string();

    let paged: Value = bearer(app.client.get(app.url("/api/auth/sessions?limit=1")), &laptop)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let cursor = paged["next_cursor"].as_str().expect("a next page");
    let page2: Value = bearer(
        app.client
            .get(app.url(&format!("/api/auth/sessions?limit=1&cursor={cursor}"))),
        &laptop,
    )
    .send()
    .await
    .expect("request")
    .json()
    .await
    .expect("json");
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(1));
    assert_ne!(page2["items"][0]["id"], paged["items"][0]["id"]);

    let by_stranger = bearer(
        app.client
            .delete(app.url(&format!("/api/auth/sessions/{phone_id}"))),
        &stranger,
    )
    .send()
    .await
    .expect("request");
    assert_eq!(
        by_stranger.status(),
        StatusCode::NOT_FOUND,
        "another user's session is not found"
    );
    assert_eq!(me(&app, &phone).await.status(), StatusCode::OK);

    let revoked = bearer(
        app.client
            .delete(app.url(&format!("/api/auth/sessions/{phone_id}"))),
        &laptop,
    )
    .send()
    .await
    .expect("request");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me(&app, &phone).await.status(),
        StatusCode::UNAUTHORIZED,
        "stops at once"
    );
    assert_eq!(me(&app, &laptop).await.status(), StatusCode::OK);
    let twice = bearer(
        app.client
            .delete(app.url(&format!("/api/auth/sessions/{phone_id}"))),
        &laptop,
    )
    .send()
    .await
    .expect("request");
    assert_eq!(twice.status(), StatusCode::NOT_FOUND);
    let bad_cursor = bearer(app.client.get(app.url("/api/auth/sessions?cursor=nope")), &laptop)
        .send()
        .await
        .expect("request");
    assert_eq!(bad_cursor.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(audit_actions(&app).contains(&"session.revoked".to_string()));
}

#[tokio::test]
async fn logout_ends_the_session_for_both_tokens() {
    let app = TestApp::builder().spawn().await;
    register(&app, "out@example.com").await;
    let (access, refresh) = tokens(&app, "out@example.com", PASSWORD).await;
    let resp = bearer(app.client.post(app.url("/api/auth/logout")), &access)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &access).await.status(), StatusCode::UNAUTHORIZED);
    let refreshed = post(&app, "/api/auth/refresh", json!({ "refresh_token": refresh })).await;
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    assert!(audit_actions(&app).contains(&"auth.logout".to_string()));
}

#[tokio::test]
async fn me_can_be_renamed_but_not_blanked() {
    let app = TestApp::builder().spawn().await;
    register(&app, "me@example.com").await;
    let (access, _) = tokens(&app, "me@example.com", PASSWORD).await;
    let renamed: Value = bearer(app.client.patch(app.url("/api/auth/me")), &access)
        .json(&json!({"name": "  Ada King  "}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(renamed["name"], "Ada King");
    let blank = bearer(app.client.patch(app.url("/api/auth/me")), &access)
        .json(&json!({"name": ""}))
        .send()
        .await
        .expect("request");
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let app = TestApp::builder().spawn().await;
    register(&app, "pw@example.com").await;
    let (here, _) = tokens(&app, "pw@example.com", PASSWORD).await;
    let (elsewhere, _) = tokens(&app, "pw@example.com", PASSWORD).await;
    let change = |current: &str, new: &str| {
        bearer(app.client.post(app.url("/api/auth/password/change")), &here)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    let wrong = change("not my password", "a brand new passphrase")
        .await
        .expect("request");
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let weak = change(PASSWORD, "short").await.expect("request");
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let ok = change(PASSWORD, "a brand new passphrase").await.expect("request");
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me(&app, &here).await.status(),
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        me(&app, &elsewhere).await.status(),
        StatusCode::UNAUTHORIZED,
        "others end"
    );
    assert_eq!(
        login(&app, "pw@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "pw@example.com", "a brand new passphrase")
            .await
            .status(),
        StatusCode::OK
    );
    let actions = audit_actions(&app);
    assert!(actions.contains(&"auth.password_changed".to_string()));
    assert!(actions.contains(&"auth.password_change_failed".to_string()));
}

#[tokio::test]
async fn password_reset_answers_alike_and_resets_with_a_single_use_link() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder().var("SMTP_URL", &sink.url()).spawn().await;
    registered_via_sink(&app, &sink, "reset@example.com").await;
    let (old_access, _) = tokens(&app, "reset@example.com", PASSWORD).await;

    let unknown = post(
        &app,
        "/api/auth/password-reset",
        json!({"email": "nobody@example.com"}),
    )
    .await;
    let known = post(
        &app,
        "/api/auth/password-reset",
        json!({"email": "Reset@Example.com"}),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(
        unknown.text().await.expect("body"),
        known.text().await.expect("body")
    );

    eventually("the reset mail arrives", || async {
        sink.messages()
            .iter()
            .any(|m| m.data.contains("/reset-password?token="))
    })
    .await;
    let messages = sink.messages();
    assert!(
        messages
            .iter()
            .all(|m| m.to != vec!["<nobody@example.com>".to_string()])
    );
    let mail = messages
        .iter()
        .find(|m| m.data.contains("/reset-password?token="))
        .expect("reset mail");
    let token = token_in(&mail.data, "reset-password").expect("token");

    let weak = post(
        &app,
        "/api/auth/password-reset/confirm",
        json!({"token": token, "new_password": "short"}),
    )
    .await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let ok = post(
        &app,
        "/api/auth/password-reset/confirm",
        json!({"token": token, "new_password": "fresh passphrase 42"}),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    let reused = post(
        &app,
        "/api/auth/password-reset/confirm",
        json!({"token": token, "new_password": "another one 12345"}),
    )
    .await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let forged = post(
        &app,
        "/api/auth/password-reset/confirm",
        json!({"token": "ab".repeat(32), "new_password": "another one 12345"}),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        me(&app, &old_access).await.status(),
        StatusCode::UNAUTHORIZED,
        "every session revoked"
    );
    assert_eq!(
        login(&app, "reset@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "reset@example.com", "fresh passphrase 42")
            .await
            .status(),
        StatusCode::OK
    );
    let actions = audit_actions(&app);
    assert!(actions.contains(&"auth.password_reset_requested".to_string()));
    assert!(actions.contains(&"auth.password_reset".to_string()));
}

async fn registered_via_sink(app: &TestApp, sink: &SmtpSink, email: &str) {
    register(app, email).await;
    eventually("the verification mail arrives", || async {
        sink.messages()
            .iter()
            .any(|m| m.to.contains(&format!("<{email}>")))
    })
    .await;
}

#[tokio::test]
async fn an_expired_reset_link_is_refused() {
    let app = TestApp::builder().spawn().await;
    register(&app, "late@example.com").await;
    post(
        &app,
        "/api/auth/password-reset",
        json!({"email": "late@example.com"}),
    )
    .await;
    eventually("the reset link is issued", || async {
        outbox_token(&app, "late@example.com", "reset-password").is_some()
    })
    .await;
    let token = outbox_token(&app, "late@example.com", "reset-password").expect("token");
    app.conn()
        .execute(
            "UPDATE user_tokens SET expires_at = 0 WHERE purpose = 'password_reset'",
            args![],
        )
        .expect("expire");
    let resp = post(
        &app,
        "/api/auth/password-reset/confirm",
        json!({"token": token, "new_password": "fresh passphrase 42"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn ten_parallel_redemptions_of_one_token_succeed_once() {
    let app = TestApp::builder().spawn().await;
    register(&app, "race@example.com").await;
    let token = outbox_token(&app, "race@example.com", "verify-email").expect("token");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/auth/verify-email"),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({ "token": token }))
                .send()
                .await
                .expect("request")
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            StatusCode::NO_CONTENT => ok += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn resending_verification_invalidates_the_older_link() {
    let app = TestApp::builder().spawn().await;
    register(&app, "resend@example.com").await;
    let first = outbox_token(&app, "resend@example.com", "verify-email").expect("first");
    let (access, _) = tokens(&app, "resend@example.com", PASSWORD).await;
    let resp = bearer(app.client.post(app.url("/api/auth/verify-email/resend")), &access)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let second = outbox_token(&app, "resend@example.com", "verify-email").expect("second");
    assert_ne!(first, second);
    let old = post(&app, "/api/auth/verify-email", json!({ "token": first })).await;
    assert_eq!(old.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let new = post(&app, "/api/auth/verify-email", json!({ "token": second })).await;
    assert_eq!(new.status(), StatusCode::NO_CONTENT);
    let done = bearer(app.client.post(app.url("/api/auth/verify-email/resend")), &access)
        .send()
        .await
        .expect("request");
    assert_eq!(done.status(), StatusCode::CONFLICT, "already verified");
}

#[tokio::test]
async fn auth_endpoints_are_rate_limited_with_retry_after() {
    let app = TestApp::builder()
        .var("PLINTH_AUTH_RATE_PER_ACCOUNT", "3")
        .spawn()
        .await;
    registered_and_verified(&app, "flood@example.com").await;
    for _ in 0..3 {
        assert_eq!(
            login(&app, "flood@example.com", "wrong password!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = login(&app, "flood@example.com", PASSWORD).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = limited.json().await.expect("problem");
    assert_eq!(body["type"], "/problems/rate-limited");
    // Another account from the same IP is not affected.
    registered_and_verified(&app, "calm@example.com").await;
    assert_eq!(
        login(&app, "calm@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn per_ip_limits_cover_registration_and_reset() {
    let app = TestApp::builder()
        .var("PLINTH_AUTH_RATE_PER_IP", "2")
        .spawn()
        .await;
    for i in 0..2 {
        register(&app, &format!("r{i}@example.com")).await;
    }
    let third = post(
        &app,
        "/api/auth/register",
        json!({"email": "r3@example.com", "password": PASSWORD, "name": "R"}),
    )
    .await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..2 {
        post(
            &app,
            "/api/auth/password-reset",
            json!({"email": "r0@example.com"}),
        )
        .await;
    }
    let reset = post(
        &app,
        "/api/auth/password-reset",
        json!({"email": "r1@example.com"}),
    )
    .await;
    assert_eq!(reset.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let untrusted = TestApp::builder().spawn().await;
    register(&untrusted, "xff@example.com").await;
    let resp = untrusted
        .client
        .post(untrusted.url("/api/auth/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": "xff@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let ip: String = untrusted
        .conn()
        .query_row("SELECT ip FROM sessions", args![], |r| r.get(0))
        .expect("ip");
    assert_eq!(ip, "127.0.0.1");

    let trusted = TestApp::builder()
        .var("PLINTH_TRUSTED_PROXIES", "127.0.0.1")
        .spawn()
        .await;
    register(&trusted, "xff@example.com").await;
    trusted
        .client
        .post(trusted.url("/api/auth/login"))
        .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
        .json(&json!({"email": "xff@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    let ip: String = trusted
        .conn()
        .query_row("SELECT ip FROM sessions", args![], |r| r.get(0))
        .expect("ip");
    assert_eq!(ip, "203.0.113.9", "the nearest untrusted hop");
}

#[tokio::test]
async fn old_password_hashes_are_upgraded_at_login() {
    let app = TestApp::builder().spawn().await;
    register(&app, "old@example.com").await;
    // What an older release with weaker parameters would have stored.
    let weak = plinth_core::identity::passwords::hash_with_params(PASSWORD, 8192, 1, 1).expect("hash");
    app.conn()
        .execute("UPDATE users SET password_hash = ?1", args![&weak])
        .expect("downgrade");
    assert_eq!(
        login(&app, "old@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
    let stored: String = app
        .conn()
        .query_row("SELECT password_hash FROM users", args![], |r| r.get(0))
        .expect("hash");
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
    assert!(plinth_core::identity::passwords::verify(PASSWORD, &stored));
}

#[tokio::test]
async fn disabling_an_account_stops_its_tokens_at_once_and_blocks_login() {
    let app = TestApp::builder().spawn().await;
    register(&app, "gone@example.com").await;
    let (access, refresh) = tokens(&app, "gone@example.com", PASSWORD).await;
    assert_eq!(
        me(&app, &access).await.status(),
        StatusCode::OK,
        "the session status is now cached"
    );
    let user: Value = me(&app, &access).await.json().await.expect("json");
    let id = uuid::Uuid::parse_str(user["id"].as_str().expect("id")).expect("uuid");
    let identity = app.platform.identity().clone();
    app.platform
        .db()
        .write(move |tx| plinth_core::identity::Identity::disable_user(tx, id))
        .await
        .expect("disable");
    identity.forget_user(id);
    assert_eq!(me(&app, &access).await.status(), StatusCode::UNAUTHORIZED);
    let refreshed = post(&app, "/api/auth/refresh", json!({ "refresh_token": refresh })).await;
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    let wrong = login(&app, "gone@example.com", "not the password").await;
    assert_eq!(
        wrong.status(),
        StatusCode::UNAUTHORIZED,
        "no hint without the password"
    );
    let right = login(&app, "gone@example.com", PASSWORD).await;
    assert_eq!(right.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn changing_the_password_ends_outstanding_reset_and_verification_links() {
    let app = TestApp::builder().spawn().await;
    register(&app, "links@example.com").await;
    let verify = outbox_token(&app, "links@example.com", "verify-email").expect("verification link");
    post(
        &app,
        "/api/auth/password-reset",
        json!({"email": "links@example.com"}),
    )
    .await;
    eventually("the reset link is mailed", || async {
        outbox_token(&app, "links@example.com", "reset-password").is_some()
    })
    .await;
    let reset = outbox_token(&app, "links@example.com", "reset-password").expect("reset link");

    let (access, _) = tokens(&app, "links@example.com", PASSWORD).await;
    let changed = bearer(app.client.post(app.url("/api/auth/password/change")), &access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))
        .send()
        .await
        .expect("request");
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);

    let stale_reset = post(
        &app,
        "/api/auth/password-reset/confirm",
        json!({"token": reset, "new_password": "an attacker's choice 1"}),
    )
    .await;
    assert_eq!(stale_reset.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let stale_verify = post(&app, "/api/auth/verify-email", json!({ "token": verify })).await;
    assert_eq!(stale_verify.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        login(&app, "links@example.com", "a brand new passphrase")
            .await
            .status(),
        StatusCode::OK,
        "the password set by its owner stands"
    );
}

#[tokio::test]
async fn a_reset_ends_every_other_outstanding_link_of_the_account() {
    let app = TestApp::builder().spawn().await;
    register(&app, "twice@example.com").await;
    let verify = outbox_token(&app, "twice@example.com", "verify-email").expect("verification link");
    post(
        &app,
        "/api/auth/password-reset",
        json!({"email": "twice@example.com"}),
    )
    .await;
    eventually("the reset link is mailed", || async {
        outbox_token(&app, "twice@example.com", "reset-password").is_some()
    })
    .await;
    let reset = outbox_token(&app, "twice@example.com", "reset-password").expect("reset link");
    let ok = post(
        &app,
        "/api/auth/password-reset/confirm",
        json!({"token": reset, "new_password": "fresh passphrase 42"}),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    let stale_verify = post(&app, "/api/auth/verify-email", json!({ "token": verify })).await;
    assert_eq!(stale_verify.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unused: i64 = app
        .conn()
        .query_row(
            "SELECT count(*) FROM user_tokens t JOIN users u ON u.id = t.user_id
             WHERE u.email = 'twice@example.com' AND t.used_at IS NULL",
            args![],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(unused, 0);
}
