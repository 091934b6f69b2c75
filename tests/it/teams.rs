//! Organizations, members, invitations and activity through the HTTP API.

use std::sync::Arc;

use plinth_core::tenancy::{Entitlements, Role};
use plinth_core::{Plugin, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::acme::{Acme, PRINCIPALS, uuid_of, verified_user};
use crate::harness::{TestApp, eventually};
use crate::smtp::SmtpSink;

/// One org-scoped route: its minimum role and the status an allowed caller gets.
struct Route {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
    min: Role,
    allowed: StatusCode,
}

fn role_of(who: &str) -> Option<Role> {
    match who {
        "owner" => Some(Role::Owner),
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        "viewer" => Some(Role::Viewer),
        _ => None,
    }
}

#[tokio::test]
async fn permission_matrix_of_every_org_scoped_route() {
    let acme = Acme::start().await;
    let nobody = Uuid::now_v7();
    let viewer = acme.id("viewer");
    let r = |name, method, rest: &str, body: Option<Value>, min, allowed| Route {
        name,
        method,
        path: acme.path(rest),
        body,
        min,
        allowed,
    };
    // Allowed callers of routes aimed at a missing member or invitation get 404:
    // it proves they passed the role check (403) without changing the fixture.
    let routes = vec![
        r("get org", "GET", "", None, Role::Viewer, StatusCode::OK),
        r(
            "update org",
            "PATCH",
            "",
            Some(json!({"name": "Acme"})),
            Role::Admin,
            StatusCode::OK,
        ),
        r(
            "list members",
            "GET",
            "/members",
            None,
            Role::Viewer,
            StatusCode::OK,
        ),
        r(
            "set a role",
            "PATCH",
            &format!("/members/{viewer}"),
            Some(json!({"role": "viewer"})),
            Role::Admin,
            StatusCode::OK,
        ),
        r(
            "remove a member",
            "DELETE",
            &format!("/members/{nobody}"),
            None,
            Role::Admin,
            StatusCode::NOT_FOUND,
        ),
        r(
            "list invitations",
            "GET",
            "/invitations",
            None,
            Role::Admin,
            StatusCode::OK,
        ),
        r(
            "revoke an invitation",
            "DELETE",
            &format!("/invitations/{nobody}"),
            None,
            Role::Admin,
            StatusCode::NOT_FOUND,
        ),
        r(
            "resend an invitation",
            "POST",
            &format!("/invitations/{nobody}/resend"),
            None,
            Role::Admin,
            StatusCode::NOT_FOUND,
        ),
        r("activity", "GET", "/activity", None, Role::Viewer, StatusCode::OK),
        r(
            "org audit log",
            "GET",
            "/audit-logs",
            None,
            Role::Admin,
            StatusCode::OK,
        ),
        r(
            "transfer ownership",
            "POST",
            "/transfer-ownership",
            Some(json!({"user_id": nobody})),
            Role::Owner,
            StatusCode::NOT_FOUND,
        ),
    ];
    let mut failures = Vec::new();
    let mut cases = 0;
    for route in &routes {
        for who in PRINCIPALS {
            let expected = match role_of(who) {
                None => StatusCode::NOT_FOUND,
                Some(role) if !role.at_least(route.min) => StatusCode::FORBIDDEN,
                Some(_) => route.allowed,
            };
            let (status, body) = acme
                .send(route.method, who, &route.path, route.body.clone())
                .await;
            cases += 1;
            if status != expected {
                failures.push(format!(
                    "{} as {who}: expected {expected}, got {status} {body}",
                    route.name
                ));
            }
        }
    }
    // Invitations: every allowed role invites a fresh address; outsiders get 404.
    for who in PRINCIPALS {
        let body = json!({"email": format!("matrix-{who}@example.com"), "role": "viewer"});
        let expected = match role_of(who) {
            None => StatusCode::NOT_FOUND,
            Some(role) if !role.at_least(Role::Admin) => StatusCode::FORBIDDEN,
            Some(_) => StatusCode::CREATED,
        };
        let (status, _) = acme
            .send("POST", who, &acme.path("/invitations"), Some(body))
            .await;
        cases += 1;
        if status != expected {
            failures.push(format!("invite as {who}: expected {expected}, got {status}"));
        }
    }
    // Deleting the org goes last, owner last of all.
    for who in ["outsider", "stranger", "viewer", "member", "admin", "owner"] {
        let expected = match role_of(who) {
            None => StatusCode::NOT_FOUND,
            Some(Role::Owner) => StatusCode::NO_CONTENT,
            Some(_) => StatusCode::FORBIDDEN,
        };
        let (status, _) = acme.send("DELETE", who, &acme.path(""), None).await;
        cases += 1;
        if status != expected {
            failures.push(format!("delete org as {who}: expected {expected}, got {status}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        acme.send("GET", "owner", &acme.path(""), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unauthenticated_requests_to_org_routes_get_401() {
    let acme = Acme::start().await;
    let resp = acme
        .app
        .client
        .get(acme.app.url(&acme.path("/members")))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ids_of_another_org_cannot_be_reached_through_ones_own() {
    let acme = Acme::start().await;
    let (status, invitation) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/invitations"),
            Some(json!({"email": "idor@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let invitation = uuid_of(&invitation["id"]);
    let member = acme.id("member");
    let globex = |rest: &str| format!("/api/orgs/{}{rest}", acme.globex);
    let attempts = [
        (
            "PATCH",
            globex(&format!("/members/{member}")),
            Some(json!({"role": "viewer"})),
        ),
        ("DELETE", globex(&format!("/members/{member}")), None),
        ("DELETE", globex(&format!("/invitations/{invitation}")), None),
        ("POST", globex(&format!("/invitations/{invitation}/resend")), None),
        (
            "POST",
            globex("/transfer-ownership"),
            Some(json!({"user_id": member})),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, _) = acme.send(method, "outsider", &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    // Nothing changed in Acme.
    let members = acme.send("GET", "owner", &acme.path("/members"), None).await.1;
    let role = members["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["user_id"] == member.to_string())
        .expect("member")["role"]
        .clone();
    assert_eq!(role, "member");
    let invitations = acme
        .send("GET", "owner", &acme.path("/invitations"), None)
        .await
        .1;
    assert_eq!(invitations["items"].as_array().map(Vec::len), Some(1));
    // And Globex's own lists show nothing of Acme's.
    let globex_members = acme.send("GET", "outsider", &globex("/members"), None).await.1;
    assert_eq!(globex_members["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_org_always_keeps_an_owner_and_only_owners_touch_owners() {
    let acme = Acme::start().await;
    let owner = acme.id("owner");
    let admin = acme.id("admin");
    let demote_self = acme
        .send(
            "PATCH",
            "owner",
            &acme.path(&format!("/members/{owner}")),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(demote_self.0, StatusCode::CONFLICT);
    assert_eq!(
        acme.send("POST", "owner", &acme.path("/leave"), None).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        acme.send("DELETE", "owner", &acme.path(&format!("/members/{owner}")), None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    let by_admin = acme
        .send(
            "PATCH",
            "admin",
            &acme.path(&format!("/members/{owner}")),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(by_admin.0, StatusCode::FORBIDDEN);
    let grant_by_admin = acme
        .send(
            "PATCH",
            "admin",
            &acme.path(&format!("/members/{admin}")),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(grant_by_admin.0, StatusCode::FORBIDDEN);
    assert_eq!(
        acme.send("DELETE", "admin", &acme.path(&format!("/members/{owner}")), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Transfer: the admin becomes owner, the old owner admin; then the old owner may leave.
    let transfer = acme
        .send(
            "POST",
            "owner",
            &acme.path("/transfer-ownership"),
            Some(json!({"user_id": admin})),
        )
        .await;
    assert_eq!(transfer.0, StatusCode::OK);
    assert_eq!(transfer.1["role"], "owner");
    let me = acme.send("GET", "owner", &acme.path(""), None).await.1;
    assert_eq!(me["role"], "admin", "the next request sees the new role");
    assert_eq!(
        acme.send("POST", "owner", &acme.path("/leave"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        acme.send("GET", "owner", &acme.path(""), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn admins_manage_roles_below_owner_and_members_leave() {
    let acme = Acme::start().await;
    let viewer = acme.id("viewer");
    let member = acme.id("member");
    let promoted = acme
        .send(
            "PATCH",
            "admin",
            &acme.path(&format!("/members/{viewer}")),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(promoted.0, StatusCode::OK);
    assert_eq!(promoted.1["role"], "admin");
    assert_eq!(
        acme.send("GET", "viewer", &acme.path("/audit-logs"), None)
            .await
            .0,
        StatusCode::OK,
        "new role applies at once"
    );
    let bad = acme
        .send(
            "PATCH",
            "admin",
            &acme.path(&format!("/members/{member}")),
            Some(json!({"role": "superuser"})),
        )
        .await;
    assert!(bad.0.is_client_error(), "{:?}", bad);
    assert_eq!(
        acme.send("POST", "member", &acme.path("/leave"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        acme.send("GET", "member", &acme.path(""), None).await.0,
        StatusCode::NOT_FOUND
    );
    let actions: Vec<Value> = acme.send("GET", "owner", &acme.path("/activity"), None).await.1["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["action"].clone())
        .collect();
    assert!(actions.contains(&json!("member.role_changed")));
    assert!(actions.contains(&json!("member.removed")));
    let audit = acme
        .send(
            "GET",
            "owner",
            &acme.path("/audit-logs?action=member.role_changed"),
            None,
        )
        .await
        .1;
    let entries = audit["items"].as_array().expect("items");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["after"], "admin");
}

#[tokio::test]
async fn a_removed_member_loses_access_on_the_next_request() {
    let acme = Acme::start().await;
    let member = acme.id("member");
    assert_eq!(
        acme.send("GET", "member", &acme.path("/members"), None).await.0,
        StatusCode::OK,
        "cached now"
    );
    assert_eq!(
        acme.send("DELETE", "admin", &acme.path(&format!("/members/{member}")), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        acme.send("GET", "member", &acme.path("/members"), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn orgs_are_created_with_unique_slugs_and_listed_with_roles() {
    let acme = Acme::start().await;
    let first = acme
        .send(
            "POST",
            "stranger",
            "/api/orgs",
            Some(json!({"name": "Initech Corp."})),
        )
        .await;
    assert_eq!(first.0, StatusCode::CREATED);
    assert_eq!(first.1["slug"], "initech-corp");
    assert_eq!(first.1["role"], "owner");
    let second = acme
        .send(
            "POST",
            "stranger",
            "/api/orgs",
            Some(json!({"name": "Initech Corp"})),
        )
        .await;
    assert_eq!(second.1["slug"], "initech-corp-2");
    let taken = acme
        .send(
            "POST",
            "stranger",
            "/api/orgs",
            Some(json!({"name": "X", "slug": "acme"})),
        )
        .await;
    assert_eq!(taken.0, StatusCode::CONFLICT);
    let invalid = acme
        .send(
            "POST",
            "stranger",
            "/api/orgs",
            Some(json!({"name": "", "slug": "Bad Slug"})),
        )
        .await;
    assert_eq!(invalid.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.1["errors"].as_array().map(Vec::len), Some(2));
    let rename_taken = acme
        .send(
            "PATCH",
            "owner",
            &acme.path(""),
            Some(json!({"slug": "initech-corp"})),
        )
        .await;
    assert_eq!(rename_taken.0, StatusCode::CONFLICT);

    let list = acme.send("GET", "stranger", "/api/orgs?limit=1", None).await.1;
    assert_eq!(list["items"][0]["role"], "owner");
    let cursor = list["next_cursor"].as_str().expect("second page");
    let page2 = acme
        .send(
            "GET",
            "stranger",
            &format!("/api/orgs?limit=1&cursor={cursor}"),
            None,
        )
        .await
        .1;
    assert_eq!(page2["items"][0]["slug"], "initech-corp-2");
    assert_eq!(page2["next_cursor"], Value::Null);
}

#[tokio::test]
async fn members_are_paged_by_keyset() {
    let acme = Acme::start().await;
    let mut seen = Vec::new();
    let mut path = acme.path("/members?limit=3");
    loop {
        let page = acme.send("GET", "viewer", &path, None).await.1;
        for m in page["items"].as_array().expect("items") {
            seen.push(m["email"].as_str().expect("email").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = acme.path(&format!("/members?limit=3&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "owner@acme.test",
            "admin@acme.test",
            "member@acme.test",
            "viewer@acme.test"
        ]
    );
    assert_eq!(
        acme.send("GET", "viewer", &acme.path("/members?limit=0"), None)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        acme.send("GET", "viewer", &acme.path("/members?limit=101"), None)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

fn invitation_token(data: &str) -> String {
    let marker = "/invitations/";
    let start = data.find(marker).expect("link") + marker.len();
    data[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '.')
        .collect()
}

#[tokio::test]
async fn an_invitation_travels_by_smtp_and_is_accepted_once_by_its_addressee() {
    let sink = SmtpSink::start().await;
    let acme = Acme::start_with(
        TestApp::builder()
            .var("SMTP_URL", &sink.url())
            .var("APP_URL", "https://app.example.com"),
    )
    .await;
    let (status, invitation) = acme
        .send(
            "POST",
            "admin",
            &acme.path("/invitations"),
            Some(json!({"email": "New.Hire@Example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    assert_eq!(invitation["email"], "new.hire@example.com");
    assert_eq!(invitation["invited_by"]["name"], "Adam Admin");
    let again = acme
        .send(
            "POST",
            "admin",
            &acme.path("/invitations"),
            Some(json!({"email": "new.hire@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(again.0, StatusCode::CONFLICT, "a pending invitation exists");
    let member = acme
        .send(
            "POST",
            "admin",
            &acme.path("/invitations"),
            Some(json!({"email": "member@acme.test", "role": "viewer"})),
        )
        .await;
    assert_eq!(member.0, StatusCode::CONFLICT, "already a member");
    let above = acme
        .send(
            "POST",
            "admin",
            &acme.path("/invitations"),
            Some(json!({"email": "boss@example.com", "role": "owner"})),
        )
        .await;
    assert_eq!(above.0, StatusCode::FORBIDDEN, "not above the inviter's role");

    eventually("the invitation mail arrives", || async {
        sink.messages().iter().any(|m| m.data.contains("/invitations/"))
    })
    .await;
    let mail = sink
        .messages()
        .into_iter()
        .find(|m| m.data.contains("/invitations/"))
        .expect("mail");
    assert_eq!(mail.to, vec!["<new.hire@example.com>".to_string()]);
    assert!(mail.data.contains("https://app.example.com/invitations/"));
    let token = invitation_token(&mail.data);

    let preview: Value = acme
        .app
        .client
        .get(acme.app.url(&format!("/api/invitations/{token}")))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(preview["org_name"], "Acme");
    assert_eq!(preview["inviter_name"], "Adam Admin");
    assert_eq!(preview["role"], "member");
    let forged = format!("{}.{}", &token[..32], "0".repeat(64));
    let missing = acme
        .app
        .client
        .get(acme.app.url(&format!("/api/invitations/{forged}")))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Someone else, even verified, cannot take it.
    let other = verified_user(&acme.app, "someone.else@example.com").await;
    let accept = |access: String| {
        let (client, url) = (
            acme.app.client.clone(),
            acme.app.url(&format!("/api/invitations/{token}/accept")),
        );
        async move {
            client
                .post(url)
                .bearer_auth(access)
                .send()
                .await
                .expect("request")
        }
    };
    assert_eq!(accept(other).await.status(), StatusCode::FORBIDDEN);

    // The addressee registers; unverified they are refused, verified they join.
    crate::auth::register(&acme.app, "new.hire@example.com").await;
    let (unverified, _) = crate::auth::tokens(&acme.app, "new.hire@example.com", "a decent passphrase").await;
    assert_eq!(accept(unverified.clone()).await.status(), StatusCode::FORBIDDEN);
    eventually("the verification mail arrives", || async {
        sink.messages()
            .iter()
            .any(|m| m.data.contains("/verify-email?token=") && m.to[0].contains("new.hire"))
    })
    .await;
    let verify_mail = sink
        .messages()
        .into_iter()
        .find(|m| m.data.contains("/verify-email?token=") && m.to[0].contains("new.hire"))
        .expect("mail");
    let start = verify_mail.data.find("token=").expect("token") + 6;
    let verify_token: String = verify_mail.data[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let verified = crate::auth::post(
        &acme.app,
        "/api/auth/verify-email",
        json!({ "token": verify_token }),
    )
    .await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT);
    let joined = accept(unverified.clone()).await;
    assert_eq!(joined.status(), StatusCode::OK);
    let joined: Value = joined.json().await.expect("json");
    assert_eq!(joined["role"], "member");
    assert_eq!(joined["org_name"], "Acme");
    assert_eq!(
        accept(unverified.clone()).await.status(),
        StatusCode::NOT_FOUND,
        "single use"
    );

    let members = acme.send("GET", "viewer", &acme.path("/members"), None).await.1;
    assert!(
        members["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|m| m["email"] == "new.hire@example.com")
    );
    let feed = acme.send("GET", "viewer", &acme.path("/activity"), None).await.1;
    assert!(
        feed["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["action"] == "member.added")
    );
    let audit = acme
        .send(
            "GET",
            "owner",
            &acme.path("/audit-logs?action=invitation.accepted"),
            None,
        )
        .await
        .1;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn invitations_can_be_resent_and_revoked() {
    let acme = Acme::start().await;
    let (_, invitation) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/invitations"),
            Some(json!({"email": "again@example.com", "role": "viewer"})),
        )
        .await;
    let id = uuid_of(&invitation["id"]);
    let first =
        crate::auth::outbox_token_path(&acme.app, "again@example.com", "invitations/").expect("token");
    let resent = acme
        .send(
            "POST",
            "owner",
            &acme.path(&format!("/invitations/{id}/resend")),
            None,
        )
        .await;
    assert_eq!(resent.0, StatusCode::OK);
    let second =
        crate::auth::outbox_token_path(&acme.app, "again@example.com", "invitations/").expect("token");
    assert_ne!(first, second);
    let preview = |token: String| {
        let (client, url) = (
            acme.app.client.clone(),
            acme.app.url(&format!("/api/invitations/{token}")),
        );
        async move { client.get(url).send().await.expect("request").status() }
    };
    assert_eq!(
        preview(first).await,
        StatusCode::NOT_FOUND,
        "the old link stopped working"
    );
    assert_eq!(preview(second.clone()).await, StatusCode::OK);
    assert_eq!(
        acme.send("DELETE", "owner", &acme.path(&format!("/invitations/{id}")), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(preview(second).await, StatusCode::NOT_FOUND);
    let list = acme
        .send("GET", "owner", &acme.path("/invitations"), None)
        .await
        .1;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
}

/// Provides a five-seat plan to every org, as the billing plugin will.
struct FiveSeats;

impl Entitlements for FiveSeats {
    fn seat_limit(&self, _conn: &plinth_core::storage::sql::Sql<'_>) -> Result<Option<u32>> {
        Ok(Some(5))
    }
}

struct Seats;

impl Plugin for Seats {
    fn name(&self) -> &'static str {
        "seats"
    }
    fn description(&self) -> &'static str {
        "A five-seat plan for tests"
    }
    fn entitlements(&self) -> Option<Arc<dyn Entitlements>> {
        Some(Arc::new(FiveSeats))
    }
}

#[tokio::test]
async fn invitations_past_the_seat_limit_are_refused_with_402() {
    let acme = Acme::start_with(TestApp::builder().plugin(Seats)).await;
    let path = acme.path("/invitations");
    let invite = |email: &str| {
        acme.send(
            "POST",
            "owner",
            &path,
            Some(json!({"email": email, "role": "viewer"})),
        )
    };
    assert_eq!(
        invite("fifth@example.com").await.0,
        StatusCode::CREATED,
        "4 members + 1 invitation = 5 seats"
    );
    let refused = invite("sixth@example.com").await;
    assert_eq!(refused.0, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(refused.1["type"], "/problems/payment-required");
}

#[tokio::test]
async fn deleting_an_org_removes_all_its_tenant_data_in_one_go() {
    let acme = Acme::start().await;
    acme.send(
        "POST",
        "owner",
        &acme.path("/invitations"),
        Some(json!({"email": "gone@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(
        acme.send("DELETE", "owner", &acme.path(""), None).await.0,
        StatusCode::NO_CONTENT
    );
    let conn = acme.app.conn();
    for table in crate::isolation::tenant_tables(&conn) {
        let left: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE org_id = ?1"),
                args![acme.org.to_string()],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(left, 0, "{table} still holds rows of the deleted org");
    }
    let globex_left: i64 = conn
        .query_row(
            "SELECT count(*) FROM tenant_memberships WHERE org_id = ?1",
            args![acme.globex.to_string()],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(globex_left, 1, "other orgs are untouched");
    let audited: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'org.deleted' AND org_id = ?1",
            args![acme.org.to_string()],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(audited, 1);
}
