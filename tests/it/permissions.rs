//! Permissions, custom roles and org API keys: the catalog and what each org
//! operation checks (from the served document), the matrix over presets, a custom
//! role and keys, escalation attempts, and the keys' life cycle.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::acme::Acme;
use crate::harness::TestApp;

const VIEWER: [&str; 4] = ["billing:read", "flags:read", "org:read", "usage:read"];
const MEMBER_ADDS: [&str; 1] = ["usage:record"];
const ADMIN_ADDS: [&str; 7] = [
    "api_keys:manage",
    "audit:read",
    "billing:manage",
    "members:invite",
    "members:manage",
    "org:update",
    "roles:manage",
];
const OWNER_ADDS: [&str; 2] = ["org:delete", "owners:manage"];

fn set(parts: &[&[&str]]) -> BTreeSet<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| s.to_string()))
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// Sends with a raw bearer token (a key or an access token).
async fn send(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A key of Acme created by `who` with `permissions`; its whole text.
async fn key(acme: &Acme, who: &str, permissions: &BTreeSet<String>) -> String {
    let permissions: Vec<&String> = permissions.iter().collect();
    acme.api_key(who, &permissions).await.0
}

/// A new member of Acme holding `role`: their access token and id.
async fn member_with(acme: &Acme, email: &str, role: &str) -> (String, Uuid) {
    let (token, id) = acme.join(email).await;
    acme.set_role(id, role).await;
    (token, id)
}

#[tokio::test]
async fn the_catalog_names_what_every_org_operation_checks_and_presets_match_the_roles_table() {
    let acme = Acme::start().await;
    let (status, catalog) = acme.send("GET", "viewer", "/api/permissions", None).await;
    assert_eq!(status, StatusCode::OK);
    let by_key: BTreeMap<String, Value> = catalog["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| (p["key"].as_str().expect("key").to_string(), p.clone()))
        .collect();
    assert!(
        by_key
            .values()
            .all(|p| p["description"].as_str().is_some_and(|d| !d.is_empty()))
    );
    let owner_only: BTreeSet<String> = by_key
        .iter()
        .filter(|(_, p)| p["owner_only"] == true)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(owner_only, set(&[&OWNER_ADDS]));

    // The presets reproduce the roles table.
    let (_, roles) = acme.send("GET", "viewer", &acme.path("/roles"), None).await;
    let presets: BTreeMap<String, BTreeSet<String>> = roles["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| r["preset"] == true)
        .map(|r| {
            (
                r["key"].as_str().expect("key").to_string(),
                strings(&r["permissions"]),
            )
        })
        .collect();
    assert_eq!(presets["viewer"], set(&[&VIEWER]));
    assert_eq!(presets["member"], set(&[&VIEWER, &MEMBER_ADDS]));
    assert_eq!(presets["admin"], set(&[&VIEWER, &MEMBER_ADDS, &ADMIN_ADDS]));
    assert_eq!(
        presets["owner"],
        set(&[&VIEWER, &MEMBER_ADDS, &ADMIN_ADDS, &OWNER_ADDS])
    );
    assert_eq!(presets["owner"], by_key.keys().cloned().collect::<BTreeSet<_>>());

    // GET /api/orgs/{org_id} tells the caller their role and permissions.
    let (_, org) = acme.send("GET", "member", &acme.path(""), None).await;
    assert_eq!(org["role"], "member");
    assert_eq!(strings(&org["permissions"]), presets["member"]);

    // Every org operation documents its permission (leaving is any member's) and
    // accepts an API key beside the access token.
    let spec: Value = acme.app.served_spec().await;
    let mut documented = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/orgs/{org_id}") {
            continue;
        }
        for (method, op) in item.as_object().expect("item") {
            let id = op["operationId"].as_str().expect("id");
            if id == "leaveOrg" {
                assert!(op.get("x-permission").is_none());
                continue;
            }
            let permission = op["x-permission"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} names no permission"));
            assert!(
                by_key.contains_key(permission),
                "{id}: {permission} is not in the catalog"
            );
            assert!(
                op["description"].as_str().is_some_and(|d| d.contains(permission)),
                "{id}: the description names {permission}"
            );
            assert_eq!(
                op["security"],
                json!([{"bearerAuth": []}, {"apiKeyAuth": []}]),
                "{id}"
            );
            documented += 1;
        }
    }
    assert!(documented >= 30, "{documented} operations");
    assert_eq!(
        spec["components"]["securitySchemes"]["apiKeyAuth"]["scheme"],
        "bearer"
    );
}

/// One caller of the matrix: a token and what it holds.
struct Caller {
    name: String,
    token: String,
    holds: BTreeSet<String>,
}

/// The template with `org_id` set and every other parameter a fresh UUID (or
/// `x` for keys), so allowed callers reach the handler and find nothing.
fn fill(template: &str, org: Uuid) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{org_id}" => org.to_string(),
            "{key}" => "x".to_string(),
            s if s.starts_with('{') => Uuid::now_v7().to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_matrix_of_every_org_operation_over_presets_a_custom_role_and_keys() {
    let acme = Acme::start_with(
        TestApp::builder()
            .var("PLINTH_API_KEY_RATE_PER_MINUTE", "100000")
            .var("PLINTH_AUTH_RATE_PER_ACCOUNT", "1000"),
    )
    .await;
    let spec: Value = acme.app.served_spec().await;
    let (_, catalog) = acme.send("GET", "owner", "/api/permissions", None).await;
    let grantable: BTreeSet<String> = catalog["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["owner_only"] == false)
        .map(|p| p["key"].as_str().expect("key").to_string())
        .collect();
    let (_, roles) = acme.send("GET", "owner", &acme.path("/roles"), None).await;
    let preset = |name: &str| -> BTreeSet<String> {
        roles["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|r| r["key"] == name)
            .map(|r| strings(&r["permissions"]))
            .expect("preset")
    };
    let support = [
        "org:read",
        "members:invite",
        "usage:read",
        "flags:read",
        "audit:read",
    ];
    acme.create_role("support", &support).await;
    let (support_token, _) = member_with(&acme, "support@example.com", "support").await;

    let mut callers: Vec<Caller> = ["viewer", "member", "admin", "owner"]
        .into_iter()
        .map(|who| Caller {
            name: who.to_string(),
            token: acme.token(who).to_string(),
            holds: preset(who),
        })
        .collect();
    callers.push(Caller {
        name: "custom role support".into(),
        token: support_token,
        holds: support.iter().map(|s| s.to_string()).collect(),
    });
    // For each permission, a key holding everything else, and one holding only it
    // (with `org:read`, the floor every org route stands on).
    for p in &grantable {
        let without: BTreeSet<String> = grantable.iter().filter(|g| *g != p).cloned().collect();
        let only: BTreeSet<String> = [p.clone(), "org:read".to_string()].into();
        callers.push(Caller {
            name: format!("key without {p}"),
            token: key(&acme, "owner", &without).await,
            holds: without,
        });
        callers.push(Caller {
            name: format!("key with only {p}"),
            token: key(&acme, "owner", &only).await,
            holds: only,
        });
    }

    let mut failures = Vec::new();
    let (mut cases, mut operations) = (0, 0);
    for (template, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let Some(permission) = op["x-permission"].as_str() else {
                continue;
            };
            operations += 1;
            let method = method.to_uppercase();
            let path = fill(template, acme.org);
            // Deleting the org would end the matrix: its allowed caller is the
            // owner, proven by the roles-table matrix in teams.rs.
            let destructive = method == "DELETE" && template == "/api/orgs/{org_id}";
            for caller in &callers {
                // Keys only test the permissions they were made around.
                if caller.name.starts_with("key") && !caller.name.ends_with(&format!(" {permission}")) {
                    continue;
                }
                let allowed = caller.holds.contains(permission);
                if allowed && destructive {
                    continue;
                }
                let (status, body) = send(&acme.app, &caller.token, &method, &path, None).await;
                cases += 1;
                let refused = status == StatusCode::FORBIDDEN;
                let ok = if allowed {
                    !refused && status != StatusCode::UNAUTHORIZED && body["detail"] != "no such organization"
                } else {
                    refused
                };
                if !ok {
                    failures.push(format!(
                        "{method} {template} ({permission}) as {}: {status} {body}",
                        caller.name
                    ));
                }
            }
        }
    }
    eprintln!(
        "permission matrix: {operations} org operations x {} callers (4 presets, a custom role, {} keys): {cases} cases",
        callers.len(),
        callers.len() - 5
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases > 200, "{cases} cases");
}

#[tokio::test]
async fn escalation_through_custom_roles_invitations_and_keys_is_refused() {
    let acme = Acme::start().await;

    // Owner powers are not grantable, to a role or a key, even by the owner.
    for (path, body) in [
        (
            acme.path("/roles"),
            json!({"key": "deputy", "name": "Deputy", "permissions": ["org:read", "org:delete"]}),
        ),
        (
            acme.path("/roles"),
            json!({"key": "crown", "name": "Crown", "permissions": ["owners:manage"]}),
        ),
        (
            acme.path("/api-keys"),
            json!({"name": "k", "permissions": ["owners:manage"]}),
        ),
        (
            acme.path("/roles"),
            json!({"key": "ghost", "name": "Ghost", "permissions": ["org:fly"]}),
        ),
    ] {
        let (status, body) = acme.send("POST", "owner", &path, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["errors"][0]["field"], "permissions", "{body}");
    }

    // A custom role that reads what a viewer reads and may manage roles, invite
    // and manage members, but holds no billing permission beyond reading.
    acme.create_role(
        "people",
        &[
            "org:read",
            "billing:read",
            "flags:read",
            "usage:read",
            "roles:manage",
            "members:invite",
            "members:manage",
            "api_keys:manage",
        ],
    )
    .await;
    acme.create_role("biller", &["org:read", "billing:read", "billing:manage"])
        .await;
    let (people, _) = member_with(&acme, "people@example.com", "people").await;
    let (_, biller_id) = member_with(&acme, "biller@example.com", "biller").await;
    let admin = acme.id("admin");
    let viewer = acme.id("viewer");
    let app = &acme.app;
    let cases: Vec<(&str, &str, String, Value, StatusCode)> = vec![
        (
            "create a role carrying a permission one lacks",
            "POST",
            acme.path("/roles"),
            json!({"key": "more", "name": "More", "permissions": ["billing:manage"]}),
            StatusCode::FORBIDDEN,
        ),
        (
            "widen one's own role",
            "PATCH",
            acme.path("/roles/people"),
            json!({"permissions": ["org:read", "roles:manage", "billing:manage"]}),
            StatusCode::FORBIDDEN,
        ),
        (
            "change a role carrying permissions one lacks",
            "PATCH",
            acme.path("/roles/biller"),
            json!({"permissions": ["org:read"]}),
            StatusCode::FORBIDDEN,
        ),
        (
            "invite as admin",
            "POST",
            acme.path("/invitations"),
            json!({"email": "up@example.com", "role": "admin"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "invite with a role carrying billing",
            "POST",
            acme.path("/invitations"),
            json!({"email": "up2@example.com", "role": "biller"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "promote a viewer to admin",
            "PATCH",
            acme.path(&format!("/members/{viewer}")),
            json!({"role": "admin"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "demote an admin (more powerful)",
            "PATCH",
            acme.path(&format!("/members/{admin}")),
            json!({"role": "viewer"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "demote the biller (holds billing)",
            "PATCH",
            acme.path(&format!("/members/{biller_id}")),
            json!({"role": "viewer"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "create a key with billing",
            "POST",
            acme.path("/api-keys"),
            json!({"name": "k", "permissions": ["billing:manage"]}),
            StatusCode::FORBIDDEN,
        ),
        (
            "give a member an unknown role",
            "PATCH",
            acme.path(&format!("/members/{viewer}")),
            json!({"role": "no-such-role"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (name, method, path, body, expect) in cases {
        let (status, answer) = send(app, &people, method, &path, Some(body)).await;
        assert_eq!(status, expect, "{name}: {answer}");
    }
    let (status, _) = send(
        app,
        &people,
        "DELETE",
        &acme.path(&format!("/members/{admin}")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "remove an admin");
    // Within its reach it works: invite as a viewer, a role it covers.
    let (status, body) = send(
        app,
        &people,
        "POST",
        &acme.path("/invitations"),
        Some(json!({"email": "fine@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Keys: never more than their creator held, and within their own set.
    let people_key = key(
        &acme,
        "admin",
        &set(&[&["org:read", "roles:manage", "members:manage"]]),
    )
    .await;
    for (name, method, path, body) in [
        (
            "a key creating a role beyond itself",
            "POST",
            acme.path("/roles"),
            json!({"key": "wide", "name": "Wide", "permissions": ["org:read", "members:invite"]}),
        ),
        (
            "a key promoting a member to admin",
            "PATCH",
            acme.path(&format!("/members/{viewer}")),
            json!({"role": "admin"}),
        ),
        (
            "a key transferring ownership",
            "POST",
            acme.path("/transfer-ownership"),
            json!({"user_id": viewer}),
        ),
        (
            "a key creating a key",
            "POST",
            acme.path("/api-keys"),
            json!({"name": "child", "permissions": ["org:read"]}),
        ),
    ] {
        let (status, answer) = send(app, &people_key, method, &path, Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {answer}");
    }
    // Presets are fixed.
    let (status, _) = acme
        .send(
            "PATCH",
            "owner",
            &acme.path("/roles/admin"),
            Some(json!({"permissions": ["org:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The member's role is unchanged by every refusal.
    let (_, members) = acme
        .send("GET", "owner", &acme.path("/members?limit=100"), None)
        .await;
    let role_of = |id: Uuid| {
        members["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|m| m["user_id"] == id.to_string())
            .map(|m| m["role"].clone())
            .expect("member")
    };
    assert_eq!(role_of(viewer), "viewer");
    assert_eq!(role_of(admin), "admin");
    assert_eq!(role_of(biller_id), "biller");
}

#[tokio::test]
async fn custom_roles_apply_at_once_and_a_role_in_use_cannot_be_deleted() {
    let acme = Acme::start().await;
    let inviter_holds = [
        "org:read",
        "billing:read",
        "flags:read",
        "usage:read",
        "members:invite",
    ];
    acme.create_role("inviter", &inviter_holds).await;
    let (inviter, inviter_id) = member_with(&acme, "inviter@example.com", "inviter").await;
    let app = &acme.app;
    let invite = |email: &str| json!({"email": email, "role": "viewer"});
    let (status, _) = send(
        app,
        &inviter,
        "POST",
        &acme.path("/invitations"),
        Some(invite("a@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // The holder's org view carries the custom role and its permissions.
    let (_, org) = send(app, &inviter, "GET", &acme.path(""), None).await;
    assert_eq!(org["role"], "inviter");
    assert_eq!(strings(&org["permissions"]), set(&[&inviter_holds]));

    // Narrowing the role applies to its holder on the next request.
    let (status, body) = acme
        .send(
            "PATCH",
            "owner",
            &acme.path("/roles/inviter"),
            Some(json!({"permissions": ["org:read", "billing:read", "flags:read", "usage:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = send(
        app,
        &inviter,
        "POST",
        &acme.path("/invitations"),
        Some(invite("b@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // In use by a member: 409; by a pending invitation only: 409; unused: 204.
    let (status, body) = acme
        .send("DELETE", "owner", &acme.path("/roles/inviter"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = acme
        .send(
            "PATCH",
            "owner",
            &acme.path(&format!("/members/{inviter_id}")),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, invitation) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/invitations"),
            Some(json!({"email": "c@example.com", "role": "inviter"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = acme
        .send("DELETE", "owner", &acme.path("/roles/inviter"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let invitation = invitation["id"].as_str().expect("id");
    acme.send(
        "DELETE",
        "owner",
        &acme.path(&format!("/invitations/{invitation}")),
        None,
    )
    .await;
    let (status, _) = acme
        .send("DELETE", "owner", &acme.path("/roles/inviter"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Bad keys and duplicates.
    for (body, expect) in [
        (
            json!({"key": "Bad Key", "name": "x", "permissions": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"key": "admin", "name": "x", "permissions": []}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"key": "ok", "name": "", "permissions": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = acme.send("POST", "owner", &acme.path("/roles"), Some(body)).await;
        assert_eq!(status, expect, "{answer}");
    }
    acme.create_role("twice", &["org:read"]).await;
    let (status, _) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/roles"),
            Some(json!({"key": "twice", "name": "x", "permissions": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Audited.
    let (_, log) = acme
        .send(
            "GET",
            "owner",
            &acme.path("/audit-logs?action=role.deleted"),
            None,
        )
        .await;
    assert_eq!(log["items"][0]["target_id"], "inviter");
}

#[tokio::test]
async fn an_api_key_works_within_its_org_until_revoked_and_outlives_its_creator() {
    let acme = Acme::start().await;
    let app = &acme.app;
    // An admin who will leave creates the key.
    let (creator, creator_id) = member_with(&acme, "ops@example.com", "admin").await;
    let (status, created) = send(
        app,
        &creator,
        "POST",
        &acme.path("/api-keys"),
        Some(json!({"name": "usage reporter", "permissions": ["org:read", "usage:record", "usage:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key").to_string();
    let prefix = created["prefix"].as_str().expect("prefix");
    assert!(key.starts_with(&format!("plk_{prefix}_")), "{key}");
    let key_id = created["id"].as_str().expect("id").to_string();

    // Stored only hashed; listed without the secret.
    let secret = key.rsplit('_').next().expect("secret");
    let stored: Vec<String> = app
        .conn()
        .query_all(
            "SELECT name || prefix || secret_hash || permissions || created_by FROM tenant_api_keys",
            args![],
            |r| r.get(0),
        )
        .expect("rows");
    assert!(
        stored.iter().all(|row| !row.contains(secret)),
        "the secret is stored"
    );
    let (_, list) = acme.send("GET", "owner", &acme.path("/api-keys"), None).await;
    let listed = &list["items"][0];
    assert_eq!(listed["prefix"], prefix);
    assert!(listed.get("key").is_none() && !list.to_string().contains(secret));
    assert_eq!(listed["created_by"], creator_id.to_string());
    assert!(listed["last_used_at"].is_null());

    // It records usage as itself.
    let (status, body) = send(
        app,
        &key,
        "POST",
        &acme.path("/usage"),
        Some(json!({"metric": "api_calls", "quantity": 2, "idempotency_key": "key-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, list) = acme.send("GET", "owner", &acme.path("/api-keys"), None).await;
    assert!(list["items"][0]["last_used_at"].is_string(), "{list}");
    let actor = format!("api_key:{key_id}");
    let (_, log) = acme
        .send(
            "GET",
            "owner",
            &acme.path(&format!("/audit-logs?actor_id={actor}")),
            None,
        )
        .await;
    assert_eq!(log["items"][0]["action"], "api_key.request", "{log}");
    let (_, log) = acme
        .send(
            "GET",
            "owner",
            &acme.path("/audit-logs?action=api_key.created"),
            None,
        )
        .await;
    assert_eq!(log["items"][0]["target_id"], key_id);

    // The creator leaves; the key belongs to the org and keeps working.
    let (status, _) = send(app, &creator, "POST", &acme.path("/leave"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(app, &key, "GET", &acme.path("/usage"), None).await;
    assert_eq!(status, StatusCode::OK);

    // A suspended org's keys are refused too, and work again once it is restored.
    for (action, expect) in [("suspend", StatusCode::FORBIDDEN), ("unsuspend", StatusCode::OK)] {
        let (status, _) = acme
            .send(
                "POST",
                "stranger",
                &format!("/api/admin/orgs/{}/{action}", acme.org),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}");
        let (status, _) = send(app, &key, "GET", &acme.path("/usage"), None).await;
        assert_eq!(status, expect, "after {action}");
    }

    // Revoked: refused on the next request.
    let (status, _) = acme
        .send(
            "DELETE",
            "owner",
            &acme.path(&format!("/api-keys/{key_id}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(app, &key, "GET", &acme.path("/usage"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = acme
        .send(
            "DELETE",
            "owner",
            &acme.path(&format!("/api-keys/{key_id}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, log) = acme
        .send(
            "GET",
            "owner",
            &acme.path("/audit-logs?action=api_key.revoked"),
            None,
        )
        .await;
    assert_eq!(log["items"][0]["target_id"], key_id);

    // Managing keys needs `api_keys:manage`; expiry must lie ahead.
    let (status, _) = acme.send("GET", "member", &acme.path("/api-keys"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/api-keys"),
            Some(json!({"name": "late", "permissions": ["org:read"], "expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/api-keys"),
            Some(json!({"name": "none", "permissions": []})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn an_expired_key_is_refused_and_each_key_is_rate_limited() {
    let acme = Acme::start_with(TestApp::builder().var("PLINTH_API_KEY_RATE_PER_MINUTE", "3")).await;
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let (status, created) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/api-keys"),
            Some(json!({"name": "short", "permissions": ["org:read"], "expires_at": soon})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let short = created["key"].as_str().expect("key").to_string();
    let limited = key(&acme, "owner", &set(&[&["org:read"]])).await;
    let app = &acme.app;
    for _ in 0..3 {
        let (status, _) = send(app, &limited, "GET", &acme.path(""), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let resp = app
        .client
        .get(app.url(&acme.path("")))
        .bearer_auth(&limited)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_some());
    // Another key has its own budget.
    let (status, _) = send(app, &short, "GET", &acme.path(""), None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, body) = send(app, &short, "GET", &acme.path(""), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// "A role in use cannot be deleted" against a racing assignment: each round
/// assigns a fresh custom role and deletes it at the same moment; never do both
/// succeed (a member left holding a deleted role). Org writes take turns (one
/// SQLite writer; the org's writer lock on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_role_while_it_is_assigned_never_leaves_a_member_holding_nothing() {
    let acme = Acme::start().await;
    let viewer = acme.id("viewer");
    let mut outcomes = BTreeMap::new();
    for round in 0..12 {
        let key = format!("racer-{round}");
        acme.create_role(&key, &["org:read"]).await;
        let (member_path, role_path) = (
            acme.path(&format!("/members/{viewer}")),
            acme.path(&format!("/roles/{key}")),
        );
        let assign = acme.send("PATCH", "owner", &member_path, Some(json!({"role": key})));
        let delete = acme.send("DELETE", "owner", &role_path, None);
        let ((assigned, _), (deleted, _)) = tokio::join!(assign, delete);
        assert!(
            !(assigned == StatusCode::OK && deleted == StatusCode::NO_CONTENT),
            "round {round}: both the assignment and the deletion succeeded"
        );
        *outcomes
            .entry(format!(
                "assign {} / delete {}",
                assigned.as_u16(),
                deleted.as_u16()
            ))
            .or_insert(0) += 1;
        // The viewer's role exists, whichever won.
        let (_, org) = acme.send("GET", "viewer", &acme.path(""), None).await;
        let role = org["role"].as_str().expect("role").to_string();
        let (_, roles) = acme.send("GET", "owner", &acme.path("/roles"), None).await;
        assert!(
            roles["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|r| r["key"] == role),
            "round {round}: the viewer holds `{role}`, which is gone"
        );
        let (status, _) = acme
            .send(
                "PATCH",
                "owner",
                &acme.path(&format!("/members/{viewer}")),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    eprintln!("racing role assignment and deletion, 12 rounds: {outcomes:?}");
}
