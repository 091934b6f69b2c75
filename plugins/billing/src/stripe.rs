//! The calls Plinth makes to Stripe, through async-stripe's typed requests. Answers
//! are read as plain JSON (`serde_json::Value`): the same code then reads objects
//! from the API and from webhook payloads, and a field Stripe adds or moves between
//! API versions cannot fail a whole response.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use plinth_core::{Config, Error};
use serde_json::Value;
use stripe::{Client, ClientBuilder, RequestStrategy, StripeError};
use stripe_client_core::StripeRequest;
use uuid::Uuid;

use crate::plans::{Interval, Plan};

/// The Stripe API version every request and every webhook endpoint must use: the
/// one async-stripe's types were generated for. Set the webhook endpoint in the
/// Stripe dashboard to this version.
pub fn api_version() -> &'static str {
    stripe_shared::version::VERSION.as_str()
}

/// A failed call: Stripe was unreachable or failing (retry), or refused the request
/// (its status, error code and message: retrying the same request will not help).
#[derive(Debug)]
pub enum StripeFailure {
    Unavailable(String),
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

impl StripeFailure {
    fn refused(status: u16, message: impl Into<String>) -> Self {
        StripeFailure::Refused {
            status,
            code: None,
            message: message.into(),
        }
    }

    /// Stripe's error code (`resource_missing`, `resource_already_exists`...).
    pub fn code(&self) -> Option<&str> {
        match self {
            StripeFailure::Refused { code, .. } => code.as_deref(),
            StripeFailure::Unavailable(_) => None,
        }
    }
}

impl std::fmt::Display for StripeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StripeFailure::Unavailable(why) => write!(f, "Stripe is unavailable: {why}"),
            StripeFailure::Refused { status, message, .. } => {
                write!(f, "Stripe refused the request ({status}): {message}")
            }
        }
    }
}

impl From<StripeError> for StripeFailure {
    fn from(err: StripeError) -> Self {
        match err {
            StripeError::Stripe(api, status) if (400..500).contains(&status) && status != 429 => {
                StripeFailure::Refused {
                    status,
                    code: api.code.as_ref().map(|c| c.as_str().to_string()),
                    message: api.message.clone().unwrap_or_default(),
                }
            }
            other => StripeFailure::Unavailable(other.to_string()),
        }
    }
}

impl From<StripeFailure> for Error {
    fn from(f: StripeFailure) -> Self {
        match f {
            StripeFailure::Unavailable(why) => {
                tracing::warn!(error = %why, "Stripe call failed");
                Error::Unavailable("the payment provider is unavailable; try again shortly".into())
            }
            // A refusal names a configuration problem (an unknown price, a missing
            // portal configuration): staff need Stripe's words to fix it.
            StripeFailure::Refused { message, status, .. } => {
                tracing::warn!(status, error = %message, "Stripe refused a request");
                Error::Upstream(format!("Stripe refused the request: {message}"))
            }
        }
    }
}

pub type StripeResult<T> = std::result::Result<T, StripeFailure>;

/// The Stripe client, present only when STRIPE_SECRET_KEY is set.
#[derive(Clone)]
pub struct Stripe {
    client: Client,
}

fn metadata(org: Uuid) -> HashMap<String, String> {
    HashMap::from([("org_id".to_string(), org.to_string())])
}

impl Stripe {
    pub fn from_config(config: &Config) -> Result<Option<Stripe>, Error> {
        let Some(key) = &config.stripe_secret_key else {
            return Ok(None);
        };
        let client = ClientBuilder::new(key.expose())
            .url(config.stripe_api_base.clone())
            .timeout(Duration::from_secs(20))
            // One attempt per call: jobs retry with backoff (durably), and a request
            // path answers 503 at once rather than holding the client.
            .request_strategy(RequestStrategy::Once)
            .build()
            .map_err(|e| Error::internal(format!("Stripe client: {e}")))?;
        Ok(Some(Stripe { client }))
    }

    async fn send<R: StripeRequest>(&self, req: &R, idempotency: Option<String>) -> StripeResult<Value> {
        let mut call = req.build().customize::<miniserde::json::Value>();
        if let Some(key) = idempotency {
            let key =
                stripe::IdempotencyKey::new(key).map_err(|e| StripeFailure::refused(0, e.to_string()))?;
            call = call.request_strategy(RequestStrategy::Idempotent(key));
        }
        let value = call.send(&self.client).await?;
        serde_json::from_str(&miniserde::json::to_string(&value))
            .map_err(|e| StripeFailure::Unavailable(format!("unreadable answer: {e}")))
    }

    /// Creates the org's customer. The idempotency key makes two concurrent first
    /// checkouts create one customer.
    pub async fn create_customer(&self, org: Uuid, name: &str, email: Option<&str>) -> StripeResult<String> {
        let mut req = stripe_core::customer::CreateCustomer::new()
            .name(name)
            .metadata(metadata(org));
        if let Some(email) = email {
            req = req.email(email);
        }
        let customer = self.send(&req, Some(format!("plinth-customer-{org}"))).await?;
        id_of(&customer)
    }

    pub async fn customer(&self, id: &str) -> StripeResult<Value> {
        self.send(&stripe_core::customer::RetrieveCustomer::new(id), None)
            .await
    }

    /// A Checkout Session in subscription mode; returns its URL.
    #[allow(clippy::too_many_arguments)]
    pub async fn checkout(
        &self,
        org: Uuid,
        customer: &str,
        price: &str,
        quantity: u64,
        trial_days: u32,
        success_url: &str,
        cancel_url: &str,
    ) -> StripeResult<String> {
        use stripe_checkout::checkout_session::{
            CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
        };
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(price.to_string());
        item.quantity = Some(quantity.max(1));
        let mut subscription = CreateCheckoutSessionSubscriptionData::new();
        subscription.metadata = Some(metadata(org));
        if trial_days > 0 {
            subscription.trial_period_days = Some(trial_days);
        }
        let req = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Subscription)
            .customer(customer)
            .client_reference_id(org.to_string())
            .metadata(metadata(org))
            .line_items(vec![item])
            .subscription_data(subscription)
            .success_url(success_url)
            .cancel_url(cancel_url);
        let session = self.send(&req, None).await?;
        url_of(&session)
    }

    /// A Billing Portal session; returns its URL.
    pub async fn portal(&self, customer: &str, return_url: &str) -> StripeResult<String> {
        let req = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        let session = self.send(&req, None).await?;
        url_of(&session)
    }

    pub async fn subscription(&self, id: &str) -> StripeResult<Value> {
        self.send(&stripe_billing::subscription::RetrieveSubscription::new(id), None)
            .await
    }

    pub async fn set_cancel_at_period_end(&self, id: &str, cancel: bool) -> StripeResult<Value> {
        let req = stripe_billing::subscription::UpdateSubscription::new(id).cancel_at_period_end(cancel);
        self.send(&req, None).await
    }

    /// Sets the seat quantity of the subscription's item.
    pub async fn set_quantity(&self, id: &str, item: &str, quantity: u64) -> StripeResult<Value> {
        let mut update = stripe_billing::subscription::UpdateSubscriptionItems::new();
        update.id = Some(item.to_string());
        update.quantity = Some(quantity.max(1));
        let req = stripe_billing::subscription::UpdateSubscription::new(id).items(vec![update]);
        self.send(&req, Some(format!("plinth-seats-{id}-{quantity}")))
            .await
    }

    /// One meter event. `identifier` (the usage event's id) makes Stripe count it
    /// once however often the job retries.
    pub async fn meter_event(
        &self,
        event_name: &str,
        customer: &str,
        value: i64,
        identifier: &str,
    ) -> StripeResult<()> {
        let payload = HashMap::from([
            ("stripe_customer_id".to_string(), customer.to_string()),
            ("value".to_string(), value.to_string()),
        ]);
        let req = stripe_billing::billing_meter_event::CreateBillingMeterEvent::new(event_name, payload)
            .identifier(identifier);
        self.send(&req, Some(format!("plinth-meter-{identifier}")))
            .await?;
        Ok(())
    }
}

impl Stripe {
    /// The plan's product, `plinth_<plan id>`: created once, found again when it
    /// already exists (a plan whose price was cleared and is synced again).
    pub async fn ensure_product(&self, plan: &Plan) -> StripeResult<String> {
        use stripe_product::product::{CreateProduct, RetrieveProduct};
        let id = format!("plinth_{}", plan.id);
        let mut req = CreateProduct::new(&plan.name)
            .id(&id)
            .metadata(HashMap::from([("plinth_plan".to_string(), plan.id.clone())]));
        if !plan.description.is_empty() {
            req = req.description(&plan.description);
        }
        match self.send(&req, None).await {
            Ok(product) => id_of(&product),
            Err(e) if e.code() == Some("resource_already_exists") => {
                id_of(&self.send(&RetrieveProduct::new(id.as_str()), None).await?)
            }
            Err(e) => Err(e),
        }
    }

    /// A recurring price for the plan's amount, currency and interval. The
    /// idempotency key names all three, so a retry never makes a second price.
    pub async fn create_price(&self, plan: &Plan, product: &str) -> StripeResult<String> {
        use stripe_product::price::{CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval};
        let interval = match plan.interval {
            Interval::Month => CreatePriceRecurringInterval::Month,
            Interval::Year => CreatePriceRecurringInterval::Year,
        };
        let currency = stripe_types::Currency::from_str(&plan.currency.to_lowercase())
            .unwrap_or_else(|never| match never {});
        let req = CreatePrice::new(currency)
            .product(product)
            .unit_amount(plan.price_cents)
            .recurring(CreatePriceRecurring::new(interval))
            .metadata(HashMap::from([("plinth_plan".to_string(), plan.id.clone())]));
        let key = format!(
            "plinth-price-{}-{}-{}-{}",
            plan.id,
            plan.price_cents,
            plan.currency.to_lowercase(),
            plan.interval.as_str()
        );
        id_of(&self.send(&req, Some(key)).await?)
    }
}

fn id_of(v: &Value) -> StripeResult<String> {
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| StripeFailure::Unavailable("answer without an id".into()))
}

fn url_of(v: &Value) -> StripeResult<String> {
    v["url"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| StripeFailure::Unavailable("answer without a url".into()))
}
