//! Feature flags end to end: staff management, evaluation per rule kind, overrides,
//! the kill switch, cache invalidation, and evaluation without database queries.

use plinth_core::platform::flags::FlagContext;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::acme::Acme;

async fn flags_of(acme: &Acme, who: &str, org: uuid::Uuid) -> Value {
    let (status, body) = acme
        .send("GET", who, &format!("/api/orgs/{org}/flags"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn loads(metrics: &str, cache: &str) -> i64 {
    let prefix = format!("plinth_cache_loads{{name=\"{cache}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no loads figure for {cache}"))
}

#[tokio::test]
async fn demo_flags_evaluate_by_org_user_role_and_email() {
    let acme = Acme::start().await;
    let owner = flags_of(&acme, "owner", acme.org).await;
    let member = flags_of(&acme, "member", acme.org).await;
    assert_eq!(owner["new-dashboard"], true, "orgs rule: Acme is targeted");
    assert_eq!(owner["welcome-message"], "Welcome back, Olivia!", "users rule");
    assert_eq!(member["welcome-message"], "Welcome!");
    assert_eq!(owner["max-projects"], 10, "attribute rule on the role");
    assert_eq!(member["max-projects"], 3);
    assert_eq!(
        owner["beta-reports"], true,
        "plans rule: the demo puts Acme on Pro"
    );
    assert_eq!(owner["staff-tools"], false);
    let globex = flags_of(&acme, "outsider", acme.globex).await;
    assert_eq!(globex["new-dashboard"], false);
    assert_eq!(globex["beta-reports"], false, "Globex is on the free plan");
    // Staff's own org: the email-domain attribute matches.
    let (_, org) = acme
        .send(
            "POST",
            "stranger",
            "/api/orgs",
            Some(json!({"name": "Staff Lab"})),
        )
        .await;
    let staff = flags_of(&acme, "stranger", crate::acme::uuid_of(&org["id"])).await;
    assert_eq!(staff["staff-tools"], true);
    // The rollout is the same on every read.
    for _ in 0..3 {
        assert_eq!(
            flags_of(&acme, "viewer", acme.org).await["checkout-v2"],
            owner["checkout-v2"]
        );
    }
}

#[tokio::test]
async fn members_of_another_org_get_404_and_single_flags_explain_only_to_staff() {
    let acme = Acme::start().await;
    let (status, _) = acme.send("GET", "outsider", &acme.path("/flags"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, one) = acme
        .send("GET", "member", &acme.path("/flags/new-dashboard"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, json!({"key": "new-dashboard", "value": true}));
    let (status, _) = acme
        .send("GET", "member", &acme.path("/flags/no-such-flag"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, explained) = acme
        .send(
            "GET",
            "stranger",
            &format!("/api/admin/flags/new-dashboard/evaluate?org_id={}", acme.org),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        explained["reason"],
        json!({"kind": "rule", "rule_index": 0, "rule_kind": "orgs"})
    );
}

#[tokio::test]
async fn only_platform_staff_manage_flags() {
    let acme = Acme::start().await;
    for who in ["owner", "admin", "member", "outsider"] {
        assert_eq!(
            acme.send("GET", who, "/api/admin/flags", None).await.0,
            StatusCode::FORBIDDEN,
            "{who}"
        );
        let create = acme
            .send(
                "POST",
                who,
                "/api/admin/flags",
                Some(json!({"key": "x", "value_type": "boolean", "default_value": true})),
            )
            .await;
        assert_eq!(create.0, StatusCode::FORBIDDEN, "{who}");
    }
    let anonymous = acme
        .app
        .client
        .get(acme.app.url("/api/admin/flags"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, list) = acme.send("GET", "stranger", "/api/admin/flags", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["items"].as_array().expect("items").len() >= 6);
}

#[tokio::test]
async fn definitions_are_validated_and_bad_rules_are_named() {
    let acme = Acme::start().await;
    let create = |body: Value| acme.send("POST", "stranger", "/api/admin/flags", Some(body));
    let (status, body) =
        create(json!({"key": "Bad Key", "value_type": "boolean", "default_value": "yes"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["key", "default_value"]);
    let (status, body) = create(json!({
        "key": "rules-check", "value_type": "number", "default_value": 1,
        "rules": [
            {"kind": "rollout", "percentage": 120, "value": 2},
            {"kind": "attribute", "subject": "org", "attribute": "email", "operator": "one_of", "values": ["x"], "value": 2},
            {"kind": "plans", "plans": ["pro"], "value": "two"}
        ]
    }))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["rules[0].percentage", "rules[1].attribute", "rules[2].value"]
    );
    // Outside the document's schema (an unknown kind, operator or subject): 400.
    for rule in [
        json!({"kind": "sometimes", "value": 2}),
        json!({"kind": "attribute", "subject": "team", "attribute": "id", "operator": "one_of", "values": ["x"], "value": 2}),
        json!({"kind": "attribute", "subject": "org", "attribute": "id", "operator": "like", "values": ["x"], "value": 2}),
        json!({"kind": "rollout", "percentage": 5, "by": "team", "value": 2}),
    ] {
        let (status, body) = create(json!({
            "key": "rules-check", "value_type": "number", "default_value": 1, "rules": [rule]
        }))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rule}: {body}");
        assert_eq!(body["type"], "/problems/bad-request");
    }
    let (status, _) =
        create(json!({"key": "new-dashboard", "value_type": "boolean", "default_value": false})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, created) =
        create(json!({"key": "ok-flag", "value_type": "json", "default_value": {"a": [1]}})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["enabled"], true);
    assert_eq!(
        acme.send("GET", "stranger", "/api/admin/flags/nope", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

/// new-dashboard for the member, read one flag at a time and in the (cached) list,
/// which must agree.
async fn value(acme: &Acme) -> Value {
    let one = acme
        .send("GET", "member", &acme.path("/flags/new-dashboard"), None)
        .await
        .1["value"]
        .clone();
    let listed = flags_of(acme, "member", acme.org).await["new-dashboard"].clone();
    assert_eq!(one, listed, "the flag list disagrees with the single flag");
    one
}

#[tokio::test]
async fn overrides_beat_rules_the_kill_switch_beats_all_and_changes_apply_at_once() {
    let acme = Acme::start().await;
    assert_eq!(value(&acme).await, true);
    let override_path = format!("/api/admin/flags/new-dashboard/overrides/{}", acme.org);
    let bad = acme
        .send("PUT", "stranger", &override_path, Some(json!({"value": "nope"})))
        .await;
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY);
    let set = acme
        .send("PUT", "stranger", &override_path, Some(json!({"value": false})))
        .await;
    assert_eq!(set.0, StatusCode::OK);
    assert_eq!(value(&acme).await, false, "the override beats the orgs rule");
    assert_eq!(
        acme.send("DELETE", "stranger", &override_path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(value(&acme).await, true);
    let unknown_org = format!(
        "/api/admin/flags/new-dashboard/overrides/{}",
        uuid::Uuid::now_v7()
    );
    assert_eq!(
        acme.send("PUT", "stranger", &unknown_org, Some(json!({"value": true})))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let off = acme
        .send(
            "PATCH",
            "stranger",
            "/api/admin/flags/new-dashboard",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(off.0, StatusCode::OK);
    assert_eq!(value(&acme).await, false, "kill switch on the next request");
    acme.send(
        "PATCH",
        "stranger",
        "/api/admin/flags/new-dashboard",
        Some(json!({"enabled": true})),
    )
    .await;
    // Rule order: a new first rule wins.
    let reorder = acme
        .send(
            "PATCH",
            "stranger",
            "/api/admin/flags/new-dashboard",
            Some(json!({"rules": [
                {"kind": "attribute", "subject": "user", "attribute": "role", "operator": "one_of", "values": ["member"], "value": false},
                {"kind": "orgs", "org_ids": [acme.org], "value": true}
            ]})),
        )
        .await;
    assert_eq!(reorder.0, StatusCode::OK, "{}", reorder.1);
    assert_eq!(value(&acme).await, false);
    let owner_view = acme
        .send("GET", "owner", &acme.path("/flags/new-dashboard"), None)
        .await
        .1;
    assert_eq!(owner_view["value"], true);

    let (_, history) = acme
        .send("GET", "stranger", "/api/admin/flags/new-dashboard/history", None)
        .await;
    let actions: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|h| h["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "flag.updated",
            "flag.updated",
            "flag.updated",
            "flag.override_removed",
            "flag.override_set"
        ]
    );
    let last = &history["items"][0]["details"];
    assert_eq!(last["before"]["rules"][0]["kind"], "orgs");
    assert_eq!(last["after"]["rules"][0]["kind"], "attribute");

    assert_eq!(
        acme.send("DELETE", "stranger", "/api/admin/flags/new-dashboard", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert!(
        flags_of(&acme, "member", acme.org)
            .await
            .get("new-dashboard")
            .is_none()
    );
}

#[tokio::test]
async fn a_warm_evaluation_queries_no_database() {
    let acme = Acme::start().await;
    flags_of(&acme, "member", acme.org).await;
    let metrics = |acme: &Acme| {
        let (client, url) = (acme.app.client.clone(), acme.app.url("/metrics"));
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        }
    };
    let before = metrics(&acme).await;
    for _ in 0..50 {
        flags_of(&acme, "member", acme.org).await;
        acme.send("GET", "member", &acme.path("/flags/new-dashboard"), None)
            .await;
    }
    let after = metrics(&acme).await;
    for cache in [
        "flags.definitions",
        "flags.orgs",
        "flags.users",
        "flags.evaluations",
        "memberships",
        "sessions",
    ] {
        assert_eq!(
            loads(&before, cache),
            loads(&after, cache),
            "{cache} went to the database"
        );
    }
    assert!(loads(&after, "flags.definitions") >= 1);
}

#[tokio::test]
async fn other_areas_evaluate_through_core() {
    let acme = Acme::start().await;
    let ctx = FlagContext {
        org_id: acme.org,
        user_id: Some(acme.id("owner")),
        role: None,
    };
    let platform = &acme.app.platform;
    assert_eq!(
        platform.flag(&ctx, "welcome-message").await.expect("flag"),
        Some(json!("Welcome back, Olivia!"))
    );
    assert!(platform.flag_enabled(&ctx, "new-dashboard").await.expect("flag"));
    assert_eq!(platform.flag(&ctx, "unknown").await.expect("flag"), None);
}
