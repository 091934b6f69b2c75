//! The billing API: public plans; an org's subscription, checkout, portal, cancel
//! and resume, invoices and usage; the Stripe webhook; staff management of plans,
//! local subscriptions and the webhook inbox.

use std::collections::BTreeMap;
use std::sync::Arc;

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::http::pagination::Page;
use plinth_core::identity::auth::StaffAuth;

use crate::access::{ManageBilling, ReadBilling, ReadUsage, RecordUsage};
use plinth_core::params;
use plinth_core::storage::sql::Row;
use plinth_core::tenancy::{Tenant, bound};
use plinth_core::{Error, FieldError, Platform, Result};
use poem::{Request, RequestBody};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Html, Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::account::{self, Account, SubscriptionStatus, add_interval};
use crate::invoices::{self, Invoice, InvoiceStatus};
use crate::plans::{self, Catalog, Interval, Over, Plan, Quota};
use crate::usage::{self, valid_metric};
use crate::webhooks::Outcome;
use crate::{Shared, record_change, webhooks};

#[derive(Clone)]
pub(crate) struct BillingApi {
    pub platform: Platform,
    pub shared: Arc<Shared>,
}

#[derive(Tags)]
enum BillingTag {
    /// Plans, subscriptions, checkout and invoices.
    Billing,
    /// Metered usage against the plan's quotas.
    Usage,
    /// Plans, local subscriptions and the webhook inbox (platform staff).
    AdminBilling,
}

impl BillingApi {
    async fn catalog(&self) -> Result<Arc<Catalog>> {
        webhooks::catalog(&self.platform, &self.shared).await
    }

    fn local_mode(&self) -> Result<bool> {
        Ok(self.shared.stripe(self.platform.config())?.is_none())
    }

    /// A URL the browser is sent back to must be on the frontend's origin.
    fn return_url(&self, field: &str, given: Option<String>, default: String) -> Result<String> {
        let app = self.platform.config().app_url.trim_end_matches('/');
        match given {
            None => Ok(format!("{app}{default}")),
            Some(url)
                if url == app
                    || url.starts_with(&format!("{app}/"))
                    || url.starts_with(&format!("{app}?")) =>
            {
                Ok(url)
            }
            Some(_) => Err(Error::invalid(field, format!("must be a URL under {app}"))),
        }
    }

    async fn subscription_view(&self, org: Uuid) -> Result<SubscriptionView> {
        let catalog = self.catalog().await?;
        let shared = self.shared.clone();
        let local = self.local_mode()?;
        self.platform
            .tenancy()
            .bind(org)
            .call(move |conn| {
                let now = OffsetDateTime::now_utc();
                let account = account::load(conn, org, &catalog, now)?;
                let seats_used = bound::count_members(conn)?;
                SubscriptionView::new(&account, &catalog, shared.grace(), now, seats_used, local)
            })
            .await
    }
}

/// A metered allowance per billing period.
#[derive(Object, Clone)]
struct QuotaView {
    metric: String,
    limit: i64,
    /// `block` refuses usage past the limit (402); `bill` charges the overage.
    over: Over,
    /// Overage price per `unit_size` units, in minor units (cents).
    unit_price_cents: i64,
    unit_size: i64,
}

fn quota_views(quotas: &BTreeMap<String, Quota>) -> Vec<QuotaView> {
    quotas
        .iter()
        .map(|(metric, q)| QuotaView {
            metric: metric.clone(),
            limit: q.limit,
            over: q.over,
            unit_price_cents: q.unit_price_cents,
            unit_size: q.unit_size,
        })
        .collect()
}

#[derive(Object, Clone)]
struct PlanView {
    id: String,
    name: String,
    description: String,
    /// Price per interval in minor units (cents).
    price_cents: i64,
    currency: String,
    interval: Interval,
    /// Members plus pending invitations allowed; null = unlimited.
    seat_limit: Option<u32>,
    quotas: Vec<QuotaView>,
    /// Plan features (flags can target plans too).
    features: Vec<String>,
    trial_days: u32,
    /// The plan of orgs without a subscription.
    is_default: bool,
    /// Whether it can be bought with Stripe Checkout.
    purchasable: bool,
    /// Staff only: archived plans keep their subscribers but cannot be bought.
    #[oai(skip_serializing_if_is_none)]
    archived: Option<bool>,
    /// Staff only.
    #[oai(skip_serializing_if_is_none)]
    stripe_price_id: Option<String>,
}

impl PlanView {
    fn new(plan: &Plan, staff: bool) -> Self {
        PlanView {
            id: plan.id.clone(),
            name: plan.name.clone(),
            description: plan.description.clone(),
            price_cents: plan.price_cents,
            currency: plan.currency.clone(),
            interval: plan.interval,
            seat_limit: plan.seat_limit,
            quotas: quota_views(&plan.quotas),
            features: plan.features.clone(),
            trial_days: plan.trial_days,
            is_default: plan.is_default,
            purchasable: plan.stripe_price_id.is_some() && !plan.archived,
            archived: staff.then_some(plan.archived),
            stripe_price_id: if staff { plan.stripe_price_id.clone() } else { None },
        }
    }
}

#[derive(Object)]
struct PlanList {
    items: Vec<PlanView>,
}

#[derive(Object)]
struct Seats {
    used: u32,
    /// Null = unlimited.
    limit: Option<u32>,
}

/// Where subscriptions are managed: Stripe, or Plinth alone (no STRIPE_SECRET_KEY).
#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum SubscriptionMode {
    Stripe,
    Local,
}

#[derive(Object)]
struct SubscriptionView {
    /// The plan subscribed to.
    plan: PlanView,
    /// The plan in force now (the default plan once a subscription lapses).
    effective_plan_id: String,
    status: SubscriptionStatus,
    mode: SubscriptionMode,
    current_period_start: OffsetDateTime,
    current_period_end: OffsetDateTime,
    cancel_at_period_end: bool,
    trial_end: Option<OffsetDateTime>,
    /// While past due: when the plan's entitlements end.
    grace_until: Option<OffsetDateTime>,
    seats: Seats,
    /// Whether a Stripe customer exists (the portal is available).
    has_billing_account: bool,
}

impl SubscriptionView {
    fn new(
        account: &Account,
        catalog: &Catalog,
        grace: std::time::Duration,
        now: OffsetDateTime,
        seats_used: u32,
        local: bool,
    ) -> Result<Self> {
        let plan = match catalog.get(&account.plan_id) {
            Some(p) => p,
            None => catalog.default_plan()?,
        };
        let effective = account.effective_plan(catalog, grace, now)?;
        let (start, end) = account.period(catalog, now);
        Ok(SubscriptionView {
            plan: PlanView::new(plan, false),
            effective_plan_id: effective.id.clone(),
            status: SubscriptionStatus::parse(&account.status)
                .ok_or_else(|| Error::internal(format!("stored subscription status `{}`", account.status)))?,
            mode: if local {
                SubscriptionMode::Local
            } else {
                SubscriptionMode::Stripe
            },
            current_period_start: start,
            current_period_end: end,
            cancel_at_period_end: account.cancel_at_period_end,
            trial_end: account.trial_end,
            grace_until: account
                .past_due_since
                .filter(|_| account.status == "past_due")
                .map(|since| since + time::Duration::seconds(grace.as_secs() as i64)),
            seats: Seats {
                used: seats_used,
                limit: effective.seat_limit,
            },
            has_billing_account: account.stripe_customer_id.is_some(),
        })
    }
}

#[derive(Object)]
struct CheckoutRequest {
    plan_id: String,
    /// Where Stripe sends the browser after paying; must be under APP_URL.
    success_url: Option<String>,
    /// Where Stripe sends the browser when the buyer goes back; under APP_URL.
    cancel_url: Option<String>,
}

#[derive(Object)]
struct PortalRequest {
    /// Where the portal's "return" link goes; must be under APP_URL.
    return_url: Option<String>,
}

#[derive(Object)]
struct RedirectUrl {
    url: String,
}

#[derive(Object)]
struct LineView {
    description: String,
    quantity: i64,
    /// Minor units (cents).
    amount: i64,
}

/// Where an invoice comes from: mirrored from Stripe, or issued by Plinth in local
/// mode.
#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum InvoiceSource {
    Stripe,
    Local,
}

#[derive(Object)]
struct InvoiceView {
    id: Uuid,
    source: InvoiceSource,
    number: Option<String>,
    status: InvoiceStatus,
    currency: String,
    subtotal: i64,
    tax: i64,
    total: i64,
    amount_due: i64,
    amount_paid: i64,
    period_start: Option<String>,
    period_end: Option<String>,
    lines: Vec<LineView>,
    /// Stripe's hosted page.
    hosted_url: Option<String>,
    /// Stripe's PDF.
    pdf_url: Option<String>,
    /// A printable HTML rendering served by Plinth.
    html_url: String,
    created_at: String,
}

impl InvoiceView {
    fn new(org: Uuid, i: Invoice) -> Result<Self> {
        let id = Uuid::parse_str(&i.id).map_err(Error::internal)?;
        Ok(InvoiceView {
            id,
            html_url: format!("/api/orgs/{org}/billing/invoices/{id}/html"),
            source: match i.source.as_str() {
                "stripe" => InvoiceSource::Stripe,
                _ => InvoiceSource::Local,
            },
            number: i.number,
            status: InvoiceStatus::parse(&i.status)
                .ok_or_else(|| Error::internal(format!("stored invoice status `{}`", i.status)))?,
            currency: i.currency,
            subtotal: i.subtotal,
            tax: i.tax,
            total: i.total,
            amount_due: i.amount_due,
            amount_paid: i.amount_paid,
            period_start: i.period_start,
            period_end: i.period_end,
            lines: i
                .lines
                .into_iter()
                .map(|l| LineView {
                    description: l.description,
                    quantity: l.quantity,
                    amount: l.amount,
                })
                .collect(),
            hosted_url: i.hosted_url,
            pdf_url: i.pdf_url,
            created_at: i.created_at,
        })
    }
}

#[derive(Object)]
struct InvoicePage {
    items: Vec<InvoiceView>,
    next_cursor: Option<String>,
}

#[derive(Object)]
struct UsageRequest {
    /// Lowercase letters, digits, `_`, `.` and `-`; at most 64.
    metric: String,
    /// A positive whole number.
    quantity: i64,
    /// The same key records the usage once however often it is sent (1-255 chars).
    idempotency_key: String,
}

#[derive(Object)]
struct UsageRecorded {
    id: Uuid,
    metric: String,
    quantity: i64,
    idempotency_key: String,
    recorded_at: String,
    /// False when the key was seen before: this is the original record.
    created: bool,
    /// The metric's total this period, including this event.
    period_total: i64,
    /// The plan's quota for the metric; null = none.
    limit: Option<i64>,
}

#[derive(ApiResponse)]
enum UsageResponse {
    /// Recorded.
    #[oai(status = 201)]
    Created(Json<UsageRecorded>),
    /// Already recorded under this idempotency key: the original record.
    #[oai(status = 200)]
    Replayed(Json<UsageRecorded>),
}

#[derive(Object)]
struct MetricUsage {
    metric: String,
    used: i64,
    /// Null = no quota.
    limit: Option<i64>,
    /// Null = no quota.
    remaining: Option<i64>,
    /// Null without a quota.
    over: Option<Over>,
    /// What the overage costs so far, in minor units.
    overage_cents: i64,
}

#[derive(Object)]
struct UsageSummary {
    period_start: String,
    period_end: String,
    plan_id: String,
    metrics: Vec<MetricUsage>,
}

/// The raw JSON of a Stripe delivery: kept byte for byte, since the signature is
/// over those bytes.
pub(crate) struct RawJson(Vec<u8>);

impl Payload for RawJson {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("object")))
    }
}

impl ParsePayload for RawJson {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        Ok(RawJson(
            <Vec<u8> as poem::FromRequest>::from_request(request, body).await?,
        ))
    }
}

poem_openapi::impl_apirequest_for_payload!(RawJson,);

#[derive(Object)]
struct WebhookAck {
    received: bool,
    /// True when this event id had been received before (nothing was changed).
    duplicate: bool,
}

#[derive(Object)]
struct PlanRequest {
    /// Lowercase letters, digits, `-` and `_`; immutable once created.
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    price_cents: Option<i64>,
    currency: Option<String>,
    interval: Option<Interval>,
    stripe_price_id: Option<String>,
    seat_limit: Option<u32>,
    quotas: Option<Vec<QuotaView>>,
    features: Option<Vec<String>>,
    trial_days: Option<u32>,
    is_default: Option<bool>,
    archived: Option<bool>,
    position: Option<i64>,
}

#[derive(Object)]
struct SetSubscriptionRequest {
    plan_id: String,
    /// Default `active` (`trialing` with `trial_days`); any Stripe status, to
    /// represent e.g. an unpaid local account.
    status: Option<SubscriptionStatus>,
    /// Trial length in days from now (sets status `trialing`).
    trial_days: Option<u32>,
}

#[derive(Object)]
struct ClosedPeriod {
    /// The invoice issued for the closed period; absent when there was nothing to charge.
    #[oai(skip_serializing_if_is_none)]
    invoice: Option<InvoiceView>,
}

#[derive(Object)]
struct WebhookEventView {
    id: String,
    #[oai(rename = "type")]
    kind: String,
    api_version: Option<String>,
    /// Stripe's `created` (unix seconds).
    stripe_created: i64,
    received_at: String,
    processed_at: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    outcome: Outcome,
    /// What processing did, in a sentence (null until processed).
    outcome_detail: Option<String>,
    /// Only on the single-event read.
    #[oai(skip_serializing_if_is_none)]
    payload: Option<serde_json::Value>,
}

#[derive(Object)]
struct WebhookEventPage {
    items: Vec<WebhookEventView>,
    next_cursor: Option<String>,
}

#[derive(Object)]
struct Reprocessed {
    outcome: Outcome,
    /// What processing did, or why it failed, in a sentence.
    detail: String,
}

#[derive(ApiResponse)]
enum PlanCreated {
    /// Created.
    #[oai(status = 201)]
    Plan(Json<PlanView>),
}

fn valid_plan_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn apply_plan_request(plan: &mut Plan, body: PlanRequest, errors: &mut Vec<FieldError>) {
    let mut bad = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    if let Some(name) = body.name {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            bad("name", "must be 1 to 100 characters");
        }
        plan.name = name;
    }
    if let Some(d) = body.description {
        if d.chars().count() > 1000 {
            bad("description", "must be at most 1000 characters");
        }
        plan.description = d;
    }
    if let Some(price) = body.price_cents {
        if !(0..=100_000_000).contains(&price) {
            bad("price_cents", "must be from 0 to 100000000");
        }
        plan.price_cents = price;
    }
    if let Some(c) = body.currency {
        let c = c.to_ascii_lowercase();
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_lowercase()) {
            bad("currency", "must be a three-letter ISO 4217 code");
        }
        plan.currency = c;
    }
    if let Some(i) = body.interval {
        plan.interval = i;
    }
    if let Some(p) = body.stripe_price_id {
        let p = p.trim().to_string();
        if p.is_empty() {
            plan.stripe_price_id = None;
        } else if !p.starts_with("price_") || p.len() > 255 {
            bad("stripe_price_id", "must be a Stripe price id (price_...)");
        } else {
            plan.stripe_price_id = Some(p);
        }
    }
    if let Some(seats) = body.seat_limit {
        if seats == 0 {
            bad("seat_limit", "must be at least 1 (omit it for unlimited)");
        }
        plan.seat_limit = Some(seats);
    }
    if let Some(quotas) = body.quotas {
        let mut map = BTreeMap::new();
        for (i, q) in quotas.into_iter().enumerate() {
            let over = q.over;
            if !valid_metric(&q.metric) {
                bad(&format!("quotas[{i}].metric"), "must be 1-64 of a-z, 0-9, _ . -");
            }
            if q.limit < 0 || q.unit_price_cents < 0 || q.unit_size < 1 {
                bad(
                    &format!("quotas[{i}]"),
                    "limit and unit_price_cents must be >= 0, unit_size >= 1",
                );
            }
            map.insert(
                q.metric,
                Quota {
                    limit: q.limit,
                    over,
                    unit_price_cents: q.unit_price_cents,
                    unit_size: q.unit_size,
                },
            );
        }
        plan.quotas = map;
    }
    if let Some(features) = body.features {
        if features.iter().any(|f| f.is_empty() || f.len() > 64) || features.len() > 100 {
            bad("features", "must be at most 100 names of 1-64 characters");
        }
        plan.features = features;
    }
    if let Some(days) = body.trial_days {
        if days > 365 {
            bad("trial_days", "must be at most 365");
        }
        plan.trial_days = days;
    }
    if let Some(d) = body.is_default {
        if !d && plan.is_default {
            bad("is_default", "make another plan the default instead");
        }
        plan.is_default = d;
    }
    if let Some(a) = body.archived {
        plan.archived = a;
    }
    if let Some(p) = body.position {
        plan.position = p;
    }
    if plan.is_default && plan.archived {
        bad("archived", "the default plan cannot be archived");
    }
}

#[derive(Clone)]
pub(crate) struct PlansApi(pub BillingApi);

#[OpenApi(tag = "BillingTag::Billing")]
impl PlansApi {
    /// The plans on offer (public).
    #[oai(path = "/api/billing/plans", method = "get", operation_id = "listPlans")]
    async fn list(&self) -> Result<Json<PlanList>> {
        let catalog = self.0.catalog().await?;
        Ok(Json(PlanList {
            items: catalog
                .all()
                .iter()
                .filter(|p| !p.archived)
                .map(|p| PlanView::new(p, false))
                .collect(),
        }))
    }
}

#[derive(Clone)]
pub(crate) struct OrgBillingApi(pub BillingApi);

#[OpenApi(tag = "BillingTag::Billing")]
impl OrgBillingApi {
    /// The org's plan, subscription status, period and seats (any member).
    #[oai(
        path = "/api/orgs/:org_id/billing/subscription",
        method = "get",
        operation_id = "getSubscription"
    )]
    async fn subscription(
        &self,
        access: ReadBilling,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<Json<SubscriptionView>> {
        let tenant = access.0;
        Ok(Json(self.0.subscription_view(tenant.org_id).await?))
    }

    /// Starts a Stripe Checkout for a plan; returns the page to send the browser to
    /// (owner or admin).
    #[oai(
        path = "/api/orgs/:org_id/billing/checkout",
        method = "post",
        operation_id = "createCheckout"
    )]
    async fn checkout(
        &self,
        access: ManageBilling,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<CheckoutRequest>,
    ) -> Result<Json<RedirectUrl>> {
        let tenant = access.0;
        let org = tenant.org_id;
        let CheckoutRequest {
            plan_id,
            success_url,
            cancel_url,
        } = body.0;
        let success = self.0.return_url(
            "success_url",
            success_url,
            format!("/orgs/{org}/billing?checkout=success"),
        )?;
        let cancel = self.0.return_url(
            "cancel_url",
            cancel_url,
            format!("/orgs/{org}/billing?checkout=canceled"),
        )?;
        let catalog = self.0.catalog().await?;
        let plan = catalog
            .get(&plan_id)
            .filter(|p| !p.archived)
            .ok_or_else(|| Error::invalid("plan_id", "no such plan"))?
            .clone();
        let Some(stripe) = self.0.shared.stripe(self.0.platform.config())?.cloned() else {
            return Err(Error::Conflict(
                "billing runs in local mode (no STRIPE_SECRET_KEY): platform staff change plans".into(),
            ));
        };
        let Some(price) = plan.stripe_price_id.clone() else {
            return Err(Error::invalid("plan_id", "this plan cannot be bought online"));
        };
        let c = catalog.clone();
        let (account, org_name, seats) = tenant
            .db()
            .call(move |conn| {
                let account = account::load(conn, org, &c, OffsetDateTime::now_utc())?;
                let name = bound::get_org(conn)?.map(|o| o.name).unwrap_or_default();
                Ok((account, name, bound::count_members(conn)?))
            })
            .await?;
        let live = account.stripe_subscription_id.is_some()
            && matches!(
                account.status.as_str(),
                "active" | "trialing" | "past_due" | "unpaid" | "paused"
            );
        if live {
            return Err(Error::Conflict(
                "the org already has a subscription: change or cancel it in the billing portal".into(),
            ));
        }
        let customer = match account.stripe_customer_id.clone() {
            Some(c) => c,
            None => {
                // A member's email goes to Stripe; an API key has none.
                let email = match tenant.user_id() {
                    Some(user) => self
                        .0
                        .platform
                        .db()
                        .call(move |conn| plinth_core::identity::users::get(conn, user))
                        .await?
                        .map(|u| u.email),
                    None => None,
                };
                let customer = stripe.create_customer(org, &org_name, email.as_deref()).await?;
                webhooks::link_customer(&self.0.platform, customer.clone(), org).await?;
                let (c, id) = (catalog.clone(), customer.clone());
                tenant
                    .db()
                    .write(move |tx| {
                        let mut account = account::load(tx, org, &c, OffsetDateTime::now_utc())?;
                        account.stripe_customer_id = Some(id);
                        account::save(tx, &mut account)
                    })
                    .await?;
                customer
            }
        };
        let url = stripe
            .checkout(
                org,
                &customer,
                &price,
                seats.into(),
                plan.trial_days,
                &success,
                &cancel,
            )
            .await?;
        let user = tenant.actor_id();
        tenant
            .db()
            .write(move |tx| {
                record(
                    tx,
                    &AuditEntry::new("billing.checkout_started")
                        .actor(user)
                        .org(org)
                        .target("org", org)
                        .client(&client)
                        .details(json!({ "plan": plan.id })),
                )?;
                Ok(())
            })
            .await?;
        Ok(Json(RedirectUrl { url }))
    }

    /// A Stripe Billing Portal session for the org's customer (owner or admin).
    #[oai(
        path = "/api/orgs/:org_id/billing/portal",
        method = "post",
        operation_id = "createPortalSession"
    )]
    async fn portal(
        &self,
        access: ManageBilling,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<PortalRequest>,
    ) -> Result<Json<RedirectUrl>> {
        let tenant = access.0;
        let org = tenant.org_id;
        let back = self
            .0
            .return_url("return_url", body.0.return_url, format!("/orgs/{org}/billing"))?;
        let Some(stripe) = self.0.shared.stripe(self.0.platform.config())?.cloned() else {
            return Err(Error::Conflict(
                "billing runs in local mode (no STRIPE_SECRET_KEY): there is no billing portal".into(),
            ));
        };
        let catalog = self.0.catalog().await?;
        let account = tenant
            .db()
            .call(move |conn| account::load(conn, org, &catalog, OffsetDateTime::now_utc()))
            .await?;
        let Some(customer) = account.stripe_customer_id else {
            return Err(Error::Conflict(
                "the org has no billing account yet: start a checkout first".into(),
            ));
        };
        let url = stripe.portal(&customer, &back).await?;
        let user = tenant.actor_id();
        tenant
            .db()
            .write(move |tx| {
                record(
                    tx,
                    &AuditEntry::new("billing.portal_opened")
                        .actor(user)
                        .org(org)
                        .target("org", org)
                        .client(&client),
                )?;
                Ok(())
            })
            .await?;
        Ok(Json(RedirectUrl { url }))
    }

    /// Cancels the subscription at the end of the current period (owner or admin).
    #[oai(
        path = "/api/orgs/:org_id/billing/cancel",
        method = "post",
        operation_id = "cancelSubscription"
    )]
    async fn cancel(
        &self,
        access: ManageBilling,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<Json<SubscriptionView>> {
        self.set_cancel(access.0, true).await
    }

    /// Undoes a cancellation scheduled for the period's end (owner or admin).
    #[oai(
        path = "/api/orgs/:org_id/billing/resume",
        method = "post",
        operation_id = "resumeSubscription"
    )]
    async fn resume(
        &self,
        access: ManageBilling,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<Json<SubscriptionView>> {
        self.set_cancel(access.0, false).await
    }

    /// The org's invoices, newest first (owner or admin).
    #[oai(
        path = "/api/orgs/:org_id/billing/invoices",
        method = "get",
        operation_id = "listInvoices"
    )]
    async fn invoices(
        &self,
        access: ManageBilling,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<Json<InvoicePage>> {
        let tenant = access.0;
        let page = Page::parse(limit.0, cursor.0)?;
        let rows = tenant
            .db()
            .call(move |conn| invoices::list(conn, page.fetch(), page.after))
            .await?;
        let (rows, next_cursor) = page.finish(rows, |i| Uuid::parse_str(&i.id).unwrap_or_default());
        let org = tenant.org_id;
        Ok(Json(InvoicePage {
            items: rows
                .into_iter()
                .map(|i| InvoiceView::new(org, i))
                .collect::<Result<_>>()?,
            next_cursor,
        }))
    }

    /// One invoice (owner or admin).
    #[oai(
        path = "/api/orgs/:org_id/billing/invoices/:invoice_id",
        method = "get",
        operation_id = "getInvoice"
    )]
    async fn invoice(
        &self,
        access: ManageBilling,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        invoice_id: Path<Uuid>,
    ) -> Result<Json<InvoiceView>> {
        let tenant = access.0;
        let id = invoice_id.0;
        let invoice = tenant
            .db()
            .call(move |conn| invoices::get(conn, id))
            .await?
            .ok_or_else(|| Error::NotFound("no such invoice".into()))?;
        Ok(Json(InvoiceView::new(tenant.org_id, invoice)?))
    }

    /// The invoice as a printable HTML document (owner or admin).
    #[oai(
        path = "/api/orgs/:org_id/billing/invoices/:invoice_id/html",
        method = "get",
        operation_id = "getInvoiceHtml"
    )]
    async fn invoice_html(
        &self,
        access: ManageBilling,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        invoice_id: Path<Uuid>,
    ) -> Result<Html<String>> {
        let tenant = access.0;
        let id = invoice_id.0;
        let (invoice, org_name) = tenant
            .db()
            .call(move |conn| Ok((invoices::get(conn, id)?, bound::get_org(conn)?.map(|o| o.name))))
            .await?;
        let invoice = invoice.ok_or_else(|| Error::NotFound("no such invoice".into()))?;
        Ok(Html(invoices::render_html(
            &invoice,
            &org_name.unwrap_or_default(),
        )))
    }
}

impl OrgBillingApi {
    async fn set_cancel(&self, tenant: Tenant, cancel: bool) -> Result<Json<SubscriptionView>> {
        let org = tenant.org_id;
        let catalog = self.0.catalog().await?;
        let c = catalog.clone();
        let account = tenant
            .db()
            .call(move |conn| account::load(conn, org, &c, OffsetDateTime::now_utc()))
            .await?;
        let default = catalog.default_plan()?.id.clone();
        let live = matches!(account.status.as_str(), "active" | "trialing" | "past_due");
        if !account.stored || account.plan_id == default || !live {
            return Err(Error::Conflict(
                "the org has no paid subscription to cancel or resume".into(),
            ));
        }
        if account.cancel_at_period_end == cancel {
            return Ok(Json(self.0.subscription_view(org).await?));
        }
        let user = tenant.actor_id();
        match (
            self.0.shared.stripe(self.0.platform.config())?.cloned(),
            &account.stripe_subscription_id,
        ) {
            (Some(stripe), Some(subscription)) => {
                let updated = stripe.set_cancel_at_period_end(subscription, cancel).await?;
                let now = OffsetDateTime::now_utc().unix_timestamp();
                webhooks::apply_subscription(&self.0.platform, &self.0.shared, org, updated, now, true)
                    .await?;
                tenant
                    .db()
                    .write(move |tx| {
                        record(
                            tx,
                            &AuditEntry::new(if cancel {
                                "billing.cancel_requested"
                            } else {
                                "billing.resume_requested"
                            })
                            .actor(user)
                            .org(org)
                            .target("org", org),
                        )?;
                        Ok(())
                    })
                    .await?;
            }
            _ => {
                let platform = self.0.platform.clone();
                tenant
                    .db()
                    .write(move |tx| {
                        let mut account = account::load(tx, org, &catalog, OffsetDateTime::now_utc())?;
                        let before = account.clone();
                        account.cancel_at_period_end = cancel;
                        account::save(tx, &mut account)?;
                        webhooks::log_transition(
                            tx,
                            &platform,
                            &catalog,
                            &before,
                            &account,
                            Some(&user),
                            "by a member",
                        )?;
                        Ok(())
                    })
                    .await?;
            }
        }
        Ok(Json(self.0.subscription_view(org).await?))
    }
}

#[derive(Clone)]
pub(crate) struct UsageApi(pub BillingApi);

#[OpenApi(tag = "BillingTag::Usage")]
impl UsageApi {
    /// Records metered usage, once per idempotency key (owner, admin or member).
    #[oai(
        path = "/api/orgs/:org_id/usage",
        method = "post",
        operation_id = "recordUsage"
    )]
    async fn record(
        &self,
        access: RecordUsage,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<UsageRequest>,
    ) -> Result<UsageResponse> {
        let tenant = access.0;
        let UsageRequest {
            metric,
            quantity,
            idempotency_key,
        } = body.0;
        let mut errors = Vec::new();
        if !valid_metric(&metric) {
            errors.push(FieldError {
                field: "metric".into(),
                message: "must be 1-64 of a-z, 0-9, _ . -".into(),
            });
        }
        if !(1..=1_000_000_000).contains(&quantity) {
            errors.push(FieldError {
                field: "quantity".into(),
                message: "must be from 1 to 1000000000".into(),
            });
        }
        if idempotency_key.is_empty() || idempotency_key.len() > 255 {
            errors.push(FieldError {
                field: "idempotency_key".into(),
                message: "must be 1 to 255 characters".into(),
            });
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let (org, actor) = (tenant.org_id, tenant.actor_id());
        let (platform, shared) = (self.0.platform.clone(), self.0.shared.clone());
        let recorded = tenant
            .db()
            .write(move |tx| {
                usage::record(
                    tx,
                    &platform,
                    &shared,
                    org,
                    &actor,
                    &metric,
                    quantity,
                    &idempotency_key,
                )
            })
            .await?;
        let view = UsageRecorded {
            id: Uuid::parse_str(&recorded.id).map_err(Error::internal)?,
            metric: recorded.metric,
            quantity: recorded.quantity,
            idempotency_key: recorded.idempotency_key,
            recorded_at: recorded.recorded_at,
            created: recorded.created,
            period_total: recorded.used,
            limit: recorded.limit,
        };
        Ok(if recorded.created {
            UsageResponse::Created(Json(view))
        } else {
            UsageResponse::Replayed(Json(view))
        })
    }

    /// Usage per metric in the current period against the plan's quotas (any member).
    #[oai(path = "/api/orgs/:org_id/usage", method = "get", operation_id = "getUsage")]
    async fn summary(
        &self,
        access: ReadUsage,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<Json<UsageSummary>> {
        let tenant = access.0;
        let (org, shared) = (tenant.org_id, self.0.shared.clone());
        let (start, end, totals, plan_id) = tenant
            .db()
            .call(move |conn| {
                let (start, end, totals) = usage::totals(conn, &shared, org)?;
                let (account, catalog) = shared.entitled(conn)?;
                let plan = account
                    .effective_plan(&catalog, shared.grace(), OffsetDateTime::now_utc())?
                    .id
                    .clone();
                Ok((start, end, totals, plan))
            })
            .await?;
        Ok(Json(UsageSummary {
            period_start: start,
            period_end: end,
            plan_id,
            metrics: totals
                .into_iter()
                .map(|t| MetricUsage {
                    limit: t.quota.as_ref().map(|q| q.limit),
                    remaining: t.quota.as_ref().map(|q| (q.limit - t.used).max(0)),
                    over: t.quota.as_ref().map(|q| q.over),
                    overage_cents: t.overage_cents,
                    metric: t.metric,
                    used: t.used,
                })
                .collect(),
        }))
    }
}

#[derive(Clone)]
pub(crate) struct WebhookApi(pub BillingApi);

#[OpenApi(tag = "BillingTag::Billing")]
impl WebhookApi {
    /// Stripe's webhook endpoint: verifies the signature, stores the event once and
    /// answers at once; the event is applied from the job queue.
    #[oai(
        path = "/api/webhooks/stripe",
        method = "post",
        operation_id = "stripeWebhook"
    )]
    async fn receive(
        &self,
        #[oai(name = "Stripe-Signature")] signature: Header<Option<String>>,
        body: RawJson,
    ) -> Result<Json<WebhookAck>> {
        let new = webhooks::receive(&self.0.platform, body.0, signature.0).await?;
        Ok(Json(WebhookAck {
            received: true,
            duplicate: !new,
        }))
    }
}

#[derive(Clone)]
pub(crate) struct AdminBillingApi(pub BillingApi);

fn event_view(r: &Row<'_>, with_payload: bool) -> Result<WebhookEventView> {
    let payload: Option<String> = if with_payload { r.get(9)? } else { None };
    Ok(WebhookEventView {
        id: r.get(0)?,
        kind: r.get(1)?,
        api_version: r.get(2)?,
        stripe_created: r.get(3)?,
        received_at: r.get(4)?,
        processed_at: r.get(5)?,
        attempts: r.get(6)?,
        outcome: Outcome::of(
            r.get::<Option<String>>(5)?.is_some(),
            r.get::<Option<String>>(8)?.as_deref(),
            r.get::<Option<String>>(7)?.as_deref(),
        ),
        last_error: r.get(7)?,
        outcome_detail: r.get(8)?,
        payload: payload.and_then(|p| serde_json::from_str(&p).ok()),
    })
}

const EVENT_COLUMNS: &str = "id, type, api_version, stripe_created, received_at, processed_at, attempts, last_error, outcome, payload";

#[OpenApi(tag = "BillingTag::AdminBilling")]
impl AdminBillingApi {
    /// Every plan, archived ones included (staff).
    #[oai(
        path = "/api/admin/billing/plans",
        method = "get",
        operation_id = "adminListPlans"
    )]
    async fn plans(&self, _auth: StaffAuth) -> Result<Json<PlanList>> {
        let catalog = self.0.catalog().await?;
        Ok(Json(PlanList {
            items: catalog.all().iter().map(|p| PlanView::new(p, true)).collect(),
        }))
    }

    /// Creates a plan (staff).
    #[oai(
        path = "/api/admin/billing/plans",
        method = "post",
        operation_id = "adminCreatePlan"
    )]
    async fn create_plan(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        body: Json<PlanRequest>,
    ) -> Result<PlanCreated> {
        let mut errors = Vec::new();
        let id = body.0.id.clone().unwrap_or_default();
        if !valid_plan_id(&id) {
            errors.push(FieldError {
                field: "id".into(),
                message: "is required: 1-64 of a-z, 0-9, - and _".into(),
            });
        }
        for (field, missing) in [
            ("name", body.0.name.is_none()),
            ("price_cents", body.0.price_cents.is_none()),
        ] {
            if missing {
                errors.push(FieldError {
                    field: field.into(),
                    message: "is required".into(),
                });
            }
        }
        let mut plan = Plan {
            id,
            name: String::new(),
            description: String::new(),
            price_cents: 0,
            currency: "usd".into(),
            interval: Interval::Month,
            stripe_price_id: None,
            seat_limit: None,
            quotas: BTreeMap::new(),
            features: Vec::new(),
            trial_days: 0,
            is_default: false,
            archived: false,
            position: 0,
        };
        apply_plan_request(&mut plan, body.0, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let view = self.save_plan(auth.0.user_id, client, plan, true).await?;
        Ok(PlanCreated::Plan(Json(view)))
    }

    /// Changes a plan (staff). Fields left out keep their values; `seat_limit` and
    /// `stripe_price_id` are cleared with `clear_seat_limit` / an empty string.
    #[oai(
        path = "/api/admin/billing/plans/:plan_id",
        method = "patch",
        operation_id = "adminUpdatePlan"
    )]
    async fn update_plan(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        plan_id: Path<String>,
        body: Json<PlanRequest>,
    ) -> Result<Json<PlanView>> {
        let catalog = self.0.catalog().await?;
        let mut plan = catalog
            .get(&plan_id.0)
            .cloned()
            .ok_or_else(|| Error::NotFound("no such plan".into()))?;
        let mut errors = Vec::new();
        if body.0.id.as_deref().is_some_and(|id| id != plan.id) {
            errors.push(FieldError {
                field: "id".into(),
                message: "cannot be changed".into(),
            });
        }
        apply_plan_request(&mut plan, body.0, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        Ok(Json(self.save_plan(auth.0.user_id, client, plan, false).await?))
    }

    /// Sets an org's plan directly: local mode, or an org without a Stripe
    /// subscription (staff). Starts a new period now.
    #[oai(
        path = "/api/admin/orgs/:org_id/billing/subscription",
        method = "put",
        operation_id = "adminSetSubscription"
    )]
    async fn set_subscription(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        org_id: Path<Uuid>,
        body: Json<SetSubscriptionRequest>,
    ) -> Result<Json<SubscriptionView>> {
        let org = org_id.0;
        let catalog = self.0.catalog().await?;
        let SetSubscriptionRequest {
            plan_id,
            status,
            trial_days,
        } = body.0;
        let plan = catalog
            .get(&plan_id)
            .cloned()
            .ok_or_else(|| Error::invalid("plan_id", "no such plan"))?;
        let status = status
            .unwrap_or(if trial_days.is_some() {
                SubscriptionStatus::Trialing
            } else {
                SubscriptionStatus::Active
            })
            .as_str()
            .to_string();
        if trial_days.is_some_and(|d| d == 0 || d > 365) {
            return Err(Error::invalid("trial_days", "must be from 1 to 365"));
        }
        if !self.0.platform.tenancy().org_exists(org).await? {
            return Err(Error::NotFound("no such organization".into()));
        }
        let (platform, actor) = (self.0.platform.clone(), auth.0.user_id);
        self.0
            .platform
            .tenancy()
            .bind(org)
            .write(move |tx| {
                let now = OffsetDateTime::now_utc();
                let mut account = account::load(tx, org, &catalog, now)?;
                let stripe_live = account.stripe_subscription_id.is_some()
                    && !matches!(account.status.as_str(), "canceled" | "incomplete_expired");
                if stripe_live {
                    return Err(Error::Conflict(
                        "this org's subscription is managed by Stripe: change it there or in the portal"
                            .into(),
                    ));
                }
                let before = account.clone();
                account.plan_id = plan.id.clone();
                account.status = status.clone();
                account.stripe_subscription_id = None;
                account.stripe_item_id = None;
                account.cancel_at_period_end = false;
                account.trial_end = trial_days.map(|d| now + time::Duration::days(d.into()));
                account.past_due_since = (status == "past_due").then_some(now);
                account.period_start = now;
                account.period_end = add_interval(now, plan.interval);
                account::save(tx, &mut account)?;
                record(
                    tx,
                    &AuditEntry::new("billing.plan_set")
                        .actor(actor)
                        .org(org)
                        .target("org", org)
                        .client(&client)
                        .details(json!({ "plan": plan.id, "status": status, "before": before.plan_id })),
                )?;
                let by = format!("set by platform staff to {}", plan.name);
                if !crate::webhooks::log_transition(
                    tx,
                    &platform,
                    &catalog,
                    &before,
                    &account,
                    Some(&actor.to_string()),
                    &by,
                )? {
                    record_change(
                        tx,
                        &platform,
                        org,
                        Some(&actor.to_string()),
                        "subscription.changed",
                        by,
                        json!({}),
                    )?;
                }
                crate::invoices::schedule_close(tx, &platform, org, account.period_end)?;
                Ok(())
            })
            .await?;
        self.0.platform.tenancy().forget_org(org);
        Ok(Json(self.0.subscription_view(org).await?))
    }

    /// Closes an org's local billing period now: issues its invoice and starts the
    /// next period (staff).
    #[oai(
        path = "/api/admin/orgs/:org_id/billing/close-period",
        method = "post",
        operation_id = "adminClosePeriod"
    )]
    async fn close_period(&self, _auth: StaffAuth, org_id: Path<Uuid>) -> Result<Json<ClosedPeriod>> {
        let org = org_id.0;
        if !self.0.platform.tenancy().org_exists(org).await? {
            return Err(Error::NotFound("no such organization".into()));
        }
        let invoice = invoices::close_period(&self.0.platform, &self.0.shared, org, true).await?;
        Ok(Json(ClosedPeriod {
            invoice: invoice.map(|i| InvoiceView::new(org, i)).transpose()?,
        }))
    }

    /// The webhook inbox, newest first; `failed=true` lists unprocessed events with
    /// an error (staff).
    #[oai(
        path = "/api/admin/billing/webhook-events",
        method = "get",
        operation_id = "adminListWebhookEvents"
    )]
    async fn events(
        &self,
        _auth: StaffAuth,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
        #[oai(name = "type")] kind: Query<Option<String>>,
        failed: Query<Option<bool>>,
    ) -> Result<Json<WebhookEventPage>> {
        let limit = limit.0.unwrap_or(plinth_core::http::pagination::DEFAULT_LIMIT);
        if !(1..=plinth_core::http::pagination::MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 100"));
        }
        // The cursor is the received_at and id of the last item, as Stripe's ids do
        // not sort by time.
        let after = cursor.0.filter(|c| !c.is_empty());
        let after = after
            .map(|c| {
                c.split_once('|')
                    .map(|(t, id)| (t.to_string(), id.to_string()))
                    .ok_or_else(|| Error::invalid("cursor", "is not a cursor from this list"))
            })
            .transpose()?;
        let (kind, failed) = (kind.0, failed.0.unwrap_or(false));
        let mut items = self
            .0
            .platform
            .db()
            .call(move |conn| {
                let (t, id) = after.unzip();
                conn.query_all(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM billing_webhook_events
                         WHERE ((received_at, id) < (?1, ?2) OR ?1 IS NULL) AND (type = ?3 OR ?3 IS NULL)
                           AND (?4 = 0 OR (processed_at IS NULL AND last_error IS NOT NULL))
                         ORDER BY received_at DESC, id DESC LIMIT ?5"
                    ),
                    params![t, id, kind, failed, limit + 1],
                    |r| event_view(r, false),
                )
            })
            .await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| format!("{}|{}", e.received_at, e.id))
        } else {
            None
        };
        Ok(Json(WebhookEventPage { items, next_cursor }))
    }

    /// One stored delivery with its payload (staff).
    #[oai(
        path = "/api/admin/billing/webhook-events/:event_id",
        method = "get",
        operation_id = "adminGetWebhookEvent"
    )]
    async fn event(&self, _auth: StaffAuth, event_id: Path<String>) -> Result<Json<WebhookEventView>> {
        let id = event_id.0;
        self.0
            .platform
            .db()
            .call(move |conn| {
                conn.query_opt(
                    &format!("SELECT {EVENT_COLUMNS} FROM billing_webhook_events WHERE id = ?1"),
                    params![id],
                    |r| event_view(r, true),
                )
            })
            .await?
            .map(Json)
            .ok_or_else(|| Error::NotFound("no such webhook event".into()))
    }

    /// Applies a stored delivery again (staff); `plinth billing reprocess` does the same.
    #[oai(
        path = "/api/admin/billing/webhook-events/:event_id/reprocess",
        method = "post",
        operation_id = "adminReprocessWebhookEvent"
    )]
    async fn reprocess(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        event_id: Path<String>,
    ) -> Result<Json<Reprocessed>> {
        // A failure is the answer, not a server error: it is also kept in the inbox.
        let (outcome, detail) = match webhooks::reprocess(&self.0.platform, &self.0.shared, &event_id.0).await
        {
            Ok(sentence) => (Outcome::of(true, Some(&sentence), None), sentence),
            Err(Error::NotFound(why)) => return Err(Error::NotFound(why)),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        let (actor, id) = (auth.0.user_id, event_id.0);
        self.0
            .platform
            .db()
            .write(move |tx| {
                record(
                    tx,
                    &AuditEntry::new("billing.webhook_reprocessed")
                        .actor(actor)
                        .target("stripe_event", id)
                        .client(&client),
                )?;
                Ok(())
            })
            .await?;
        Ok(Json(Reprocessed { outcome, detail }))
    }
}

impl AdminBillingApi {
    async fn save_plan(&self, actor: Uuid, client: ClientInfo, plan: Plan, create: bool) -> Result<PlanView> {
        let shared = self.0.shared.clone();
        let saved = self
            .0
            .platform
            .db()
            .write(move |tx| {
                let exists = tx.exists("SELECT 1 FROM billing_plans WHERE id = ?1", params![plan.id])?;
                if create && exists {
                    return Err(Error::Conflict(format!("a plan `{}` already exists", plan.id)));
                }
                plans::save(tx, &plan)?;
                record(
                    tx,
                    &AuditEntry::new(if create {
                        "billing.plan_created"
                    } else {
                        "billing.plan_updated"
                    })
                    .actor(actor)
                    .target("plan", &plan.id)
                    .client(&client)
                    .details(json!({
                        "name": plan.name, "price_cents": plan.price_cents, "seat_limit": plan.seat_limit,
                        "archived": plan.archived, "is_default": plan.is_default,
                    })),
                )?;
                Ok(plan)
            })
            .await?;
        webhooks::reload_catalog(&self.0.platform, &shared).await?;
        Ok(PlanView::new(&saved, true))
    }
}
