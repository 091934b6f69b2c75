//! Cached reads (`GET /me`, member lists) after every kind of write that changes
//! what they show: each read is warmed first, so a cache that missed a change would
//! answer with the old value.

use reqwest::StatusCode;
use serde_json::json;

use crate::acme::Acme;
use crate::auth::{me_json, post, register, tokens};

/// The member list of Acme as the owner sees it: (email, name, role) by user id.
async fn members(acme: &Acme) -> Vec<(String, String, String, String)> {
    let (status, page) = acme.send("GET", "owner", &acme.path("/members"), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("user_id"), s("email"), s("name"), s("role"))
        })
        .collect()
}

#[tokio::test]
async fn cached_profiles_and_member_lists_follow_every_write() {
    let acme = Acme::start().await;
    let member = acme.id("member").to_string();
    let viewer = acme.id("viewer").to_string();
    let row = |list: &[(String, String, String, String)], id: &str| list.iter().find(|m| m.0 == id).cloned();

    // A name change shows in the profile and in every list the user is in.
    let before = me_json(&acme.app, acme.token("member")).await;
    let listed = members(&acme).await;
    assert_eq!(
        row(&listed, &member).map(|m| m.2),
        before["name"].as_str().map(String::from)
    );
    let (status, _) = acme
        .send(
            "PATCH",
            "member",
            "/api/auth/me",
            Some(json!({"name": "Renamed Member"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me_json(&acme.app, acme.token("member")).await["name"],
        "Renamed Member"
    );
    assert_eq!(
        row(&members(&acme).await, &member).map(|m| m.2).as_deref(),
        Some("Renamed Member")
    );

    // Staff status granted by staff shows in the profile.
    assert_eq!(
        me_json(&acme.app, acme.token("member")).await["is_platform_admin"],
        false
    );
    let (status, _) = acme
        .send(
            "POST",
            "stranger",
            &format!("/api/admin/users/{member}/staff"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    let (status, body) = acme.send("GET", "member", "/api/auth/me", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_platform_admin"], true);

    // A role change and a removal show in the list.
    let (status, _) = acme
        .send(
            "PATCH",
            "admin",
            &acme.path(&format!("/members/{viewer}")),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        row(&members(&acme).await, &viewer).map(|m| m.3).as_deref(),
        Some("member")
    );
    let (status, _) = acme
        .send("DELETE", "admin", &acme.path(&format!("/members/{viewer}")), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(row(&members(&acme).await, &viewer), None);

    // A new member through an accepted invitation.
    let email = "newcomer@example.com";
    assert!(members(&acme).await.iter().all(|m| m.1 != email));
    let (_, newcomer) = acme.join(email).await;
    let newcomer = newcomer.to_string();
    assert_eq!(
        row(&members(&acme).await, &newcomer).map(|m| m.1).as_deref(),
        Some(email)
    );

    // Erasure by staff: gone from the list, whose cache knew the email.
    let (status, _) = acme
        .send(
            "DELETE",
            "stranger",
            &format!("/api/admin/users/{newcomer}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let listed = members(&acme).await;
    assert!(
        listed.iter().all(|m| m.0 != newcomer && m.1 != email),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_verified_email_shows_in_the_cached_profile() {
    let acme = Acme::start().await;
    let email = "verify.later@example.com";
    register(&acme.app, email).await;
    let (access, _) = tokens(&acme.app, email, "a decent passphrase").await;
    assert_eq!(me_json(&acme.app, &access).await["email_verified"], false);
    let token = crate::auth::outbox_token(&acme.app, email, "verify-email").expect("verification link");
    let resp = post(&acme.app, "/api/auth/verify-email", json!({ "token": token })).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(me_json(&acme.app, &access).await["email_verified"], true);
}

async fn owner_flags(acme: &Acme) -> serde_json::Value {
    let (status, body) = acme.send("GET", "owner", &acme.path("/flags"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn cached_flag_lists_follow_plan_changes_and_new_flags() {
    let acme = Acme::start().await;
    assert_eq!(owner_flags(&acme).await["beta-reports"], true, "Acme is on Pro");
    // The plan lives in billing's tables, which billing names through the
    // entitlements seam for caches like this one to watch.
    let (status, body) = acme
        .send(
            "PUT",
            "stranger",
            &format!("/api/admin/orgs/{}/billing/subscription", acme.org),
            Some(json!({"plan_id": "free"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(owner_flags(&acme).await["beta-reports"], false);

    // A new flag, targeting Acme by name.
    let (status, body) = acme
        .send(
            "POST",
            "stranger",
            "/api/admin/flags",
            Some(json!({
                "key": "acme-only",
                "value_type": "boolean",
                "default_value": false,
                "rules": [{"kind": "attribute", "subject": "org", "attribute": "name",
                           "operator": "one_of", "values": ["Acme Renamed"], "value": true}]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(owner_flags(&acme).await["acme-only"], false);
    // A rename is a change to `organizations`, whoever makes it.
    let (status, _) = acme
        .send(
            "PATCH",
            "owner",
            &acme.path(""),
            Some(json!({"name": "Acme Renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(owner_flags(&acme).await["acme-only"], true);
}
