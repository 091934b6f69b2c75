//! Stripe webhooks: verified deliveries go into an inbox (`billing_webhook_events`,
//! once per event id) and a durable job applies them. Applying is idempotent and
//! ordered: a subscription or invoice state older than the one stored is skipped, a
//! tie is settled by reading the object from Stripe. Reconciliation re-reads every
//! customer and subscription and repairs whatever drifted.

use std::sync::Arc;

use plinth_core::params;
use plinth_core::platform::{JobContext, JobHandler};
use plinth_core::storage::db::now_rfc3339;
use plinth_core::storage::sql::Sql;
use plinth_core::{Error, Platform, Result};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::account::{self, Account, format_time};
use crate::plans::Catalog;
use crate::{Shared, invoices, record_change, signature};

pub const PROCESS_JOB: &str = "billing.webhook";

/// What processing a stored Stripe event came to, as listed to staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum Outcome {
    /// Received, not processed yet.
    Pending,
    /// Processed and applied (or recorded).
    Applied,
    /// Processed; nothing of this instance's concern (another app's customer,
    /// an event type Plinth does not handle).
    Ignored,
    /// Processed; older than the state already stored, so skipped.
    Stale,
    /// Processing failed; it is retried (`last_error` says why).
    Failed,
}

/// The sentence prefix of an ignored event's outcome.
const IGNORED: &str = "ignored: ";
/// The sentence prefix of a stale event's outcome.
pub(crate) const STALE: &str = "stale: ";

impl Outcome {
    /// The kind of a stored event from its processing time, outcome sentence and
    /// last error (the sentences of ignored and stale events start with their kind).
    pub fn of(processed: bool, sentence: Option<&str>, error: Option<&str>) -> Outcome {
        match (processed, sentence) {
            (true, Some(s)) if s.starts_with(IGNORED) => Outcome::Ignored,
            (true, Some(s)) if s.starts_with(STALE) => Outcome::Stale,
            (true, _) => Outcome::Applied,
            (false, _) if error.is_some() => Outcome::Failed,
            (false, _) => Outcome::Pending,
        }
    }
}
pub const RECONCILE_JOB: &str = "billing.reconcile";

/// Verifies and stores one delivery; `Ok(false)` for an event already stored.
pub async fn receive(platform: &Platform, body: Vec<u8>, header: Option<String>) -> Result<bool> {
    let Some(secret) = platform.config().stripe_webhook_secret.as_ref() else {
        return Err(Error::BadRequest(
            "webhooks are not configured: STRIPE_WEBHOOK_SECRET is not set, so no delivery can be verified"
                .into(),
        ));
    };
    let header = header.ok_or_else(|| Error::BadRequest("missing Stripe-Signature header".into()))?;
    // Several comma-separated secrets: both endpoints' during a rotation on our side.
    let secrets: Vec<&str> = secret
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    signature::verify(&body, &header, &secrets, now).map_err(|e| Error::BadRequest(e.to_string()))?;

    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("the event is not JSON: {e}")))?;
    let id = event["id"].as_str().unwrap_or_default().to_string();
    let kind = event["type"].as_str().unwrap_or_default().to_string();
    let created = event["created"].as_i64();
    let (false, false, Some(created)) = (id.is_empty() || id.len() > 255, kind.is_empty(), created) else {
        return Err(Error::BadRequest(
            "the event lacks an id, a type or a created time".into(),
        ));
    };
    let api_version = event["api_version"].as_str().map(str::to_string);
    let payload = String::from_utf8_lossy(&body).into_owned();
    let jobs = platform.jobs().clone();
    platform
        .db()
        .write(move |tx| {
            let inserted = tx.execute("INSERT INTO billing_webhook_events (id, type, api_version, stripe_created, payload, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING", params![id, kind, api_version, created, payload, now_rfc3339()])?;
            if inserted == 1 {
                jobs.enqueue(tx, PROCESS_JOB, &json!({ "event_id": id }))?;
            }
            Ok(inserted == 1)
        })
        .await
}

pub fn process_job(shared: Arc<Shared>) -> JobHandler {
    JobHandler::new(PROCESS_JOB, move |ctx: JobContext| {
        let shared = shared.clone();
        async move {
            let id = ctx.payload["event_id"].as_str().unwrap_or_default().to_string();
            process(&ctx.platform, &shared, &id, false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
}

/// Runs a stored event again, whatever its state (`plinth billing reprocess`).
pub async fn reprocess(platform: &Platform, shared: &Shared, id: &str) -> Result<String> {
    process(platform, shared, id, true).await
}

/// Applies one stored event, keeping its attempts, outcome and last error in the inbox.
async fn process(platform: &Platform, shared: &Shared, id: &str, again: bool) -> Result<String> {
    let key = id.to_string();
    let stored: Option<(String, i64, String, Option<String>)> = platform
        .db()
        .write(move |tx| {
            let sql = *tx;
            sql.execute(
                "UPDATE billing_webhook_events SET attempts = attempts + 1 WHERE id = ?1",
                params![key],
            )?;
            sql.query_opt(
                "SELECT type, stripe_created, payload, processed_at FROM billing_webhook_events WHERE id = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
        })
        .await?;
    let Some((kind, created, payload, processed)) = stored else {
        return Err(Error::NotFound(format!("no webhook event {id} in the inbox")));
    };
    if processed.is_some() && !again {
        return Ok("already processed".into());
    }
    let event: Value = serde_json::from_str(&payload)?;
    let result = apply(platform, shared, &kind, &event["data"]["object"], created).await;
    let key = id.to_string();
    let (outcome, error) = match &result {
        Ok(outcome) => (Some(outcome.clone()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    platform
        .db()
        .write(move |tx| {
            match (&outcome, &error) {
                (Some(outcome), _) => tx.execute(
                    "UPDATE billing_webhook_events SET processed_at = ?2, outcome = ?3, last_error = NULL WHERE id = ?1",
                    params![key, now_rfc3339(), outcome],
                )?,
                (None, error) => tx.execute(
                    "UPDATE billing_webhook_events SET last_error = ?2 WHERE id = ?1",
                    params![key, error],
                )?,
            };
            Ok(())
        })
        .await?;
    result
}

/// Which org an object belongs to: our metadata, else the customer's mapping, else
/// the checkout's reference. `None` for objects of no org of this instance.
async fn org_of(platform: &Platform, object: &Value) -> Result<Option<Uuid>> {
    let candidates = [
        object["metadata"]["org_id"].as_str(),
        object["subscription_details"]["metadata"]["org_id"].as_str(),
        object["parent"]["subscription_details"]["metadata"]["org_id"].as_str(),
        object["client_reference_id"].as_str(),
    ];
    let customer = customer_of(object);
    let explicit: Vec<Uuid> = candidates
        .into_iter()
        .flatten()
        .filter_map(|s| Uuid::parse_str(s).ok())
        .collect();
    platform
        .db()
        .call(move |conn| {
            let exists = |org: &Uuid| -> Result<bool> {
                conn.exists(
                    "SELECT 1 FROM organizations WHERE id = ?1",
                    params![org.to_string()],
                )
            };
            for org in &explicit {
                if exists(org)? {
                    return Ok(Some(*org));
                }
            }
            let Some(customer) = customer else { return Ok(None) };
            let org: Option<String> = conn.query_opt(
                "SELECT org_id FROM billing_customers WHERE customer_id = ?1",
                params![customer],
                |r| r.get(0),
            )?;
            Ok(org.and_then(|o| Uuid::parse_str(&o).ok()))
        })
        .await
}

fn customer_of(object: &Value) -> Option<String> {
    match object["object"].as_str() {
        Some("customer") => object["id"].as_str().map(str::to_string),
        _ => object["customer"]
            .as_str()
            .or_else(|| object["customer"]["id"].as_str())
            .map(str::to_string),
    }
}

/// Remembers which org a customer belongs to (idempotent).
pub async fn link_customer(platform: &Platform, customer: String, org: Uuid) -> Result<()> {
    platform
        .db()
        .write(move |tx| {
            tx.execute(
                "INSERT INTO billing_customers (customer_id, org_id) VALUES (?1, ?2)
                 ON CONFLICT (org_id) DO UPDATE SET customer_id = excluded.customer_id",
                params![customer, org.to_string()],
            )?;
            Ok(())
        })
        .await
}

async fn apply(
    platform: &Platform,
    shared: &Shared,
    kind: &str,
    object: &Value,
    created: i64,
) -> Result<String> {
    let Some(org) = org_of(platform, object).await? else {
        return Ok(format!("{IGNORED}no organization of this instance"));
    };
    match kind {
        "checkout.session.completed" => {
            if let Some(customer) = customer_of(object) {
                link_customer(platform, customer, org).await?;
            }
            let subscription_id = object["subscription"]
                .as_str()
                .or_else(|| object["subscription"]["id"].as_str());
            let stripe = shared.stripe(platform.config())?;
            match (subscription_id, stripe) {
                (Some(id), Some(stripe)) => {
                    let subscription = stripe.subscription(id).await?;
                    apply_subscription(platform, shared, org, subscription, created, true).await
                }
                _ => Ok("checkout recorded; the subscription arrives in its own events".into()),
            }
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => {
            if let Some(customer) = customer_of(object) {
                link_customer(platform, customer, org).await?;
            }
            let outcome = apply_subscription(platform, shared, org, object.clone(), created, false).await?;
            // Two states stamped with the same second cannot be ordered by their
            // events: ask Stripe for the current one.
            if outcome == TIE
                && let (Some(stripe), Some(id)) = (shared.stripe(platform.config())?, object["id"].as_str())
            {
                let current = stripe.subscription(id).await?;
                return apply_subscription(platform, shared, org, current, created, true).await;
            }
            Ok(outcome)
        }
        "invoice.created"
        | "invoice.finalized"
        | "invoice.paid"
        | "invoice.payment_failed"
        | "invoice.voided"
        | "invoice.updated"
        | "invoice.marked_uncollectible" => {
            invoices::apply_stripe_invoice(platform, org, kind, object.clone(), created).await
        }
        "customer.updated" | "customer.created" => {
            if let Some(customer) = customer_of(object) {
                link_customer(platform, customer, org).await?;
            }
            Ok("customer linked".into())
        }
        "customer.deleted" => {
            let catalog = catalog(platform, shared).await?;
            let p = platform.clone();
            platform
                .tenancy()
                .bind(org)
                .write(move |tx| {
                    let mut account = account::load(tx, org, &catalog, OffsetDateTime::now_utc())?;
                    let before = account.clone();
                    account.stripe_customer_id = None;
                    account.stripe_subscription_id = None;
                    account.stripe_item_id = None;
                    if !matches!(account.status.as_str(), "canceled" | "incomplete_expired") {
                        account.status = "canceled".into();
                    }
                    account::save(tx, &mut account)?;
                    log_transition(
                        tx,
                        &p,
                        &catalog,
                        &before,
                        &account,
                        None,
                        "the Stripe customer was deleted",
                    )?;
                    Ok("customer removed; the org is back on the default plan".to_string())
                })
                .await
        }
        _ => Ok(format!("{IGNORED}Plinth does not handle {kind}")),
    }
}

const TIE: &str = "tie";

/// The plan catalogue; a connection is checked out only the first time.
pub(crate) async fn catalog(platform: &Platform, shared: &Shared) -> Result<Arc<Catalog>> {
    if let Some(catalog) = shared.plans.cached() {
        return Ok(catalog);
    }
    let plans = shared.plans.clone();
    platform.db().call(move |conn| plans.current(conn)).await
}

/// Reads the catalogue again after a committed change to the plans, so no reader
/// sees an uncommitted plan.
pub(crate) async fn reload_catalog(platform: &Platform, shared: &Shared) -> Result<Arc<Catalog>> {
    let plans = shared.plans.clone();
    platform.db().call(move |conn| plans.reload(conn)).await
}

fn unix(v: &Value) -> Option<OffsetDateTime> {
    v.as_i64()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
}

/// A subscription object's state, as Plinth keeps it.
struct SubscriptionState {
    id: String,
    customer: Option<String>,
    status: String,
    price: Option<String>,
    item: Option<String>,
    quantity: Option<i64>,
    period: Option<(OffsetDateTime, OffsetDateTime)>,
    cancel_at_period_end: bool,
    trial_end: Option<OffsetDateTime>,
}

fn read_subscription(object: &Value) -> Result<SubscriptionState> {
    let item = &object["items"]["data"][0];
    // Newer API versions keep the period on the item, older ones on the subscription.
    let start = unix(&object["current_period_start"]).or_else(|| unix(&item["current_period_start"]));
    let end = unix(&object["current_period_end"]).or_else(|| unix(&item["current_period_end"]));
    let status = object["status"].as_str().unwrap_or_default();
    if account::SubscriptionStatus::parse(status).is_none() {
        return Err(Error::BadRequest(format!(
            "unknown subscription status `{status}`"
        )));
    }
    Ok(SubscriptionState {
        id: object["id"]
            .as_str()
            .ok_or_else(|| Error::BadRequest("subscription without an id".into()))?
            .to_string(),
        customer: customer_of(object),
        status: status.to_string(),
        price: item["price"]["id"]
            .as_str()
            .or_else(|| item["plan"]["id"].as_str())
            .map(str::to_string),
        item: item["id"].as_str().map(str::to_string),
        quantity: item["quantity"].as_i64(),
        period: start.zip(end),
        cancel_at_period_end: object["cancel_at_period_end"].as_bool().unwrap_or(false),
        trial_end: unix(&object["trial_end"]),
    })
}

/// Applies a subscription state stamped `version` (its event's `created`) to the
/// org's account, unless a newer one is stored; `force` applies a state just read
/// from Stripe.
pub(crate) async fn apply_subscription(
    platform: &Platform,
    shared: &Shared,
    org: Uuid,
    object: Value,
    version: i64,
    force: bool,
) -> Result<String> {
    let state = read_subscription(&object)?;
    let catalog = catalog(platform, shared).await?;
    let p = platform.clone();
    platform
        .tenancy()
        .bind(org)
        .write(move |tx| {
            let now = OffsetDateTime::now_utc();
            let mut account = account::load(tx, org, &catalog, now)?;
            let same = account.stripe_subscription_id.as_deref() == Some(state.id.as_str());
            if !force && same && version < account.stripe_version {
                return Ok(format!(
                    "{STALE}the stored state is newer ({} > {version})",
                    account.stripe_version
                ));
            }
            if !force && same && version == account.stripe_version {
                return Ok(TIE.to_string());
            }
            let before = account.clone();
            let plan = match state.price.as_deref().and_then(|p| catalog.by_stripe_price(p)) {
                Some(plan) => plan.id.clone(),
                None => {
                    tracing::warn!(org = %org, price = ?state.price, "subscription price matches no plan");
                    account.plan_id.clone()
                }
            };
            account.plan_id = plan;
            account.stripe_subscription_id = Some(state.id.clone());
            if state.customer.is_some() {
                account.stripe_customer_id = state.customer.clone();
            }
            account.stripe_item_id = state.item.clone();
            account.quantity = state.quantity;
            if let Some((start, end)) = state.period {
                account.period_start = start;
                account.period_end = end;
            }
            account.cancel_at_period_end = state.cancel_at_period_end;
            account.trial_end = state.trial_end;
            account.past_due_since = match (state.status.as_str(), before.status.as_str()) {
                ("past_due", "past_due") => before.past_due_since.or(Some(now)),
                ("past_due", _) => unix(&Value::from(version)).or(Some(now)),
                _ => None,
            };
            account.status = state.status.clone();
            account.stripe_version = account.stripe_version.max(version);
            account::save(tx, &mut account)?;
            let changed = log_transition(tx, &p, &catalog, &before, &account, None, "Stripe")?;
            Ok(if changed {
                "applied".into()
            } else {
                "applied: no change".into()
            })
        })
        .await
}

/// Audits and announces a change of plan, status or cancellation; `false` when
/// nothing a person would notice changed.
pub(crate) fn log_transition(
    tx: &Sql<'_>,
    platform: &Platform,
    catalog: &Catalog,
    before: &Account,
    after: &Account,
    actor: Option<&str>,
    by: &str,
) -> Result<bool> {
    let view = |a: &Account| {
        json!({
            "plan": a.plan_id,
            "status": a.status,
            "cancel_at_period_end": a.cancel_at_period_end,
            "quantity": a.quantity,
            "current_period_end": format_time(a.period_end),
        })
    };
    let noticed = before.plan_id != after.plan_id
        || before.status != after.status
        || before.cancel_at_period_end != after.cancel_at_period_end;
    if !noticed && before.stored {
        return Ok(false);
    }
    let plan_name = catalog
        .get(&after.plan_id)
        .map_or(after.plan_id.as_str(), |p| p.name.as_str());
    let summary = if after.cancel_at_period_end && !before.cancel_at_period_end {
        format!("scheduled the {plan_name} subscription to cancel at the end of the period ({by})")
    } else if before.cancel_at_period_end && !after.cancel_at_period_end && after.status == before.status {
        format!("resumed the {plan_name} subscription ({by})")
    } else {
        format!(
            "subscription is {} on the {plan_name} plan ({by})",
            after.status.replace('_', " ")
        )
    };
    record_change(
        tx,
        platform,
        after.org_id,
        actor,
        "subscription.changed",
        summary,
        json!({ "before": view(before), "after": view(after), "by": by }),
    )?;
    Ok(true)
}

pub fn reconcile_job(shared: Arc<Shared>) -> JobHandler {
    JobHandler::new(RECONCILE_JOB, move |ctx: JobContext| {
        let shared = shared.clone();
        async move {
            reconcile(&ctx.platform, &shared)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
}

/// Re-reads every linked customer and its subscription from Stripe and applies
/// what differs; returns one line per org that changed.
pub async fn reconcile(platform: &Platform, shared: &Shared) -> Result<Vec<String>> {
    let Some(stripe) = shared.stripe(platform.config())?.cloned() else {
        return Ok(vec!["local mode: nothing to reconcile with Stripe".into()]);
    };
    let linked: Vec<(String, String)> = platform
        .db()
        .call(|conn| {
            conn.query_all(
                "SELECT customer_id, org_id FROM billing_customers ORDER BY org_id",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut changes = Vec::new();
    for (customer_id, org) in linked {
        let Ok(org) = Uuid::parse_str(&org) else { continue };
        let customer = stripe.customer(&customer_id).await?;
        if customer["deleted"].as_bool() == Some(true) {
            let outcome = apply(platform, shared, "customer.deleted", &customer, now).await?;
            changes.push(format!("{org}: {outcome}"));
            continue;
        }
        let catalog = catalog(platform, shared).await?;
        let account = platform
            .tenancy()
            .bind(org)
            .call(move |conn| account::load(conn, org, &catalog, OffsetDateTime::now_utc()))
            .await?;
        let Some(subscription_id) = account.stripe_subscription_id.clone() else {
            continue;
        };
        let current = stripe.subscription(&subscription_id).await?;
        let before = (
            account.plan_id.clone(),
            account.status.clone(),
            account.cancel_at_period_end,
            account.quantity,
        );
        let outcome = apply_subscription(platform, shared, org, current.clone(), now, true).await?;
        let state = read_subscription(&current)?;
        let after_status = state.status.clone();
        if before.1 != after_status || before.2 != state.cancel_at_period_end || before.3 != state.quantity {
            let line = format!(
                "{org}: status {} -> {after_status}, cancel_at_period_end {} -> {}, seats {:?} -> {:?} ({outcome})",
                before.1, before.2, state.cancel_at_period_end, before.3, state.quantity
            );
            let detail = line.clone();
            let p = platform.clone();
            platform
                .tenancy()
                .bind(org)
                .write(move |tx| {
                    record_change(
                        tx,
                        &p,
                        org,
                        None,
                        "billing.reconciled",
                        "reconciled the subscription with Stripe".into(),
                        json!({ "change": detail }),
                    )
                })
                .await?;
            changes.push(line);
        }
    }
    Ok(changes)
}
