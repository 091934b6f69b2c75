//! The attack suite: what an attacker would try, as one table per family, each case
//! asserting the exact status and that the database did not change (a fingerprint
//! of every domain table, taken before and after). The count of cases is printed.
//!
//! Families: JWT forgery; IDOR across two orgs on every org-scoped route of the
//! served spec (plugins included); privilege escalation; mass assignment; SQL
//! injection strings in string parameters; oversized, deep and malformed bodies
//! and headers; webhooks without or with bad signatures; account enumeration.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::acme::Acme;
use crate::auth::base64_decode::encode_segment;
use crate::auth::{DEV_JWT_SECRET, claims, unix_now};

/// Domain tables (not logs, sessions, jobs or mail, which failed attempts may
/// legitimately touch) hashed row by row.
const FINGERPRINTED: [&str; 16] = [
    "SELECT id, email, name, is_platform_admin, disabled_at, email_verified_at, password_hash FROM users",
    "SELECT * FROM organizations",
    "SELECT * FROM tenant_memberships",
    "SELECT * FROM tenant_invitations",
    "SELECT * FROM flags",
    "SELECT * FROM tenant_flag_overrides",
    "SELECT * FROM billing_plans",
    "SELECT * FROM billing_customers",
    "SELECT * FROM billing_webhook_events",
    "SELECT * FROM tenant_billing_accounts",
    "SELECT * FROM tenant_usage_events",
    "SELECT * FROM tenant_usage_totals",
    "SELECT * FROM tenant_invoices",
    "SELECT * FROM tenant_activity",
    "SELECT * FROM billing_counters",
    "SCHEMA",
];

pub fn fingerprint(conn: &crate::harness::TestConn) -> String {
    let mut hasher = Sha256::new();
    for sql in FINGERPRINTED {
        let sql = match (sql, conn.engine()) {
            ("SCHEMA", plinth_core::storage::EngineKind::Sqlite) => "SELECT name FROM sqlite_master",
            ("SCHEMA", plinth_core::storage::EngineKind::Postgres) => {
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema()"
            }
            (sql, _) => sql,
        };
        let rows: Vec<String> = conn
            .query_all(&format!("{sql} ORDER BY 1"), args![], |row| {
                let mut line = String::new();
                for i in 0..row.len() {
                    let v: plinth_core::storage::sql::Value = row.get(i)?;
                    line.push_str(&format!("{v:?}|"));
                }
                Ok(line)
            })
            .expect(sql);
        for line in rows {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hasher.update(sql.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// One request of the suite.
struct Attack {
    name: String,
    /// A principal of the Acme fixture, or a raw bearer token.
    auth: Auth,
    method: &'static str,
    path: String,
    body: Body,
    headers: Vec<(&'static str, String)>,
    expect: u16,
}

enum Auth {
    As(&'static str),
    Token(String),
    Nobody,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

fn attack(
    name: impl Into<String>,
    auth: Auth,
    method: &'static str,
    path: impl Into<String>,
    body: Body,
    expect: u16,
) -> Attack {
    Attack {
        name: name.into(),
        auth,
        method,
        path: path.into(),
        body,
        headers: Vec::new(),
        expect,
    }
}

struct Suite {
    acme: Acme,
    cases: usize,
}

impl Suite {
    async fn send(&self, a: &Attack) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(a.method.as_bytes()).expect("method");
        let mut req = self.acme.app.client.request(method, self.acme.app.url(&a.path));
        match &a.auth {
            Auth::As(who) => req = req.bearer_auth(self.acme.token(who)),
            Auth::Token(t) => req = req.bearer_auth(t),
            Auth::Nobody => {}
        }
        for (k, v) in &a.headers {
            req = req.header(*k, v);
        }
        req = match &a.body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Raw(ct, bytes) => req.header("content-type", *ct).body(bytes.clone()),
        };
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Runs a case: the exact status, a problem document for errors, and no change.
    async fn run(&mut self, a: Attack) -> Value {
        let conn = self.acme.app.conn();
        let before = fingerprint(&conn);
        let (status, body) = self.send(&a).await;
        assert_eq!(status, a.expect, "{}: {body}", a.name);
        if status >= 400 && status != 431 {
            assert!(
                body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")),
                "{}: {body}",
                a.name
            );
        }
        assert_eq!(fingerprint(&conn), before, "{} changed the database", a.name);
        self.cases += 1;
        body
    }
}

fn sign(claims: &Value, alg: Algorithm, secret: &[u8]) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).expect("sign")
}

fn b64(v: &Value) -> String {
    encode_segment(v.to_string().as_bytes())
}

#[tokio::test]
async fn the_attack_suite() {
    let acme = Acme::start().await;
    let mut s = Suite { acme, cases: 0 };
    let org = s.acme.org;
    let globex = s.acme.globex;
    let member = s.acme.id("member");
    let owner = s.acme.id("owner");

    // Fixture data an attacker would aim at: an invitation and usage in Globex.
    let (status, globex_invite) = s
        .acme
        .send(
            "POST",
            "outsider",
            &format!("/api/orgs/{globex}/invitations"),
            Some(json!({"email": "g@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let globex_invite = globex_invite["id"].as_str().expect("id").to_string();
    let (_, acme_invite) = s
        .acme
        .send(
            "POST",
            "owner",
            &s.acme.path("/invitations"),
            Some(json!({"email": "a@example.com", "role": "viewer"})),
        )
        .await;
    let acme_invite = acme_invite["id"].as_str().expect("id").to_string();

    // --- JWT forgery -------------------------------------------------------------
    let me = s.acme.send("GET", "member", "/api/auth/me", None).await.1;
    let payload: Value = serde_json::from_slice(&crate::auth::base64_decode::decode_segment(
        s.acme.token("member").split('.').nth(1).expect("payload"),
    ))
    .expect("claims");
    let (sub, sid) = (
        payload["sub"].as_str().expect("sub").to_string(),
        payload["sid"].as_str().expect("sid").to_string(),
    );
    assert_eq!(me["id"], sub.as_str());
    let secret = DEV_JWT_SECRET.as_bytes();
    let good = claims(&sub, &sid, 600, "plinth-api");
    let signing_input = |header: &Value, claims: &Value| format!("{}.{}", b64(header), b64(claims));
    let hs_over = |input: &str| {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(input.as_bytes());
        encode_segment(&mac.finalize().into_bytes())
    };
    // RS256 in the header, HMAC'd with the shared secret as if it were a public key.
    let confused = {
        let input = signing_input(&json!({"alg": "RS256", "typ": "JWT"}), &good);
        format!("{input}.{}", hs_over(&input))
    };
    // A valid member token with the claims rewritten to the owner's id.
    let tampered = {
        let parts: Vec<&str> = s.acme.token("member").split('.').collect();
        let mut c = payload.clone();
        c["sub"] = json!(owner.to_string());
        format!("{}.{}.{}", parts[0], b64(&c), parts[2])
    };
    let forged = [
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good)),
        ),
        (
            "alg None in capitals",
            format!("{}.{}.", b64(&json!({"alg": "None"})), b64(&good)),
        ),
        ("HS/RS confusion", confused),
        ("HS512 with the right key", sign(&good, Algorithm::HS512, secret)),
        ("HS384 with the right key", sign(&good, Algorithm::HS384, secret)),
        (
            "wrong key",
            sign(&good, Algorithm::HS256, b"an attacker's guess at the secret"),
        ),
        (
            "expired",
            sign(&claims(&sub, &sid, -120, "plinth-api"), Algorithm::HS256, secret),
        ),
        ("not yet valid", {
            let mut c = good.clone();
            c["nbf"] = json!(unix_now() + 600);
            sign(&c, Algorithm::HS256, secret)
        }),
        (
            "wrong audience",
            sign(&claims(&sub, &sid, 600, "another-api"), Algorithm::HS256, secret),
        ),
        ("wrong issuer", {
            let mut c = good.clone();
            c["iss"] = json!("evil");
            sign(&c, Algorithm::HS256, secret)
        }),
        ("tampered claims", tampered),
        (
            "unknown session",
            sign(
                &claims(&sub, &Uuid::now_v7().to_string(), 600, "plinth-api"),
                Algorithm::HS256,
                secret,
            ),
        ),
        (
            "empty signature",
            format!("{}.{}.", b64(&json!({"alg": "HS256"})), b64(&good)),
        ),
        ("garbage", "a.b.c".into()),
    ];
    for (name, token) in forged {
        for (method, path, body) in [
            ("GET", "/api/auth/me".to_string(), Body::None),
            (
                "PATCH",
                "/api/auth/me".to_string(),
                Body::Json(json!({"name": "Pwned"})),
            ),
            ("GET", format!("/api/orgs/{org}/members"), Body::None),
        ] {
            s.run(attack(
                format!("jwt {name}: {method} {path}"),
                Auth::Token(token.clone()),
                method,
                path,
                body,
                401,
            ))
            .await;
        }
    }

    // --- IDOR: every org-scoped route of the served spec, as a non-member --------
    let spec: Value = s.acme.app.served_spec().await;
    let mut routes = 0;
    for (template, ops) in spec["paths"].as_object().expect("paths") {
        if !template.starts_with("/api/orgs/{org_id}") {
            continue;
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if ops.get(method).is_none() {
                continue;
            }
            let path = template
                .replace("{org_id}", &org.to_string())
                .replace("{user_id}", &owner.to_string())
                .replace("{id}", &acme_invite)
                .replace("{invoice_id}", &Uuid::now_v7().to_string())
                .replace("{key}", "new-dashboard");
            // A body valid for any of these operations, so the refusal is the
            // tenant check's and not the parser's.
            let valid = json!({"plan_id": "pro", "metric": "x", "quantity": 1, "idempotency_key": "k",
                "email": "i@example.com", "role": "viewer", "user_id": owner, "name": "N"});
            let body = if method == "get" || method == "delete" {
                Body::None
            } else {
                Body::Json(valid.clone())
            };
            let upper = method.to_uppercase().leak();
            s.run(attack(
                format!("IDOR outsider {upper} {template}"),
                Auth::As("outsider"),
                upper,
                path.clone(),
                body,
                404,
            ))
            .await;
            let body = if method == "get" || method == "delete" {
                Body::None
            } else {
                Body::Json(valid)
            };
            s.run(attack(
                format!("IDOR stranger {upper} {template}"),
                Auth::As("stranger"),
                upper,
                path,
                body,
                404,
            ))
            .await;
            routes += 1;
        }
    }
    assert!(routes >= 25, "only {routes} org-scoped operations found");
    // Another org's objects named through one's own org.
    s.run(attack(
        "IDOR: Globex invitation through Acme",
        Auth::As("owner"),
        "DELETE",
        format!("/api/orgs/{org}/invitations/{globex_invite}"),
        Body::None,
        404,
    ))
    .await;
    s.run(attack(
        "IDOR: Globex invitation resend through Acme",
        Auth::As("owner"),
        "POST",
        format!("/api/orgs/{org}/invitations/{globex_invite}/resend"),
        Body::None,
        404,
    ))
    .await;
    s.run(attack(
        "IDOR: a Globex member through Acme",
        Auth::As("owner"),
        "PATCH",
        format!("/api/orgs/{org}/members/{}", s.acme.id("outsider")),
        Body::Json(json!({"role": "viewer"})),
        404,
    ))
    .await;

    // --- privilege escalation ----------------------------------------------------
    let escalations = [
        (
            "member grants itself admin",
            "member",
            "PATCH",
            format!("/api/orgs/{org}/members/{member}"),
            json!({"role": "admin"}),
            403,
        ),
        (
            "viewer grants itself member",
            "viewer",
            "PATCH",
            format!("/api/orgs/{org}/members/{}", s.acme.id("viewer")),
            json!({"role": "member"}),
            403,
        ),
        (
            "admin grants owner",
            "admin",
            "PATCH",
            format!("/api/orgs/{org}/members/{member}"),
            json!({"role": "owner"}),
            403,
        ),
        (
            "admin demotes the owner",
            "admin",
            "PATCH",
            format!("/api/orgs/{org}/members/{owner}"),
            json!({"role": "viewer"}),
            403,
        ),
        (
            "admin invites an owner",
            "admin",
            "POST",
            format!("/api/orgs/{org}/invitations"),
            json!({"email": "boss@example.com", "role": "owner"}),
            403,
        ),
        (
            "member invites",
            "member",
            "POST",
            format!("/api/orgs/{org}/invitations"),
            json!({"email": "friend@example.com", "role": "viewer"}),
            403,
        ),
        (
            "admin transfers ownership",
            "admin",
            "POST",
            format!("/api/orgs/{org}/transfer-ownership"),
            json!({"user_id": s.acme.id("admin")}),
            403,
        ),
        (
            "admin deletes the org",
            "admin",
            "DELETE",
            format!("/api/orgs/{org}"),
            Value::Null,
            403,
        ),
        (
            "viewer records usage",
            "viewer",
            "POST",
            format!("/api/orgs/{org}/usage"),
            json!({"metric": "x", "quantity": 1, "idempotency_key": "v"}),
            403,
        ),
        (
            "member opens checkout",
            "member",
            "POST",
            format!("/api/orgs/{org}/billing/checkout"),
            json!({"plan_id": "business"}),
            403,
        ),
        (
            "member cancels the plan",
            "member",
            "POST",
            format!("/api/orgs/{org}/billing/cancel"),
            Value::Null,
            403,
        ),
        (
            "member reads invoices",
            "member",
            "GET",
            format!("/api/orgs/{org}/billing/invoices"),
            Value::Null,
            403,
        ),
        (
            "member reads the org audit log",
            "member",
            "GET",
            format!("/api/orgs/{org}/audit-logs"),
            Value::Null,
            403,
        ),
        (
            "owner uses the admin API",
            "owner",
            "GET",
            "/api/admin/users".to_string(),
            Value::Null,
            403,
        ),
        (
            "owner sets its own plan",
            "owner",
            "PUT",
            format!("/api/admin/orgs/{org}/billing/subscription"),
            json!({"plan_id": "business"}),
            403,
        ),
        (
            "owner makes itself staff",
            "owner",
            "POST",
            format!("/api/admin/users/{owner}/staff"),
            Value::Null,
            403,
        ),
        (
            "owner overrides a flag",
            "owner",
            "PUT",
            format!("/api/admin/flags/new-dashboard/overrides/{org}"),
            json!({"value": true}),
            403,
        ),
    ];
    for (name, who, method, path, body, expect) in escalations {
        let body = if body.is_null() {
            Body::None
        } else {
            Body::Json(body)
        };
        s.run(attack(name, Auth::As(who), method, path, body, expect))
            .await;
    }

    // --- mass assignment: unknown fields are ignored, never applied --------------
    let view = s
        .run(attack(
            "PATCH /me with is_platform_admin",
            Auth::As("member"),
            "PATCH",
            "/api/auth/me",
            Body::Json(json!({"is_platform_admin": true, "email": "owner@acme.test", "email_verified": true, "id": owner})),
            200,
        ))
        .await;
    assert_eq!(view["is_platform_admin"], false);
    assert_eq!(view["email"], "member@acme.test");
    let org_view = s
        .run(attack(
            "PATCH org with id, suspended and owner fields",
            Auth::As("admin"),
            "PATCH",
            format!("/api/orgs/{org}"),
            Body::Json(json!({"id": globex, "suspended": true, "suspended_at": "2020-01-01T00:00:00Z", "created_at": "2000-01-01T00:00:00Z", "plan": "business"})),
            200,
        ))
        .await;
    assert_eq!(org_view["id"], org.to_string());
    s.run(attack(
        "usage with an org_id of another org",
        Auth::As("member"),
        "POST",
        format!("/api/orgs/{org}/usage"),
        Body::Json(json!({"metric": "x", "quantity": 0, "idempotency_key": "m", "org_id": globex})),
        422,
    ))
    .await;
    s.run(attack(
        "member PATCH with org_id and user_id fields",
        Auth::As("admin"),
        "PATCH",
        format!("/api/orgs/{org}/members/{member}"),
        Body::Json(json!({"org_id": globex, "user_id": owner})),
        400,
    ))
    .await;

    // --- SQL injection strings in string parameters -------------------------------
    let injections = [
        "' OR '1'='1",
        "'; DROP TABLE users; --",
        "\" OR 1=1 --",
        "%' UNION SELECT id, email, password_hash FROM users --",
        "x') OR current_org() IS NULL --",
        "\\'; DELETE FROM tenant_memberships; --",
    ];
    for (i, inj) in injections.iter().enumerate() {
        let q = urlencode(inj);
        let reads: [(&str, &'static str, String, u16); 10] = [
            (
                "admin users q",
                "stranger",
                format!("/api/admin/users?q={q}"),
                200,
            ),
            ("admin orgs q", "stranger", format!("/api/admin/orgs?q={q}"), 200),
            (
                "admin audit action",
                "stranger",
                format!("/api/admin/audit-logs?action={q}&target_type={q}&target_id={q}"),
                200,
            ),
            (
                "admin webhook type",
                "stranger",
                format!("/api/admin/billing/webhook-events?type={q}"),
                200,
            ),
            ("admin flag key", "stranger", format!("/api/admin/flags/{q}"), 404),
            (
                "webhook event id",
                "stranger",
                format!("/api/admin/billing/webhook-events/{q}"),
                404,
            ),
            (
                "org audit action",
                "owner",
                format!("/api/orgs/{org}/audit-logs?action={q}"),
                200,
            ),
            (
                "org flag key",
                "member",
                format!("/api/orgs/{org}/flags/{q}"),
                404,
            ),
            ("invitation token", "member", format!("/api/invitations/{q}"), 404),
            (
                "members cursor",
                "member",
                format!("/api/orgs/{org}/members?cursor={q}"),
                422,
            ),
        ];
        for (name, who, path, expect) in reads {
            let body = s
                .run(attack(
                    format!("sqli {i} {name}"),
                    Auth::As(who),
                    "GET",
                    path,
                    Body::None,
                    expect,
                ))
                .await;
            if expect == 200 {
                assert_eq!(
                    body["items"].as_array().map(Vec::len),
                    Some(0),
                    "sqli {i} {name} leaked rows: {body}"
                );
            }
        }
        let writes = [
            (
                "login email",
                Auth::Nobody,
                "POST",
                "/api/auth/login".to_string(),
                json!({"email": inj, "password": inj}),
                401,
            ),
            (
                "register email",
                Auth::Nobody,
                "POST",
                "/api/auth/register".to_string(),
                json!({"email": inj, "password": "a decent passphrase", "name": inj}),
                422,
            ),
            (
                "usage metric",
                Auth::As("member"),
                "POST",
                format!("/api/orgs/{org}/usage"),
                json!({"metric": inj, "quantity": 1, "idempotency_key": inj}),
                422,
            ),
            (
                "checkout plan",
                Auth::As("owner"),
                "POST",
                format!("/api/orgs/{org}/billing/checkout"),
                json!({"plan_id": inj}),
                422,
            ),
            (
                "invite email",
                Auth::As("owner"),
                "POST",
                format!("/api/orgs/{org}/invitations"),
                json!({"email": inj, "role": "viewer"}),
                422,
            ),
            (
                "invite role",
                Auth::As("owner"),
                "POST",
                format!("/api/orgs/{org}/invitations"),
                json!({"email": "x@example.com", "role": inj}),
                400,
            ),
        ];
        for (name, auth, method, path, body, expect) in writes {
            s.run(attack(
                format!("sqli {i} {name}"),
                auth,
                method,
                path,
                Body::Json(body),
                expect,
            ))
            .await;
        }
    }
    // Stored literally, never executed: an org named with an injection string.
    let (status, created) = s
        .acme
        .send(
            "POST",
            "member",
            "/api/orgs",
            Some(json!({"name": "Robert'); DROP TABLE organizations; --"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["name"], "Robert'); DROP TABLE organizations; --");

    // --- oversized, deep and malformed bodies; oversized headers -------------------
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let deep_object = format!("{{\"name\":{}1{}}}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes();
    let bodies: [(&str, &'static str, Vec<u8>, u16); 7] = [
        ("2 MiB body", "application/json", huge, 413),
        ("100,000 nested arrays", "application/json", deep, 400),
        (
            "5,000 nested objects in a field",
            "application/json",
            deep_object,
            400,
        ),
        (
            "truncated JSON",
            "application/json",
            b"{\"name\": \"x".to_vec(),
            400,
        ),
        ("not JSON", "application/json", b"name=x".to_vec(), 400),
        (
            "an array for a string",
            "application/json",
            b"{\"name\": [\"x\"]}".to_vec(),
            400,
        ),
        (
            "form content type",
            "application/x-www-form-urlencoded",
            b"name=x".to_vec(),
            415,
        ),
    ];
    for (name, ct, bytes, expect) in bodies {
        s.run(attack(
            format!("body: {name}"),
            Auth::As("admin"),
            "PATCH",
            format!("/api/orgs/{org}"),
            Body::Raw(ct, bytes),
            expect,
        ))
        .await;
    }
    let mut big_header = attack(
        "a 64 KiB header",
        Auth::As("member"),
        "GET",
        "/api/auth/me",
        Body::None,
        431,
    );
    big_header.headers.push(("x-filler", "a".repeat(64 * 1024)));
    s.run(big_header).await;
    let mut many_headers = attack(
        "200 headers",
        Auth::As("member"),
        "GET",
        "/api/auth/me",
        Body::None,
        431,
    );
    for i in 0..200 {
        many_headers
            .headers
            .push((["x-a", "x-b", "x-c", "x-d"][i % 4], "v".repeat(10)));
    }
    s.run(many_headers).await;
    s.run(attack(
        "limit above the maximum",
        Auth::As("member"),
        "GET",
        format!("/api/orgs/{org}/members?limit=100000"),
        Body::None,
        422,
    ))
    .await;

    // --- webhooks without or with a bad signature --------------------------------
    let event = json!({"id": "evt_attack", "type": "customer.subscription.updated", "created": unix_now(),
        "data": {"object": {"id": "sub_x", "object": "subscription", "status": "active", "metadata": {"org_id": org}}}})
    .to_string()
    .into_bytes();
    for (name, signature) in [
        ("no signature", None),
        ("empty signature", Some(String::new())),
        (
            "signature of another secret",
            Some(crate::billing::stripe_signature(
                std::str::from_utf8(&event).unwrap_or_default(),
                "whsec_guess",
                unix_now(),
            )),
        ),
        (
            "replayed old signature",
            Some(crate::billing::stripe_signature(
                std::str::from_utf8(&event).unwrap_or_default(),
                crate::billing::SECRET,
                unix_now() - 3600,
            )),
        ),
    ] {
        let mut a = attack(
            format!("webhook {name}"),
            Auth::Nobody,
            "POST",
            "/api/webhooks/stripe",
            Body::Raw("application/json", event.clone()),
            400,
        );
        if let Some(sig) = signature {
            a.headers.push(("stripe-signature", sig));
        }
        s.run(a).await;
    }

    // --- account enumeration: the same answer whether the account exists ----------
    let pairs = [
        (
            "register",
            "/api/auth/register",
            json!({"email": "member@acme.test", "password": "a decent passphrase", "name": "X"}),
            json!({"email": "nobody-here@example.com", "password": "a decent passphrase", "name": "X"}),
        ),
        (
            "login",
            "/api/auth/login",
            json!({"email": "member@acme.test", "password": "wrong password!"}),
            json!({"email": "nobody-at-all@example.com", "password": "wrong password!"}),
        ),
        (
            "password reset",
            "/api/auth/password-reset",
            json!({"email": "member@acme.test"}),
            json!({"email": "nobody-either@example.com"}),
        ),
    ];
    for (name, path, existing, unknown) in pairs {
        let conn = s.acme.app.conn();
        let before = fingerprint(&conn);
        let (status_a, body_a) = s
            .send(&attack(name, Auth::Nobody, "POST", path, Body::Json(existing), 0))
            .await;
        if name != "register" {
            assert_eq!(
                fingerprint(&conn),
                before,
                "{name} with an existing account changed the database"
            );
        }
        let (status_b, body_b) = s
            .send(&attack(name, Auth::Nobody, "POST", path, Body::Json(unknown), 0))
            .await;
        assert_eq!(status_a, status_b, "{name}: {body_a} vs {body_b}");
        assert_eq!(shape(&body_a), shape(&body_b), "{name}: {body_a} vs {body_b}");
        s.cases += 2;
    }
    let (_, revoked) = s
        .acme
        .send(
            "POST",
            "owner",
            &s.acme.path("/invitations"),
            Some(json!({"email": "r@example.com", "role": "viewer"})),
        )
        .await;
    let revoked_id = revoked["id"].as_str().expect("id").to_string();
    s.acme
        .send(
            "DELETE",
            "owner",
            &s.acme.path(&format!("/invitations/{revoked_id}")),
            None,
        )
        .await;
    for (name, token) in [
        ("unknown invitation token", "pl_inv_doesnotexist"),
        ("malformed invitation token", "x"),
    ] {
        let body = s
            .run(attack(
                name,
                Auth::Nobody,
                "GET",
                format!("/api/invitations/{token}"),
                Body::None,
                404,
            ))
            .await;
        assert_eq!(
            body["detail"], "no such invitation, or it expired or was used",
            "{name}"
        );
    }

    // --- Org API keys: forged, truncated, misused --------------------------------
    let (key, _) = s.acme.api_key("owner", &["org:read", "usage:read"]).await;
    let (prefix_part, secret_part) = key
        .strip_prefix("plk_")
        .and_then(|k| k.split_once('_'))
        .expect("plk_<prefix>_<secret>");
    let flipped = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).expect("ascii")
    };
    let forged_keys = [
        ("truncated key", key[..key.len() - 1].to_string()),
        ("key cut to its prefix", format!("plk_{prefix_part}_")),
        ("key with a byte more", format!("{key}0")),
        (
            "secret with one digit changed",
            format!("plk_{prefix_part}_{}", flipped(secret_part, 10)),
        ),
        (
            "prefix with one digit changed",
            format!("plk_{}_{secret_part}", flipped(prefix_part, 3)),
        ),
        (
            "secret of the right length, made up",
            format!("plk_{prefix_part}_{}", "ab".repeat(32)),
        ),
        ("key in capitals", key.to_uppercase()),
        ("only the scheme's prefix", "plk_".to_string()),
        (
            "prefix and secret swapped",
            format!("plk_{secret_part}_{prefix_part}"),
        ),
    ];
    for (name, token) in forged_keys {
        let shaped_like_a_key = token.starts_with("plk_");
        let body = s
            .run(attack(
                name,
                Auth::Token(token),
                "GET",
                s.acme.path("/members"),
                Body::None,
                401,
            ))
            .await;
        // One answer for every wrong key: a probe learns nothing about which part.
        if shaped_like_a_key {
            assert_eq!(body["detail"], "invalid or revoked API key", "{name}");
        }
    }
    // The genuine key: its org's routes within its permissions, nothing else.
    let misuse = [
        ("key on its org", "GET", s.acme.path("/members"), 200),
        (
            "key on another org",
            "GET",
            format!("/api/orgs/{globex}/members"),
            404,
        ),
        (
            "key beyond its permissions",
            "GET",
            s.acme.path("/audit-logs"),
            403,
        ),
        ("key on a personal route", "GET", "/api/auth/me".to_string(), 401),
        ("key listing orgs", "GET", "/api/orgs".to_string(), 401),
        ("key on a staff route", "GET", "/api/admin/users".to_string(), 401),
        ("key leaving the org", "POST", s.acme.path("/leave"), 403),
        ("key deleting the org", "DELETE", s.acme.path(""), 403),
    ];
    for (name, method, path, expect) in misuse {
        s.run(attack(
            name,
            Auth::Token(key.clone()),
            method,
            path,
            Body::None,
            expect,
        ))
        .await;
    }

    eprintln!(
        "attack suite: {} cases, all refused as expected with the database unchanged",
        s.cases
    );
    assert!(s.cases > 200, "{}", s.cases);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A body's keys and value types, not its values (ids and messages may differ).
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        other => other.clone(),
    }
}
