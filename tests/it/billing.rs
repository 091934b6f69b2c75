//! Billing end to end: plans, checkout and portal against a Stripe stand-in over
//! real HTTP, the subscription lifecycle through signed webhooks (duplicates, out of
//! order, bad signatures, an outage), seat limits, usage and local invoices.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::acme::Acme;
use crate::harness::{TestApp, eventually};
use crate::stripe_mock::{StripeMock, fixture};

pub const SECRET: &str = "whsec_plinth_test_secret";
const PRICE: &str = "price_pro_monthly";

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The Stripe-Signature header exactly as Stripe computes it.
pub fn stripe_signature(body: &str, secret: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({
        "id": id, "object": "event", "api_version": plinth_billing::stripe_api_version(),
        "created": created, "type": kind, "livemode": false, "pending_webhooks": 1,
        "data": { "object": object },
    })
    .to_string()
}

/// A subscription shaped as Stripe's fixture, for the org, on the Pro price.
fn subscription(org: Uuid, customer: &str, status: &str, cancel: bool) -> Value {
    let mut sub = fixture("subscription");
    let start = now() - 86_400;
    sub["id"] = json!("sub_test1");
    sub["customer"] = json!(customer);
    sub["status"] = json!(status);
    sub["cancel_at_period_end"] = json!(cancel);
    sub["metadata"] = json!({ "org_id": org.to_string() });
    sub["trial_end"] = if status == "trialing" {
        json!(start + 14 * 86_400)
    } else {
        Value::Null
    };
    let item = &mut sub["items"]["data"][0];
    item["id"] = json!("si_test1");
    item["price"]["id"] = json!(PRICE);
    item["quantity"] = json!(4);
    item["current_period_start"] = json!(start);
    item["current_period_end"] = json!(start + 30 * 86_400);
    sub
}

async fn webhook(acme: &Acme, body: &str, signature: Option<String>) -> (StatusCode, Value) {
    let mut req = acme
        .app
        .client
        .post(acme.app.url("/api/webhooks/stripe"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string());
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn deliver(acme: &Acme, body: &str) -> Value {
    let (status, ack) = webhook(acme, body, Some(stripe_signature(body, SECRET, now()))).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    ack
}

async fn stripe_acme(mock: &StripeMock) -> Acme {
    mock.put_price(PRICE);
    let acme = Acme::start_with(
        TestApp::builder()
            .var("STRIPE_SECRET_KEY", "sk_test_plinth")
            .var("STRIPE_WEBHOOK_SECRET", &format!("whsec_old_rotated, {SECRET}"))
            .var("STRIPE_API_BASE", &mock.url)
            .var("APP_URL", "https://app.example.com"),
    )
    .await;
    let (status, plan) = acme
        .send(
            "PATCH",
            "stranger",
            "/api/admin/billing/plans/pro",
            Some(json!({"stripe_price_id": PRICE})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    acme
}

/// Staff put Acme on a plan directly (local subscription).
async fn set_plan(acme: &Acme, plan: &str) {
    let path = format!("/api/admin/orgs/{}/billing/subscription", acme.org);
    let (status, body) = acme
        .send("PUT", "stranger", &path, Some(json!({"plan_id": plan})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn subscription_of(acme: &Acme) -> Value {
    let (status, sub) = acme
        .send("GET", "viewer", &acme.path("/billing/subscription"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    sub
}

async fn wait_status(acme: &Acme, status: &str) -> Value {
    eventually(&format!("the subscription is {status}"), || async {
        subscription_of(acme).await["status"] == status
    })
    .await;
    subscription_of(acme).await
}

fn inbox_count(acme: &Acme) -> i64 {
    acme.app
        .conn()
        .query_row("SELECT count(*) FROM billing_webhook_events", args![], |r| {
            r.get(0)
        })
        .expect("count")
}

#[tokio::test]
async fn plans_are_public_and_hide_stripe_ids() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    let resp = acme.app.get("/api/billing/plans").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let plans: Value = resp.json().await.expect("json");
    let ids: Vec<&str> = plans["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["free", "pro", "business"]);
    assert_eq!(plans["items"][1]["purchasable"], true);
    assert!(plans["items"][1].get("stripe_price_id").is_none());
    assert_eq!(plans["items"][0]["is_default"], true);
}

#[tokio::test]
async fn checkout_and_portal_create_stripe_sessions_for_admins_only() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    let body = json!({"plan_id": "pro"});
    for (who, status) in [("member", 403), ("viewer", 403), ("outsider", 404)] {
        let (got, _) = acme
            .send("POST", who, &acme.path("/billing/checkout"), Some(body.clone()))
            .await;
        assert_eq!(got.as_u16(), status, "{who}");
    }
    let (status, portal) = acme
        .send("POST", "owner", &acme.path("/billing/portal"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no customer yet: {portal}");
    let (status, bad) = acme
        .send(
            "POST",
            "admin",
            &acme.path("/billing/checkout"),
            Some(json!({"plan_id": "pro", "success_url": "https://evil.example/steal"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "open redirect refused: {bad}"
    );
    assert!(
        mock.calls("POST", "/v1/customers").is_empty(),
        "nothing sent to Stripe for refused requests"
    );

    let (status, checkout) = acme
        .send(
            "POST",
            "admin",
            &acme.path("/billing/checkout"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checkout}");
    assert_eq!(checkout["url"], "https://checkout.stripe.test/c/pay/cs_test_1");
    let org = acme.org.to_string();
    let customers = mock.calls("POST", "/v1/customers");
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].param("metadata[org_id]"), Some(org.as_str()));
    assert_eq!(
        customers[0].idempotency_key.as_deref(),
        Some(format!("plinth-customer-{org}").as_str())
    );
    let session = &mock.calls("POST", "/v1/checkout/sessions")[0];
    assert_eq!(session.param("mode"), Some("subscription"));
    assert_eq!(session.param("client_reference_id"), Some(org.as_str()));
    assert_eq!(session.param("metadata[org_id]"), Some(org.as_str()));
    assert_eq!(
        session.param("subscription_data[metadata][org_id]"),
        Some(org.as_str())
    );
    assert_eq!(session.param("line_items[0][price]"), Some(PRICE));
    assert_eq!(
        session.param("line_items[0][quantity]"),
        Some("4"),
        "one seat per member"
    );
    assert_eq!(session.param("customer"), Some("cus_test1"));
    assert!(
        session
            .param("success_url")
            .is_some_and(|u| u.starts_with("https://app.example.com/"))
    );

    // A second checkout reuses the customer.
    let (status, _) = acme
        .send("POST", "owner", &acme.path("/billing/checkout"), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.calls("POST", "/v1/customers").len(), 1);

    let (status, portal) = acme
        .send("POST", "owner", &acme.path("/billing/portal"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{portal}");
    assert_eq!(portal["url"], "https://billing.stripe.test/p/session/test_1");
    let call = &mock.calls("POST", "/v1/billing_portal/sessions")[0];
    assert_eq!(call.param("customer"), Some("cus_test1"));

    let audit: i64 = acme
        .app
        .conn()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action IN ('billing.checkout_started', 'billing.portal_opened')",
            args![],
            |r| r.get(0),
        )
        .expect("audit");
    assert_eq!(audit, 3);
}

#[tokio::test]
async fn lifecycle_trial_active_past_due_canceled_through_webhooks() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    // Acme starts on the free plan in this test.
    set_plan(&acme, "free").await;
    let t = now() - 1000;
    let steps = [
        ("evt_1", "customer.subscription.created", "trialing", "pro"),
        ("evt_2", "customer.subscription.updated", "active", "pro"),
        ("evt_3", "customer.subscription.updated", "past_due", "pro"),
        ("evt_4", "customer.subscription.deleted", "canceled", "free"),
    ];
    for (i, (id, kind, status, effective)) in steps.into_iter().enumerate() {
        let sub = subscription(acme.org, "cus_life", status, false);
        mock.put_subscription(sub.clone());
        deliver(&acme, &event(id, kind, t + i as i64 * 10, sub)).await;
        let view = wait_status(&acme, status).await;
        assert_eq!(view["plan"]["id"], "pro", "{view}");
        assert_eq!(view["effective_plan_id"], effective, "{status}: {view}");
        assert_eq!(view["mode"], "stripe");
        if status == "trialing" {
            assert!(view["trial_end"].is_string());
        }
        if status == "past_due" {
            assert!(
                view["grace_until"].is_string(),
                "past due keeps the plan for the grace period"
            );
            assert_eq!(view["seats"]["limit"], 25);
        }
    }
    // Entitlements follow: on the free plan again, the 5-seat limit applies.
    let view = subscription_of(&acme).await;
    assert_eq!(view["seats"]["limit"], 5);
    let (_, activity) = acme.send("GET", "viewer", &acme.path("/activity"), None).await;
    let billing_items = activity["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["action"] == "subscription.changed")
        .count();
    assert!(billing_items >= 4, "{activity}");
    let audited: i64 = acme
        .app
        .conn()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'subscription.changed'",
            args![],
            |r| r.get(0),
        )
        .expect("audit");
    assert!(audited >= 4);
    let processed: i64 = acme
        .app
        .conn()
        .query_row(
            "SELECT count(*) FROM billing_webhook_events WHERE processed_at IS NOT NULL",
            args![],
            |r| r.get(0),
        )
        .expect("inbox");
    assert_eq!(processed, 4);
}

#[tokio::test]
async fn duplicate_and_out_of_order_deliveries_change_nothing() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    let t = now() - 1000;
    let active = event(
        "evt_new",
        "customer.subscription.updated",
        t + 50,
        subscription(acme.org, "cus_o", "active", false),
    );
    let first = deliver(&acme, &active).await;
    assert_eq!(first["duplicate"], false);
    eventually("the subscription is applied", || async {
        subscription_of(&acme).await["has_billing_account"] == true
    })
    .await;
    let again = deliver(&acme, &active).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(inbox_count(&acme), 1);

    // An older state arriving late is recorded and skipped.
    let stale = event(
        "evt_old",
        "customer.subscription.updated",
        t,
        subscription(acme.org, "cus_o", "past_due", false),
    );
    deliver(&acme, &stale).await;
    let conn = acme.app.conn();
    eventually("the stale event is processed", || async {
        conn.query_row(
            "SELECT outcome FROM billing_webhook_events WHERE id = 'evt_old'",
            args![],
            |r| r.get::<Option<String>>(0),
        )
        .ok()
        .flatten()
        .is_some()
    })
    .await;
    let outcome: String = conn
        .query_row(
            "SELECT outcome FROM billing_webhook_events WHERE id = 'evt_old'",
            args![],
            |r| r.get(0),
        )
        .expect("outcome");
    assert!(outcome.starts_with("stale"), "{outcome}");
    let (_, old) = acme
        .send(
            "GET",
            "stranger",
            "/api/admin/billing/webhook-events/evt_old",
            None,
        )
        .await;
    assert_eq!(old["outcome"], "stale", "{old}");
    assert_eq!(old["outcome_detail"], outcome.as_str());
    assert_eq!(subscription_of(&acme).await["status"], "active");

    // A tie (same second) is settled by reading Stripe's current state.
    let mut current = subscription(acme.org, "cus_o", "active", true);
    current["status"] = json!("active");
    mock.put_subscription(current);
    let tie = event(
        "evt_tie",
        "customer.subscription.updated",
        t + 50,
        subscription(acme.org, "cus_o", "past_due", false),
    );
    deliver(&acme, &tie).await;
    eventually("the tie is settled from Stripe", || async {
        subscription_of(&acme).await["cancel_at_period_end"] == true
    })
    .await;
    assert_eq!(subscription_of(&acme).await["status"], "active");
    assert!(!mock.calls("GET", "/v1/subscriptions/sub_test1").is_empty());
}

#[tokio::test]
async fn bad_stale_or_missing_signatures_are_refused_and_nothing_is_stored() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    let body = event(
        "evt_bad",
        "customer.subscription.updated",
        now(),
        subscription(acme.org, "cus_b", "active", false),
    );
    let cases = [
        Some(stripe_signature(&body, "whsec_wrong", now())),
        Some(stripe_signature(&body, SECRET, now() - 400)),
        Some(stripe_signature(&format!("{body} "), SECRET, now())),
        Some("t=abc,v1=zz".to_string()),
        None,
    ];
    for sig in cases {
        let (status, problem) = webhook(&acme, &body, sig.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sig:?}: {problem}");
        assert_eq!(problem["type"], "/problems/bad-request");
    }
    assert_eq!(inbox_count(&acme), 0);
    let jobs: i64 = acme
        .app
        .conn()
        .query_row(
            "SELECT count(*) FROM jobs WHERE kind = 'billing.webhook'",
            args![],
            |r| r.get(0),
        )
        .expect("jobs");
    assert_eq!(jobs, 0);
    // Signed with the second of two rotated secrets: accepted.
    deliver(&acme, &body).await;
    assert_eq!(inbox_count(&acme), 1);
}

#[tokio::test]
async fn a_stripe_outage_fails_fast_on_requests_and_jobs_retry_until_it_ends() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    mock.set_down(true);
    let (status, problem) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/billing/checkout"),
            Some(json!({"plan_id": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");

    // checkout.session.completed needs the subscription from Stripe.
    mock.put_subscription(subscription(acme.org, "cus_out", "active", false));
    let mut session = fixture("checkout.session");
    session["id"] = json!("cs_out");
    session["client_reference_id"] = json!(acme.org.to_string());
    session["customer"] = json!("cus_out");
    session["subscription"] = json!("sub_test1");
    session["metadata"] = json!({});
    deliver(
        &acme,
        &event("evt_out", "checkout.session.completed", now(), session),
    )
    .await;
    let conn = acme.app.conn();
    eventually("a failed attempt is recorded", || async {
        conn.query_row(
            "SELECT last_error FROM billing_webhook_events WHERE id = 'evt_out'",
            args![],
            |r| r.get::<Option<String>>(0),
        )
        .ok()
        .flatten()
        .is_some()
    })
    .await;
    assert_ne!(subscription_of(&acme).await["status"], "canceled");
    mock.set_down(false);
    eventually("the checkout is applied after the outage", || async {
        subscription_of(&acme).await["has_billing_account"] == true
    })
    .await;
    assert_eq!(subscription_of(&acme).await["mode"], "stripe");
    let (attempts, processed): (i64, Option<String>) = conn
        .query_row(
            "SELECT attempts, processed_at FROM billing_webhook_events WHERE id = 'evt_out'",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("inbox");
    assert!(attempts >= 2, "retried: {attempts}");
    assert!(processed.is_some());
    let linked: String = conn
        .query_row(
            "SELECT org_id FROM billing_customers WHERE customer_id = 'cus_out'",
            args![],
            |r| r.get(0),
        )
        .expect("customer linked");
    assert_eq!(linked, acme.org.to_string());
}

#[tokio::test]
async fn usage_is_recorded_once_per_key_reported_once_and_blocked_past_the_quota() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    let usage = acme.path("/usage");
    let record = |qty: i64, key: &str, who: &'static str| {
        acme.send(
            "POST",
            who,
            &usage,
            Some(json!({"metric": "api_calls", "quantity": qty, "idempotency_key": key})),
        )
    };
    // Free plan: 1,000 api_calls, blocking.
    set_plan(&acme, "free").await;
    let (status, first) = record(600, "k1", "member").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["period_total"], 600);
    let (status, replay) = record(600, "k1", "member").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(replay["created"], false);
    let (status, _) = record(5, "k1", "member").await;
    assert_eq!(status, StatusCode::CONFLICT, "a key reused with other values");
    let (status, over) = record(401, "k2", "member").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{over}");
    let (status, _) = record(400, "k3", "viewer").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, bad) = record(0, "k4", "member").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    let (status, _) = record(400, "k5", "member").await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, summary) = acme.send("GET", "viewer", &usage, None).await;
    let api = &summary["metrics"][0];
    assert_eq!(
        (
            api["metric"].as_str(),
            api["used"].as_i64(),
            api["remaining"].as_i64()
        ),
        (Some("api_calls"), Some(1000), Some(0))
    );
    let rows: i64 = acme
        .app
        .conn()
        .query_row("SELECT count(*) FROM tenant_usage_events", args![], |r| r.get(0))
        .expect("rows");
    assert_eq!(rows, 2);

    // With a Stripe customer, usage goes to Stripe as meter events, once each, even
    // across an outage.
    let sub = subscription(acme.org, "cus_usage", "active", false);
    mock.put_subscription(sub.clone());
    deliver(
        &acme,
        &event("evt_u", "customer.subscription.created", now(), sub),
    )
    .await;
    eventually("the subscription is applied", || async {
        subscription_of(&acme).await["has_billing_account"] == true
    })
    .await;
    mock.set_down(true);
    for i in 0..5 {
        let (status, _) = record(10, &format!("m{i}"), "member").await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let conn = acme.app.conn();
    eventually("reports fail during the outage", || async {
        conn.query_row(
            "SELECT count(*) FROM jobs WHERE kind = 'billing.report_usage' AND attempts > 0",
            args![],
            |r| r.get::<i64>(0),
        )
        .unwrap_or(0)
            == 5
    })
    .await;
    mock.set_down(false);
    eventually("every usage event is reported", || async {
        conn.query_row(
            "SELECT count(*) FROM tenant_usage_events WHERE reported_at IS NOT NULL",
            args![],
            |r| r.get::<i64>(0),
        )
        .unwrap_or(0)
            == 5
    })
    .await;
    let events = mock.meter_events();
    assert_eq!(events.len(), 5);
    let posts = mock.calls("POST", "/v1/billing/meter_events");
    let ok_identifiers: std::collections::HashSet<_> =
        posts.iter().filter_map(|c| c.param("identifier")).collect();
    assert_eq!(
        ok_identifiers.len(),
        5,
        "one identifier per usage event, however often retried"
    );
    for e in events.values() {
        assert_eq!(e["payload"]["stripe_customer_id"], "cus_usage");
        assert_eq!(e["payload"]["value"], "10");
        assert_eq!(e["event_name"], "api_calls");
    }
}

#[tokio::test]
async fn seat_limits_come_from_the_plan() {
    let acme = Acme::start().await;
    set_plan(&acme, "free").await;
    let invitations = acme.path("/invitations");
    let invite = |email: &'static str| {
        acme.send(
            "POST",
            "owner",
            &invitations,
            Some(json!({"email": email, "role": "viewer"})),
        )
    };
    assert_eq!(invite("fifth@example.com").await.0, StatusCode::CREATED);
    let (status, problem) = invite("sixth@example.com").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
    let sub = acme
        .send("GET", "viewer", &acme.path("/billing/subscription"), None)
        .await
        .1;
    assert_eq!(sub["seats"]["limit"], 5);
    assert_eq!(sub["mode"], "local");
    // Upgrading lifts it.
    set_plan(&acme, "pro").await;
    assert_eq!(invite("sixth@example.com").await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn local_mode_issues_numbered_immutable_invoices_at_period_end() {
    let acme = Acme::start().await;
    let (status, _) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/billing/checkout"),
            Some(json!({"plan_id": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no Stripe in local mode");
    // Pro: $29, 100,000 api_calls included, then 1 cent per 100.
    set_plan(&acme, "pro").await;
    let (status, _) = acme
        .send(
            "POST",
            "member",
            &acme.path("/usage"),
            Some(json!({"metric": "api_calls", "quantity": 100_250, "idempotency_key": "big"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "billed overage is not blocked");
    let close = format!("/api/admin/orgs/{}/billing/close-period", acme.org);
    let (status, closed) = acme.send("POST", "stranger", &close, None).await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    let invoice = &closed["invoice"];
    assert_eq!(invoice["source"], "local");
    assert_eq!(invoice["status"], "open");
    assert_eq!(invoice["total"], 2900 + 3, "plan price plus 3 units of overage");
    assert_eq!(invoice["lines"].as_array().map(Vec::len), Some(2));
    let first_number = invoice["number"].as_str().expect("number").to_string();
    assert!(first_number.starts_with("INV-"));

    // The next period starts empty; another close issues the next number.
    let (_, usage) = acme.send("GET", "viewer", &acme.path("/usage"), None).await;
    assert_eq!(usage["metrics"][0]["used"], 0);
    let (_, second) = acme.send("POST", "stranger", &close, None).await;
    let n = |s: &str| s.trim_start_matches("INV-").parse::<u32>().expect("n");
    assert_eq!(
        n(second["invoice"]["number"].as_str().expect("number")),
        n(&first_number) + 1
    );

    let (status, list) = acme
        .send("GET", "admin", &acme.path("/billing/invoices"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let (status, _) = acme
        .send("GET", "member", &acme.path("/billing/invoices"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let id = invoice["id"].as_str().expect("id");
    let html = acme
        .app
        .client
        .get(acme.app.url(&acme.path(&format!("/billing/invoices/{id}/html"))))
        .header("authorization", format!("Bearer {}", acme.token("owner")))
        .send()
        .await
        .expect("html");
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let page = html.text().await.expect("text");
    assert!(page.contains(&first_number) && page.contains("29.03"), "{page}");
    // Another org cannot read it.
    let (status, _) = acme
        .send(
            "GET",
            "outsider",
            &format!("/api/orgs/{}/billing/invoices/{id}", acme.org),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Finalized invoices are immutable, even to direct SQL.
    let changed = acme
        .app
        .conn()
        .execute("UPDATE tenant_invoices SET total = 1 WHERE id = ?1", args![id]);
    assert!(changed.is_err(), "a finalized invoice was changed");

    // Cancel at period end, then the close moves the org to the default plan.
    let (status, sub) = acme
        .send("POST", "owner", &acme.path("/billing/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    assert_eq!(sub["cancel_at_period_end"], true);
    let (status, sub) = acme
        .send("POST", "admin", &acme.path("/billing/resume"), None)
        .await;
    assert_eq!(
        (status, &sub["cancel_at_period_end"]),
        (StatusCode::OK, &json!(false))
    );
    acme.send("POST", "owner", &acme.path("/billing/cancel"), None)
        .await;
    acme.send("POST", "stranger", &close, None).await;
    let sub = acme
        .send("GET", "viewer", &acme.path("/billing/subscription"), None)
        .await
        .1;
    assert_eq!(sub["plan"]["id"], "free");
}

#[tokio::test]
async fn staff_see_the_inbox_and_reprocess_events() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    let sub = subscription(acme.org, "cus_r", "active", false);
    mock.put_subscription(sub.clone());
    deliver(
        &acme,
        &event("evt_r", "customer.subscription.created", now(), sub),
    )
    .await;
    eventually("the subscription is applied", || async {
        subscription_of(&acme).await["has_billing_account"] == true
    })
    .await;
    let (status, page) = acme
        .send("GET", "stranger", "/api/admin/billing/webhook-events", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["id"], "evt_r");
    assert!(page["items"][0]["processed_at"].is_string());
    let (status, _) = acme
        .send("GET", "owner", "/api/admin/billing/webhook-events", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, one) = acme
        .send("GET", "stranger", "/api/admin/billing/webhook-events/evt_r", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["payload"]["id"], "evt_r");
    let (status, again) = acme
        .send(
            "POST",
            "stranger",
            "/api/admin/billing/webhook-events/evt_r/reprocess",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "applied", "{again}");
    assert!(
        again["detail"].as_str().is_some_and(|o| o.starts_with("applied")),
        "{again}"
    );
    mock.set_down(true);
    let (status, failed) = acme
        .send(
            "POST",
            "stranger",
            "/api/admin/billing/webhook-events/evt_r/reprocess",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(
        failed["detail"]
            .as_str()
            .is_some_and(|o| o.contains("unavailable")),
        "{failed}"
    );
    mock.set_down(false);
    let (status, _) = acme
        .send(
            "POST",
            "stranger",
            "/api/admin/billing/webhook-events/evt_none/reprocess",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_refusal_from_stripe_is_a_502_problem_with_stripes_message() {
    let mock = StripeMock::start().await;
    let acme = stripe_acme(&mock).await;
    let (status, _) = acme
        .send(
            "PATCH",
            "stranger",
            "/api/admin/billing/plans/business",
            Some(json!({"stripe_price_id": "price_deleted_in_dashboard"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let resp = acme
        .app
        .client
        .post(acme.app.url(&acme.path("/billing/checkout")))
        .bearer_auth(acme.token("owner"))
        .json(&json!({"plan_id": "business"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: Value = resp.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/upstream-error");
    assert_eq!(problem["status"], 502);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("No such price: 'price_deleted_in_dashboard'")),
        "{problem}"
    );
    // The subscription is untouched and Pro still sells.
    assert_eq!(subscription_of(&acme).await["plan"]["id"], "pro");
    let (status, _) = acme
        .send(
            "POST",
            "owner",
            &acme.path("/billing/checkout"),
            Some(json!({"plan_id": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Runs the real binary without blocking the runtime that serves the stand-in.
async fn plinth_cli(args: &[&str], vars: Vec<(String, String)>) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = crate::cli::plinth(&args, &vars);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("cli")
}

#[tokio::test]
async fn sync_plans_puts_the_paid_catalogue_on_sale_in_stripe_once() {
    let mock = StripeMock::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = crate::harness::database_url(dir.path());
    let stripe_vars = vec![
        ("DATABASE_URL".to_string(), db.clone()),
        ("STRIPE_SECRET_KEY".to_string(), "sk_test_plinth".to_string()),
        ("STRIPE_WEBHOOK_SECRET".to_string(), SECRET.to_string()),
        ("STRIPE_API_BASE".to_string(), mock.url.clone()),
    ];
    let (ok, _, err) = plinth_cli(&["seed", "--demo"], vec![("DATABASE_URL".into(), db.clone())]).await;
    assert!(ok, "{err}");

    let (ok, dry, err) = plinth_cli(&["billing", "sync-plans", "--dry-run"], stripe_vars.clone()).await;
    assert!(ok, "{err}");
    assert!(dry.contains("free: free, nothing to sell"), "{dry}");
    assert!(
        dry.contains("pro: would create product plinth_pro and a price of 2900 usd (minor units) per month"),
        "{dry}"
    );
    assert!(
        dry.contains("business: would create product plinth_business"),
        "{dry}"
    );
    assert!(
        mock.state.lock().expect("state").calls.is_empty(),
        "a dry run sends nothing"
    );

    let (ok, out, err) = plinth_cli(&["billing", "sync-plans"], stripe_vars.clone()).await;
    assert!(ok, "{err}");
    assert_eq!(mock.calls("POST", "/v1/products").len(), 2, "{out}");
    let prices = mock.calls("POST", "/v1/prices");
    assert_eq!(prices.len(), 2, "{out}");
    let pro = prices
        .iter()
        .find(|c| c.param("product") == Some("plinth_pro"))
        .expect("pro's price");
    assert_eq!(pro.param("unit_amount"), Some("2900"));
    assert_eq!(pro.param("currency"), Some("usd"));
    assert_eq!(pro.param("recurring[interval]"), Some("month"));
    assert!(pro.idempotency_key.is_some());
    assert!(out.contains("pro: on sale as price_test"), "{out}");

    // Again: everything is on sale already, nothing is sent.
    let (ok, again, err) = plinth_cli(&["billing", "sync-plans"], stripe_vars.clone()).await;
    assert!(ok, "{err}");
    assert!(again.contains("pro: already sold as price_test"), "{again}");
    assert_eq!(mock.calls("POST", "/v1/prices").len(), 2);

    // Clearing a price and syncing again reuses the product and makes a new price.
    let conn = crate::harness::TestConn::open(dir.path());
    conn.execute(
        "UPDATE billing_plans SET stripe_price_id = NULL, price_cents = 3900 WHERE id = 'pro'",
        args![],
    )
    .expect("clear");
    let (ok, resync, err) = plinth_cli(&["billing", "sync-plans"], stripe_vars.clone()).await;
    assert!(ok, "{err}");
    assert!(resync.contains("pro: on sale as price_test3"), "{resync}");
    assert_eq!(mock.state.lock().expect("state").products.len(), 2);
    let audited: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'billing.plan_synced'",
            args![],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(audited, 3);

    // The synced catalogue sells: Checkout for Pro goes through on the new price.
    let mut builder = TestApp::builder()
        .in_dir(std::sync::Arc::new(dir))
        .var("APP_URL", "https://app.example.com");
    for (k, v) in &stripe_vars[1..] {
        builder = builder.var(k, v);
    }
    let app = builder.builtins().spawn().await;
    let (access, _) = crate::auth::tokens(&app, "owner@acme.test", crate::acme::DEMO_PASSWORD).await;
    let orgs: Value = app
        .client
        .get(app.url("/api/orgs"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("orgs")
        .json()
        .await
        .expect("json");
    let org = orgs["items"][0]["id"].as_str().expect("org").to_string();
    let checkout = app
        .client
        .post(app.url(&format!("/api/orgs/{org}/billing/checkout")))
        .bearer_auth(&access)
        .json(&json!({"plan_id": "pro"}))
        .send()
        .await
        .expect("checkout");
    assert_eq!(checkout.status(), StatusCode::OK);
    let sessions = mock.calls("POST", "/v1/checkout/sessions");
    assert_eq!(sessions[0].param("line_items[0][price]"), Some("price_test3"));
}

#[tokio::test]
async fn sync_plans_without_a_stripe_key_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let db = crate::harness::database_url(dir.path());
    let (ok, _, err) = plinth_cli(&["billing", "sync-plans"], vec![("DATABASE_URL".into(), db)]).await;
    assert!(!ok);
    assert!(err.contains("STRIPE_SECRET_KEY is not set"), "{err}");
}
