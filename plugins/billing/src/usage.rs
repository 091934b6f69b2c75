//! Metered usage: recorded once per idempotency key, totalled per billing period
//! against the plan's quotas, reported to Stripe as meter events from the job queue
//! (the usage event's id is the meter event's identifier, so a retry never counts
//! twice). Also keeps the subscription's seat quantity in step with the members.

use std::sync::Arc;

use plinth_core::params;
use plinth_core::platform::{JobContext, JobHandler};
use plinth_core::storage::db::now_rfc3339;
use plinth_core::storage::sql::Sql;
use plinth_core::tenancy::bound;
use plinth_core::{Error, Platform, Result};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::account::{self, format_time};
use crate::plans::{Over, Quota};
use crate::{Shared, webhooks};

pub const REPORT_JOB: &str = "billing.report_usage";
pub const SYNC_SEATS_JOB: &str = "billing.sync_seats";

/// One recorded usage event, with where its metric stands after it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: String,
    pub metric: String,
    pub quantity: i64,
    pub idempotency_key: String,
    pub recorded_at: String,
    /// False when the key had been used before and this is the original answer.
    pub created: bool,
    pub used: i64,
    pub limit: Option<i64>,
}

/// A metric's standing in the current period.
#[derive(Debug, Clone)]
pub struct Total {
    pub metric: String,
    pub used: i64,
    pub quota: Option<Quota>,
    pub overage_cents: i64,
}

pub fn valid_metric(metric: &str) -> bool {
    (1..=64).contains(&metric.len())
        && metric
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.' || b == b'-')
}

fn used(conn: &Sql<'_>, metric: &str, period_start: &str) -> Result<i64> {
    Ok(conn
        .query_opt(
            "SELECT total FROM usage_totals WHERE period_start = ?1 AND metric = ?2",
            params![period_start, metric],
            |r| r.get(0),
        )?
        .unwrap_or(0))
}

/// Records usage in the caller's (bound, immediate) transaction. A key seen before
/// answers with the original event when the request is the same, 409 otherwise;
/// a blocking quota refuses what would pass it with 402.
#[allow(clippy::too_many_arguments)]
pub fn record(
    tx: &Sql<'_>,
    platform: &Platform,
    shared: &Shared,
    org: Uuid,
    actor: &str,
    metric: &str,
    quantity: i64,
    key: &str,
) -> Result<Recorded> {
    let catalog = shared.catalog(tx)?;
    let now = OffsetDateTime::now_utc();
    let account = account::load(tx, org, &catalog, now)?;
    let plan = account.effective_plan(&catalog, shared.grace(), now)?;
    let quota = plan.quotas.get(metric).cloned();
    let previous: Option<(String, String, i64, String, String)> = tx.query_opt(
        "SELECT id, metric, quantity, created_at, period_start FROM usage_events WHERE idempotency_key = ?1",
        params![key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    if let Some((id, prev_metric, prev_quantity, at, period)) = previous {
        if prev_metric != metric || prev_quantity != quantity {
            return Err(Error::Conflict(
                "this idempotency_key was already used for a different metric or quantity".into(),
            ));
        }
        return Ok(Recorded {
            id,
            metric: prev_metric,
            quantity: prev_quantity,
            idempotency_key: key.to_string(),
            recorded_at: at,
            created: false,
            used: used(tx, metric, &period)?,
            limit: quota.map(|q| q.limit),
        });
    }
    let (start, _) = account.period(&catalog, now);
    let period = format_time(start);
    let so_far = used(tx, metric, &period)?;
    if let Some(q) = &quota
        && q.over == Over::Block
        && so_far.saturating_add(quantity) > q.limit
    {
        return Err(Error::PaymentRequired(format!(
            "the {} plan allows {} {metric} per period and {so_far} are used; upgrade the plan to record more",
            plan.name, q.limit
        )));
    }
    let id = Uuid::now_v7().to_string();
    let at = now_rfc3339();
    tx.execute("INSERT INTO usage_events (id, org_id, metric, quantity, idempotency_key, actor_id, period_start, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", params![id, org.to_string(), metric, quantity, key, actor, period, at])?;
    if account.stripe_customer_id.is_some() && shared.stripe(platform.config())?.is_some() {
        platform
            .jobs()
            .enqueue(tx, REPORT_JOB, &json!({ "org_id": org, "usage_id": id }))?;
    }
    Ok(Recorded {
        id,
        metric: metric.to_string(),
        quantity,
        idempotency_key: key.to_string(),
        recorded_at: at,
        created: true,
        used: so_far + quantity,
        limit: quota.map(|q| q.limit),
    })
}

/// The current period and every metric with usage or a quota in it.
pub fn totals(conn: &Sql<'_>, shared: &Shared, org: Uuid) -> Result<(String, String, Vec<Total>)> {
    let catalog = shared.catalog(conn)?;
    let now = OffsetDateTime::now_utc();
    let account = account::load(conn, org, &catalog, now)?;
    let plan = account.effective_plan(&catalog, shared.grace(), now)?;
    let (start, end) = account.period(&catalog, now);
    let period = format_time(start);
    let mut used_by_metric: std::collections::BTreeMap<String, i64> =
        plan.quotas.keys().map(|m| (m.clone(), 0)).collect();
    let rows = conn.query_all(
        "SELECT metric, total FROM usage_totals WHERE period_start = ?1",
        params![period],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
    )?;
    used_by_metric.extend(rows);
    let totals = used_by_metric
        .into_iter()
        .map(|(metric, used)| {
            let quota = plan.quotas.get(&metric).cloned();
            let overage_cents = quota.as_ref().map_or(0, |q| q.overage_cents(used));
            Total {
                metric,
                used,
                quota,
                overage_cents,
            }
        })
        .collect();
    Ok((period, format_time(end), totals))
}

pub fn report_job(shared: Arc<Shared>) -> JobHandler {
    JobHandler::new(REPORT_JOB, move |ctx: JobContext| {
        let shared = shared.clone();
        async move {
            report(&ctx.platform, &shared, &ctx.payload)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

/// Sends one usage event to Stripe as a meter event, then stamps it reported.
async fn report(platform: &Platform, shared: &Shared, payload: &serde_json::Value) -> Result<()> {
    let org = payload["org_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| Error::internal("usage job without org_id"))?;
    let usage = payload["usage_id"].as_str().unwrap_or_default().to_string();
    let Some(stripe) = shared.stripe(platform.config())?.cloned() else {
        return Ok(());
    };
    let db = platform.tenancy().bind(org);
    let key = usage.clone();
    let found: Option<(String, i64, Option<String>, Option<String>)> = db
        .call(move |conn| {
            conn.query_opt(
                "SELECT u.metric, u.quantity, u.reported_at, a.stripe_customer_id
                     FROM usage_events u LEFT JOIN billing_accounts a ON a.org_id = u.org_id WHERE u.id = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
        })
        .await?;
    let Some((metric, quantity, reported, Some(customer))) = found else {
        return Ok(());
    };
    if reported.is_some() {
        return Ok(());
    }
    stripe.meter_event(&metric, &customer, quantity, &usage).await?;
    db.write(move |tx| {
        tx.execute(
            "UPDATE usage_events SET reported_at = ?2 WHERE id = ?1",
            params![usage, now_rfc3339()],
        )?;
        Ok(())
    })
    .await
}

pub fn sync_seats_job(shared: Arc<Shared>) -> JobHandler {
    JobHandler::new(SYNC_SEATS_JOB, move |ctx: JobContext| {
        let shared = shared.clone();
        async move {
            sync_seats(&ctx.platform, &shared, &ctx.payload)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

/// Sets the subscription's quantity to the member count when they differ.
async fn sync_seats(platform: &Platform, shared: &Shared, payload: &serde_json::Value) -> Result<()> {
    let Some(org) = payload["org_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
        return Ok(());
    };
    let Some(stripe) = shared.stripe(platform.config())?.cloned() else {
        return Ok(());
    };
    let catalog = webhooks::catalog(platform, shared).await?;
    let (account, members) = platform
        .tenancy()
        .bind(org)
        .call(move |conn| {
            let account = account::load(conn, org, &catalog, OffsetDateTime::now_utc())?;
            Ok((account, bound::count_members(conn)?))
        })
        .await?;
    let (Some(subscription), Some(item)) = (account.stripe_subscription_id, account.stripe_item_id) else {
        return Ok(());
    };
    if !matches!(account.status.as_str(), "active" | "trialing" | "past_due")
        || account.quantity == Some(members.into())
    {
        return Ok(());
    }
    let updated = stripe.set_quantity(&subscription, &item, members.into()).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    webhooks::apply_subscription(platform, shared, org, updated, now, true).await?;
    Ok(())
}
