//! `plinth billing sync-plans`: puts the plan catalogue on sale in Stripe. Every
//! paid, unarchived plan without a price id gets a product (`plinth_<plan id>`,
//! found again if it exists) and a recurring price, whose id is stored on the plan.

use plinth_core::audit::{AuditEntry, record};
use plinth_core::{Error, Platform, Result, params};
use serde_json::json;

use crate::Shared;
use crate::plans::Plan;
use crate::webhooks::{catalog, reload_catalog};

/// What sync does (or, dry, would do) with one plan.
enum Step {
    Free,
    Archived,
    AlreadyOnSale(String),
    Sell,
}

fn step(plan: &Plan) -> Step {
    match &plan.stripe_price_id {
        Some(price) => Step::AlreadyOnSale(price.clone()),
        None if plan.archived => Step::Archived,
        None if plan.price_cents == 0 => Step::Free,
        None => Step::Sell,
    }
}

fn price_text(plan: &Plan) -> String {
    format!(
        "{} {} (minor units) per {}",
        plan.price_cents,
        plan.currency,
        plan.interval.as_str()
    )
}

/// Returns one line per plan. With `dry_run`, nothing is sent or stored (and no
/// Stripe key is needed).
pub async fn sync_plans(platform: &Platform, shared: &Shared, dry_run: bool) -> Result<Vec<String>> {
    let stripe = shared.stripe(platform.config())?.cloned();
    if stripe.is_none() && !dry_run {
        return Err(Error::BadRequest(
            "STRIPE_SECRET_KEY is not set: there is no Stripe account to sell plans in (try --dry-run)"
                .into(),
        ));
    }
    let plans = catalog(platform, shared).await?.all().to_vec();
    let mut lines = Vec::new();
    let mut changed = false;
    for plan in plans {
        let line = match (step(&plan), &stripe) {
            (Step::Free, _) => format!("{}: free, nothing to sell", plan.id),
            (Step::Archived, _) => format!("{}: archived, skipped", plan.id),
            (Step::AlreadyOnSale(price), _) => format!("{}: already sold as {price}", plan.id),
            (Step::Sell, Some(stripe)) if !dry_run => {
                let product = stripe.ensure_product(&plan).await?;
                let price = stripe.create_price(&plan, &product).await?;
                let (id, stored) = (plan.id.clone(), price.clone());
                let details = json!({ "product": product, "price": price });
                let updated = platform
                    .db()
                    .write(move |tx| {
                        let n = tx.execute(
                            "UPDATE billing_plans SET stripe_price_id = ?2, updated_at = ?3
                             WHERE id = ?1 AND stripe_price_id IS NULL",
                            params![id, stored, plinth_core::storage::db::now_rfc3339()],
                        )?;
                        if n == 1 {
                            record(
                                tx,
                                &AuditEntry::new("billing.plan_synced")
                                    .target("plan", &id)
                                    .details(details),
                            )?;
                        }
                        Ok(n == 1)
                    })
                    .await?;
                changed |= updated;
                if updated {
                    format!(
                        "{}: on sale as {price} ({}, product {product})",
                        plan.id,
                        price_text(&plan)
                    )
                } else {
                    format!(
                        "{}: a price id was set meanwhile; {price} was created but not stored",
                        plan.id
                    )
                }
            }
            (Step::Sell, _) => format!(
                "{}: would create product plinth_{} and a price of {}",
                plan.id,
                plan.id,
                price_text(&plan)
            ),
        };
        lines.push(line);
    }
    if changed {
        reload_catalog(platform, shared).await?;
    }
    Ok(lines)
}
