//! plinth-billing: plans, Stripe subscriptions (Checkout, Billing Portal, webhooks,
//! reconciliation), metered usage, invoices, and core's `Entitlements` seam (seat
//! limits, quotas and plan features). Without STRIPE_SECRET_KEY it runs in local
//! mode: staff set plans, and Plinth issues its own invoices at each period end.

mod access;
mod account;
mod api;
mod catalog_sync;
pub mod cli;
mod invoices;
mod plans;
mod seed;
pub mod signature;
mod stripe;
mod usage;
mod webhooks;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plinth_core::audit::{AuditEntry, record};
use plinth_core::params;
use plinth_core::platform::JobHandler;
use plinth_core::runtime::events::{Event, EventBusBuilder};
use plinth_core::seed::SeedContext;
use plinth_core::seed::SeedOptions;
use plinth_core::storage::migrations::Migration;
use plinth_core::storage::sql::Sql;
use plinth_core::tenancy::{Entitlements, TenantTable};
use plinth_core::{ApiPart, Config, Error, Platform, Plugin, Result, Schedule};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::plans::{Catalog, Plans};
use crate::stripe::Stripe;
pub use crate::stripe::api_version as stripe_api_version;

/// State shared by the API, the jobs and the entitlements seam.
pub(crate) struct Shared {
    plans: Plans,
    stripe: OnceLock<Option<Stripe>>,
    grace: OnceLock<Duration>,
}

impl Shared {
    pub(crate) fn catalog(&self, conn: &Sql<'_>) -> Result<Arc<Catalog>> {
        self.plans.current(conn)
    }

    pub(crate) fn reload_plans(&self, conn: &Sql<'_>) -> Result<Arc<Catalog>> {
        self.plans.reload(conn)
    }

    /// The Stripe client, or `None` in local mode.
    pub(crate) fn stripe(&self, config: &Config) -> Result<Option<&Stripe>> {
        if let Some(s) = self.stripe.get() {
            return Ok(s.as_ref());
        }
        let client = Stripe::from_config(config)?;
        Ok(self.stripe.get_or_init(|| client).as_ref())
    }

    pub(crate) fn grace(&self) -> Duration {
        self.grace
            .get()
            .copied()
            .unwrap_or(Duration::from_secs(7 * 86_400))
    }

    /// The bound org's account and the plan it is entitled to now.
    pub(crate) fn entitled(&self, conn: &Sql<'_>) -> Result<(account::Account, Arc<Catalog>)> {
        let org: Option<Uuid> = conn.query_one("SELECT current_org()", params![], |r| r.get(0))?;
        let org = org.ok_or_else(|| Error::internal("entitlements asked on an unbound connection"))?;
        let catalog = self.catalog(conn)?;
        let account = account::load(conn, org, &catalog, OffsetDateTime::now_utc())?;
        Ok((account, catalog))
    }
}

/// Records a billing change: an audit entry, and an event (which the activity feed
/// and the flags' plan cache follow), in the caller's transaction.
pub(crate) fn record_change(
    tx: &Sql<'_>,
    platform: &Platform,
    org: Uuid,
    actor: Option<&str>,
    action: &'static str,
    summary: String,
    details: Value,
) -> Result<()> {
    let mut entry = AuditEntry::new(action)
        .org(org)
        .target("org", org)
        .details(details.clone());
    if let Some(actor) = actor {
        entry = entry.actor(actor);
    }
    record(tx, &entry)?;
    // Activity names people: an API key's change (`api_key:<id>`) has no user.
    let user = actor.and_then(|a| Uuid::parse_str(a).ok());
    let event = Event::new(action, json!({ "summary": summary, "details": details }))
        .org(org)
        .actor(user);
    platform.events().publish(tx, &event)
}

/// Core's seam, answered from the bound org's account and the catalogue.
struct PlanEntitlements(Arc<Shared>);

impl Entitlements for PlanEntitlements {
    fn seat_limit(&self, conn: &Sql<'_>) -> Result<Option<u32>> {
        let (account, catalog) = self.0.entitled(conn)?;
        let plan = account.effective_plan(&catalog, self.0.grace(), OffsetDateTime::now_utc())?;
        Ok(plan.seat_limit)
    }

    fn plan(&self, conn: &Sql<'_>) -> Result<Option<String>> {
        let (account, catalog) = self.0.entitled(conn)?;
        let plan = account.effective_plan(&catalog, self.0.grace(), OffsetDateTime::now_utc())?;
        Ok(Some(plan.id.clone()))
    }

    fn has_feature(&self, conn: &Sql<'_>, feature: &str) -> Result<bool> {
        let (account, catalog) = self.0.entitled(conn)?;
        let plan = account.effective_plan(&catalog, self.0.grace(), OffsetDateTime::now_utc())?;
        Ok(plan.features.iter().any(|f| f == feature))
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tenant_billing_accounts", "billing_plans"]
    }
}

/// The billing plugin.
pub struct Billing {
    shared: Arc<Shared>,
}

impl Billing {
    pub fn new() -> Arc<Billing> {
        Arc::new(Billing {
            shared: Arc::new(Shared {
                plans: Plans::default(),
                stripe: OnceLock::new(),
                grace: OnceLock::new(),
            }),
        })
    }

    /// Runs one stored webhook event again (`plinth billing reprocess`).
    pub async fn reprocess(&self, platform: &Platform, event_id: &str) -> Result<String> {
        self.init(platform.config());
        webhooks::reprocess(platform, &self.shared, event_id).await
    }

    /// Re-reads every Stripe customer and subscription and repairs drift
    /// (`plinth billing reconcile`); returns one line per change.
    pub async fn reconcile(&self, platform: &Platform) -> Result<Vec<String>> {
        self.init(platform.config());
        webhooks::reconcile(platform, &self.shared).await
    }

    /// Creates a Stripe product and price for every paid plan without a price id
    /// and stores the ids (`plinth billing sync-plans`); returns one line per plan.
    /// `dry_run` only says what it would do.
    pub async fn sync_plans(&self, platform: &Platform, dry_run: bool) -> Result<Vec<String>> {
        self.init(platform.config());
        catalog_sync::sync_plans(platform, &self.shared, dry_run).await
    }

    fn init(&self, config: &Config) {
        let _ = self.shared.grace.set(config.billing_grace);
    }
}

impl Plugin for Billing {
    fn name(&self) -> &'static str {
        "billing"
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn description(&self) -> &'static str {
        "Billing: plans, Stripe subscriptions and webhooks, usage, invoices, entitlements"
    }

    fn migrations(&self) -> Result<Vec<Migration>> {
        Ok(plinth_core::embed_migrations!(
            "billing",
            "../../data/migrations/billing/",
            ["0001_create_billing.sql", "0002_usage_totals.sql"],
            postgres: each
        )?)
    }

    fn tenant_tables(&self) -> Vec<TenantTable> {
        vec![
            TenantTable::new("billing_accounts"),
            // A ledger: only the report stamp changes once recorded.
            TenantTable::new("usage_events")
                .updatable(&["reported_at"])
                .no_delete("usage events are immutable"),
            // Written by a trigger on usage_events, never directly.
            TenantTable::new("usage_totals").read_only("usage totals are derived from usage events"),
            // Local invoices are numbered by a trigger; invoices go only with their org.
            TenantTable::new("invoices")
                .generated(&["seq"])
                .immutable(&["source", "stripe_invoice_id", "created_at"])
                .no_delete("invoices are never deleted"),
        ]
    }

    fn api(&self, platform: &Platform) -> Result<Option<ApiPart>> {
        self.init(platform.config());
        let api = api::BillingApi {
            platform: platform.clone(),
            shared: self.shared.clone(),
        };
        let part = ApiPart::new((
            api::PlansApi(api.clone()),
            api::OrgBillingApi(api.clone()),
            api::UsageApi(api.clone()),
            api::WebhookApi(api.clone()),
            api::AdminBillingApi(api),
        ))?
        .tag_order(&["Billing", "Usage"])
        .permissions(&[
            ("getSubscription", "billing:read"),
            ("createCheckout", "billing:manage"),
            ("createPortalSession", "billing:manage"),
            ("cancelSubscription", "billing:manage"),
            ("resumeSubscription", "billing:manage"),
            ("listInvoices", "billing:manage"),
            ("getInvoice", "billing:manage"),
            ("getInvoiceHtml", "billing:manage"),
            ("recordUsage", "usage:record"),
            ("getUsage", "usage:read"),
        ])?;
        Ok(Some(part))
    }

    fn permissions(&self) -> Vec<plinth_core::tenancy::Permission> {
        access::permissions()
    }

    fn subscribe(&self, bus: &mut EventBusBuilder) {
        // Seat quantities follow the member count.
        for name in ["member.added", "member.removed"] {
            bus.on(name, |event, ctx| {
                if let Some(org) = event.org_id {
                    ctx.jobs
                        .enqueue(ctx.tx, usage::SYNC_SEATS_JOB, &json!({ "org_id": org }))?;
                }
                Ok(())
            });
        }
    }

    fn jobs(&self) -> Vec<JobHandler> {
        let shared = &self.shared;
        vec![
            webhooks::process_job(shared.clone()),
            webhooks::reconcile_job(shared.clone()),
            usage::report_job(shared.clone()),
            usage::sync_seats_job(shared.clone()),
            invoices::close_periods_job(shared.clone()),
        ]
    }

    fn schedules(&self) -> Vec<Schedule> {
        vec![
            Schedule {
                kind: webhooks::RECONCILE_JOB,
                every: Duration::from_secs(86_400),
            },
            Schedule {
                kind: invoices::CLOSE_PERIODS_JOB,
                every: Duration::from_secs(3_600),
            },
        ]
    }

    fn entitlements(&self) -> Option<Arc<dyn Entitlements>> {
        Some(Arc::new(PlanEntitlements(self.shared.clone())))
    }

    fn seed(&self, ctx: &SeedContext<'_>, options: &SeedOptions) -> Result<()> {
        seed::seed(ctx, options, &self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/migrations/billing");
        let on_disk = Migration::load_dir("billing", &dir).expect("read dir");
        assert_eq!(on_disk, Billing::new().migrations().expect("embedded"));
    }
}
