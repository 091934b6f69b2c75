//! A stand-in for Stripe's API over real HTTP: answers the calls Plinth makes with
//! objects from Stripe's published fixtures (tests/data/stripe), keeps the
//! subscriptions it hands out so tests can change them "on Stripe's side", records
//! every request, and can be switched into an outage (HTTP 500).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Body, EndpointExt, Request, Response, Route, handler, web::Data};
use serde_json::{Value, json};

const FIXTURES: &str = include_str!("../data/stripe/fixtures.json");

pub fn fixture(kind: &str) -> Value {
    let all: Value = serde_json::from_str(FIXTURES).expect("fixtures");
    all[kind].clone()
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
}

impl Call {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    pub subscriptions: HashMap<String, Value>,
    pub customers: HashMap<String, Value>,
    /// Meter events accepted, by identifier (Stripe dedupes on it).
    pub meter_events: HashMap<String, Value>,
    pub products: HashMap<String, Value>,
    /// Prices that exist; Checkout refuses any other, as Stripe does.
    pub prices: HashMap<String, Value>,
}

#[derive(Clone)]
pub struct StripeMock {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// An error answer shaped as Stripe's.
fn stripe_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"type": "invalid_request_error", "code": code, "message": message}}),
    )
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(v.to_string())
}

#[handler]
async fn answer(req: &Request, body: Body, mock: Data<&StripeMock>) -> Response {
    let body = body.into_string().await.unwrap_or_default();
    let path = req.uri().path().to_string();
    let call = Call {
        method: req.method().to_string(),
        path: path.clone(),
        form: form(&body),
        idempotency_key: req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    if mock.down.load(Ordering::SeqCst) {
        mock.state.lock().expect("state").calls.push(call);
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": {"type": "api_error", "message": "stand-in outage"}}),
        );
    }
    let mut state = mock.state.lock().expect("state");
    state.calls.push(call.clone());
    let method = call.method.as_str();
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let answer = match (method, segments.as_slice()) {
        ("POST", ["customers"]) => {
            // The same idempotency key returns the same customer, as Stripe does.
            let n = state.customers.len() + 1;
            let id = match &call.idempotency_key {
                Some(key) => state
                    .customers
                    .values()
                    .find(|c| c["_key"] == key.as_str())
                    .map(|c| c["id"].as_str().unwrap_or_default().to_string())
                    .unwrap_or_else(|| format!("cus_test{n}")),
                None => format!("cus_test{n}"),
            };
            let mut customer = fixture("customer");
            customer["id"] = json!(id);
            customer["name"] = json!(call.param("name"));
            customer["metadata"] = json!({"org_id": call.param("metadata[org_id]")});
            customer["_key"] = json!(call.idempotency_key);
            state.customers.insert(id, customer.clone());
            customer
        }
        ("GET", ["customers", id]) => match state.customers.get(*id) {
            Some(c) => c.clone(),
            None => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": {"type": "invalid_request_error", "message": "No such customer"}}),
                );
            }
        },
        ("POST", ["checkout", "sessions"]) => {
            let price = call.param("line_items[0][price]").unwrap_or_default();
            if !state.prices.contains_key(price) {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "resource_missing",
                    &format!("No such price: '{price}'"),
                );
            }
            let mut session = fixture("checkout.session");
            session["id"] = json!("cs_test_1");
            session["url"] = json!("https://checkout.stripe.test/c/pay/cs_test_1");
            session["customer"] = json!(call.param("customer"));
            session["client_reference_id"] = json!(call.param("client_reference_id"));
            session["mode"] = json!("subscription");
            session
        }
        ("POST", ["billing_portal", "sessions"]) => {
            let mut session = fixture("billing_portal.session");
            session["url"] = json!("https://billing.stripe.test/p/session/test_1");
            session["customer"] = json!(call.param("customer"));
            session["return_url"] = json!(call.param("return_url"));
            session
        }
        ("GET", ["subscriptions", id]) => match state.subscriptions.get(*id) {
            Some(s) => s.clone(),
            None => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": {"type": "invalid_request_error", "message": "No such subscription"}}),
                );
            }
        },
        ("POST", ["subscriptions", id]) => {
            let Some(sub) = state.subscriptions.get_mut(*id) else {
                return json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": {"type": "invalid_request_error", "message": "No such subscription"}}),
                );
            };
            if let Some(cancel) = call.param("cancel_at_period_end") {
                sub["cancel_at_period_end"] = json!(cancel == "true");
            }
            if let Some(q) = call.param("items[0][quantity]") {
                sub["items"]["data"][0]["quantity"] = json!(q.parse::<i64>().unwrap_or(1));
            }
            sub.clone()
        }
        ("POST", ["billing", "meter_events"]) => {
            let mut event = fixture("billing.meter_event");
            event["event_name"] = json!(call.param("event_name"));
            event["identifier"] = json!(call.param("identifier"));
            event["payload"] = json!({
                "stripe_customer_id": call.param("payload[stripe_customer_id]"),
                "value": call.param("payload[value]"),
            });
            let id = call.param("identifier").unwrap_or_default().to_string();
            state.meter_events.insert(id, event.clone());
            event
        }
        ("POST", ["products"]) => {
            let id = call.param("id").unwrap_or("prod_test").to_string();
            if state.products.contains_key(&id) {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "resource_already_exists",
                    "Product already exists.",
                );
            }
            let mut product = fixture("product");
            product["id"] = json!(id);
            product["name"] = json!(call.param("name"));
            product["description"] = json!(call.param("description"));
            product["metadata"] = json!({"plinth_plan": call.param("metadata[plinth_plan]")});
            state.products.insert(id, product.clone());
            product
        }
        ("GET", ["products", id]) => match state.products.get(*id) {
            Some(p) => p.clone(),
            None => {
                return stripe_error(StatusCode::NOT_FOUND, "resource_missing", "No such product");
            }
        },
        ("POST", ["prices"]) => {
            let product = call.param("product").unwrap_or_default().to_string();
            if !state.products.contains_key(&product) {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "resource_missing",
                    &format!("No such product: '{product}'"),
                );
            }
            // The same idempotency key answers the same price, as Stripe does.
            if let Some(existing) = state
                .prices
                .values()
                .find(|p| call.idempotency_key.is_some() && p["_key"] == json!(call.idempotency_key))
            {
                existing.clone()
            } else {
                let id = format!("price_test{}", state.prices.len() + 1);
                let mut price = fixture("price");
                price["id"] = json!(id);
                price["product"] = json!(product);
                price["currency"] = json!(call.param("currency"));
                price["unit_amount"] = json!(call.param("unit_amount").and_then(|a| a.parse::<i64>().ok()));
                price["recurring"]["interval"] = json!(call.param("recurring[interval]"));
                price["type"] = json!("recurring");
                price["_key"] = json!(call.idempotency_key);
                state.prices.insert(id, price.clone());
                price
            }
        }
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": {"type": "invalid_request_error", "message": "unknown path"}}),
            );
        }
    };
    json_response(StatusCode::OK, &answer)
}

impl StripeMock {
    pub async fn start() -> StripeMock {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind");
        let addr = acceptor.local_addr()[0]
            .as_socket_addr()
            .copied()
            .expect("socket address");
        let mock = StripeMock {
            url: format!("http://{addr}/"),
            state: Arc::default(),
            down: Arc::default(),
        };
        let app = Route::new().at("/*path", answer).data(mock.clone());
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        mock
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Puts a price in "Stripe's" catalogue, so Checkout accepts it.
    pub fn put_price(&self, id: &str) {
        let mut price = fixture("price");
        price["id"] = json!(id);
        self.state
            .lock()
            .expect("state")
            .prices
            .insert(id.to_string(), price);
    }

    /// Puts a subscription on "Stripe's side", as Stripe's fixture shaped.
    pub fn put_subscription(&self, sub: Value) {
        let id = sub["id"].as_str().expect("id").to_string();
        self.state.lock().expect("state").subscriptions.insert(id, sub);
    }

    pub fn calls(&self, method: &str, path: &str) -> Vec<Call> {
        self.state
            .lock()
            .expect("state")
            .calls
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .cloned()
            .collect()
    }

    pub fn meter_events(&self) -> HashMap<String, Value> {
        self.state.lock().expect("state").meter_events.clone()
    }
}
