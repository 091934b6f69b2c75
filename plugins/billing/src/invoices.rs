//! Invoices: mirrored from Stripe's invoice events, or, in local mode, issued by
//! Plinth when a period closes (plan price plus billed overage), numbered from one
//! instance-wide sequence by the database and immutable once issued.

use std::sync::Arc;
use std::time::Duration;

use plinth_core::params;
use plinth_core::platform::{JobContext, JobHandler};
use plinth_core::runtime::jobs::EnqueueOptions;
use plinth_core::storage::db::now_rfc3339;
use plinth_core::storage::sql::{Row as SqlRow, Sql};
use plinth_core::{Error, Platform, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::account::{self, add_interval, format_time};
use crate::plans::{Catalog, Interval};
use crate::{Shared, record_change, webhooks};

pub const CLOSE_PERIODS_JOB: &str = "billing.close_period";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    pub description: String,
    pub quantity: i64,
    pub amount: i64,
}

/// Stripe's invoice statuses (local invoices use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

impl InvoiceStatus {
    pub fn parse(s: &str) -> Option<InvoiceStatus> {
        Some(match s {
            "draft" => InvoiceStatus::Draft,
            "open" => InvoiceStatus::Open,
            "paid" => InvoiceStatus::Paid,
            "void" => InvoiceStatus::Void,
            "uncollectible" => InvoiceStatus::Uncollectible,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Invoice {
    pub id: String,
    pub source: String,
    pub number: Option<String>,
    pub status: String,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub lines: Vec<Line>,
    pub hosted_url: Option<String>,
    pub pdf_url: Option<String>,
    pub created_at: String,
}

const COLUMNS: &str = "id, source, number, status, currency, subtotal, tax, total, amount_due, amount_paid, \
                       period_start, period_end, lines, hosted_url, pdf_url, created_at";

fn from_row(r: &SqlRow<'_>) -> Result<Invoice> {
    let lines: String = r.get(12)?;
    Ok(Invoice {
        id: r.get(0)?,
        source: r.get(1)?,
        number: r.get(2)?,
        status: r.get(3)?,
        currency: r.get(4)?,
        subtotal: r.get(5)?,
        tax: r.get(6)?,
        total: r.get(7)?,
        amount_due: r.get(8)?,
        amount_paid: r.get(9)?,
        period_start: r.get(10)?,
        period_end: r.get(11)?,
        lines: serde_json::from_str(&lines).unwrap_or_default(),
        hosted_url: r.get(13)?,
        pdf_url: r.get(14)?,
        created_at: r.get(15)?,
    })
}

/// The bound org's invoices, newest first (keyset on the time-ordered id).
pub fn list(conn: &Sql<'_>, limit: u32, before: Option<Uuid>) -> Result<Vec<Invoice>> {
    conn.query_all(
        &format!("SELECT {COLUMNS} FROM invoices WHERE id < ?1 OR ?1 IS NULL ORDER BY id DESC LIMIT ?2"),
        params![before, limit],
        from_row,
    )
}

pub fn get(conn: &Sql<'_>, id: Uuid) -> Result<Option<Invoice>> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM invoices WHERE id = ?1"),
        params![id.to_string()],
        from_row,
    )
}

fn rank(status: &str) -> u8 {
    match status {
        "draft" => 0,
        "open" => 1,
        _ => 2,
    }
}

fn time_of(v: &Value) -> Option<String> {
    v.as_i64()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .map(format_time)
}

/// Mirrors a Stripe invoice, skipping states older than the one stored.
pub async fn apply_stripe_invoice(
    platform: &Platform,
    org: Uuid,
    kind: &str,
    object: Value,
    version: i64,
) -> Result<String> {
    let stripe_id = object["id"]
        .as_str()
        .ok_or_else(|| Error::BadRequest("invoice without an id".into()))?
        .to_string();
    let status = object["status"].as_str().unwrap_or("draft").to_string();
    if InvoiceStatus::parse(&status).is_none() {
        return Err(Error::BadRequest(format!("unknown invoice status `{status}`")));
    }
    let lines: Vec<Line> = object["lines"]["data"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|l| Line {
                    description: l["description"].as_str().unwrap_or_default().to_string(),
                    quantity: l["quantity"].as_i64().unwrap_or(1),
                    amount: l["amount"].as_i64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let tax = object["tax"].as_i64().unwrap_or_else(|| {
        object["total_taxes"]
            .as_array()
            .map_or(0, |t| t.iter().filter_map(|x| x["amount"].as_i64()).sum())
    });
    let kind = kind.to_string();
    let p = platform.clone();
    platform
        .tenancy()
        .bind(org)
        .write(move |tx| {
            let stored: Option<(String, String, i64)> = tx.query_opt("SELECT id, status, stripe_version FROM invoices WHERE stripe_invoice_id = ?1", params![stripe_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            if let Some((_, old_status, old_version)) = &stored {
                let older = version < *old_version || (version == *old_version && rank(&status) < rank(old_status));
                if older {
                    return Ok(format!("{}the stored invoice is newer ({old_status})", webhooks::STALE));
                }
            }
            let now = now_rfc3339();
            let values = params![
                stripe_id,
                object["number"].as_str(),
                status,
                object["currency"].as_str().unwrap_or("usd"),
                object["subtotal"].as_i64().unwrap_or(0),
                tax,
                object["total"].as_i64().unwrap_or(0),
                object["amount_due"].as_i64().unwrap_or(0),
                object["amount_paid"].as_i64().unwrap_or(0),
                time_of(&object["period_start"]),
                time_of(&object["period_end"]),
                serde_json::to_string(&lines)?,
                object["hosted_invoice_url"].as_str(),
                object["invoice_pdf"].as_str(),
                version,
                now,
            ];
            if stored.is_none() {
                tx.execute("INSERT INTO invoices (id, org_id, source, stripe_invoice_id, status, currency, subtotal, total,
                         amount_due, created_at, updated_at)
                     VALUES (?1, ?2, 'stripe', ?3, 'draft', 'usd', 0, 0, 0, ?4, ?4)", params![Uuid::now_v7().to_string(), org.to_string(), stripe_id, now])?;
            }
            tx.execute("UPDATE invoices SET number = ?2, status = ?3, currency = ?4, subtotal = ?5, tax = ?6,
                     total = ?7, amount_due = ?8, amount_paid = ?9, period_start = ?10, period_end = ?11,
                     lines = ?12, hosted_url = ?13, pdf_url = ?14, stripe_version = ?15, updated_at = ?16
                 WHERE stripe_invoice_id = ?1", values)?;
            let number = object["number"].as_str().unwrap_or(&stripe_id).to_string();
            let amount = object["amount_due"].as_i64().unwrap_or(0);
            let currency = object["currency"].as_str().unwrap_or("usd").to_uppercase();
            let summary = match kind.as_str() {
                "invoice.paid" => Some(format!("invoice {number} was paid")),
                "invoice.payment_failed" => Some(format!(
                    "the payment of invoice {number} ({} {currency}) failed",
                    money(amount)
                )),
                "invoice.voided" => Some(format!("invoice {number} was voided")),
                "invoice.finalized" => Some(format!("invoice {number} was issued")),
                _ => None,
            };
            if let Some(summary) = summary {
                let action = match kind.as_str() {
                    "invoice.paid" => "invoice.paid",
                    "invoice.payment_failed" => "invoice.payment_failed",
                    "invoice.voided" => "invoice.voided",
                    _ => "invoice.finalized",
                };
                record_change(tx, &p, org, None, action, summary, json!({ "invoice": stripe_id, "status": status }))?;
            }
            Ok(format!("invoice {status}"))
        })
        .await
}

/// Amounts are kept in minor units; shown with two decimals.
pub fn money(cents: i64) -> String {
    format!(
        "{}{}.{:02}",
        if cents < 0 { "-" } else { "" },
        cents.abs() / 100,
        cents.abs() % 100
    )
}

pub fn close_periods_job(shared: Arc<Shared>) -> JobHandler {
    JobHandler::new(CLOSE_PERIODS_JOB, move |ctx: JobContext| {
        let shared = shared.clone();
        async move {
            let org = ctx.payload["org_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok());
            match org {
                Some(org) => close_period(&ctx.platform, &shared, org, false)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                // The hourly schedule carries no org: each org's closing is its own
                // delayed job, enqueued when its local period starts.
                None => Ok(()),
            }
        }
    })
}

/// Enqueues the closing of the bound org's current local period at its end.
pub fn schedule_close(tx: &Sql<'_>, platform: &Platform, org: Uuid, end: OffsetDateTime) -> Result<()> {
    let wait = (end - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    platform.jobs().enqueue_with(
        tx,
        CLOSE_PERIODS_JOB,
        &json!({ "org_id": org }),
        EnqueueOptions {
            delay: Some(Duration::from_secs(wait.whole_seconds().max(0) as u64)),
            max_attempts: None,
        },
    )?;
    Ok(())
}

/// Closes the org's local period if it has ended (or now, with `early`): issues its
/// invoice when there is something to charge, starts the next period, and applies a
/// cancellation scheduled for the period's end. Returns the invoice issued.
pub async fn close_period(
    platform: &Platform,
    shared: &Shared,
    org: Uuid,
    early: bool,
) -> Result<Option<Invoice>> {
    let catalog: Arc<Catalog> = webhooks::catalog(platform, shared).await?;
    let grace = shared.grace();
    let p = platform.clone();
    platform
        .tenancy()
        .bind(org)
        .write(move |tx| {
            let now = OffsetDateTime::now_utc();
            let mut acct = account::load(tx, org, &catalog, now)?;
            if acct.stripe_subscription_id.is_some() && !matches!(acct.status.as_str(), "canceled" | "incomplete_expired")
            {
                return Ok(None);
            }
            if !acct.stored || (!early && now < acct.period_end) {
                return Ok(None);
            }
            let before = acct.clone();
            let end = if early { now } else { acct.period_end };
            let plan = acct.effective_plan(&catalog, grace, acct.period_start)?.clone();
            let start = format_time(acct.period_start);
            let mut lines = Vec::new();
            if plan.price_cents > 0 {
                lines.push(Line {
                    description: format!("{} plan, {} to {}", plan.name, &start[..10], &format_time(end)[..10]),
                    quantity: 1,
                    amount: plan.price_cents,
                });
            }
            let used: Vec<(String, i64)> = tx.query_all(
                "SELECT metric, total FROM usage_totals WHERE period_start = ?1 ORDER BY metric",
                params![start],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            for (metric, n) in used {
                if let Some(q) = plan.quotas.get(&metric) {
                    let cents = q.overage_cents(n);
                    if cents > 0 {
                        lines.push(Line {
                            description: format!("{metric}: {} over the {} included", n - q.limit, q.limit),
                            quantity: n - q.limit,
                            amount: cents,
                        });
                    }
                }
            }
            let total: i64 = lines.iter().map(|l| l.amount).sum();
            let mut issued = None;
            if total > 0 {
                let id = Uuid::now_v7();
                let at = now_rfc3339();
                tx.execute("INSERT INTO invoices (id, org_id, source, status, currency, subtotal, tax, total, amount_due,
                         amount_paid, period_start, period_end, lines, created_at, updated_at)
                     VALUES (?1, ?2, 'local', 'open', ?3, ?4, 0, ?4, ?4, 0, ?5, ?6, ?7, ?8, ?8)", params![
                    id.to_string(),
                    org.to_string(),
                    plan.currency,
                    total,
                    start,
                    format_time(end),
                    serde_json::to_string(&lines)?,
                    at
                ])?;
                let invoice = get(tx, id)?.ok_or_else(|| Error::internal("the new invoice is not visible"))?;
                record_change(
                    tx,
                    &p,
                    org,
                    None,
                    "invoice.issued",
                    format!(
                        "invoice {} for {} {} was issued",
                        invoice.number.as_deref().unwrap_or("?"),
                        money(total),
                        plan.currency.to_uppercase()
                    ),
                    json!({ "invoice": id, "total": total }),
                )?;
                issued = Some(invoice);
            }
            acct.period_start = end;
            if acct.cancel_at_period_end {
                acct.plan_id = catalog.default_plan()?.id.clone();
                acct.cancel_at_period_end = false;
                acct.status = "active".into();
                acct.stripe_subscription_id = None;
            }
            let interval = catalog.get(&acct.plan_id).map_or(Interval::Month, |p| p.interval);
            acct.period_end = add_interval(end, interval);
            account::save(tx, &mut acct)?;
            webhooks::log_transition(tx, &p, &catalog, &before, &acct, None, "period end")?;
            schedule_close(tx, &p, org, acct.period_end)?;
            Ok(issued)
        })
        .await
}

/// A printable HTML rendering of an invoice (the browser prints it to PDF).
pub fn render_html(invoice: &Invoice, org_name: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let currency = invoice.currency.to_uppercase();
    let rows: String = invoice
        .lines
        .iter()
        .map(|l| {
            format!(
                "<tr><td>{}</td><td class=n>{}</td><td class=n>{} {currency}</td></tr>",
                esc(&l.description),
                l.quantity,
                money(l.amount)
            )
        })
        .collect();
    let period = match (&invoice.period_start, &invoice.period_end) {
        (Some(s), Some(e)) => format!("{} to {}", esc(&s[..s.len().min(10)]), esc(&e[..e.len().min(10)])),
        _ => String::new(),
    };
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Invoice {number}</title>\
<style>body{{font:14px system-ui,sans-serif;max-width:720px;margin:40px auto;color:#111}}\
table{{width:100%;border-collapse:collapse}}td,th{{padding:6px;border-bottom:1px solid #ddd;text-align:left}}\
.n{{text-align:right}}@media print{{body{{margin:0}}}}</style></head><body>\
<h1>Invoice {number}</h1><p>Billed to: {org}<br>Period: {period}<br>Issued: {issued}<br>Status: {status}</p>\
<table><thead><tr><th>Description</th><th class=n>Quantity</th><th class=n>Amount</th></tr></thead>\
<tbody>{rows}</tbody></table><p class=n>Subtotal: {subtotal} {currency}<br>Tax: {tax} {currency}<br>\
<strong>Total: {total} {currency}</strong><br>Amount due: {due} {currency}</p></body></html>",
        number = esc(invoice.number.as_deref().unwrap_or("(draft)")),
        org = esc(org_name),
        issued = esc(&invoice.created_at[..invoice.created_at.len().min(10)]),
        status = esc(&invoice.status),
        subtotal = money(invoice.subtotal),
        tax = money(invoice.tax),
        total = money(invoice.total),
        due = money(invoice.amount_due),
    )
}
