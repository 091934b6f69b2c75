//! The HTTP pipeline around every route, outermost first: request id and tracing
//! span, metrics, problem+json for every error (ours, the framework's, panics),
//! security headers; then load shedding, panic catching, CORS and the header and
//! body limits.

pub mod openapi;
pub(crate) mod ops;
pub mod pagination;
pub mod rendered;

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use poem::PathPattern;
use poem::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use poem::middleware::Cors;
use poem::web::headers::{ContentLength, HeaderMapExt};
use poem::{
    Body, Endpoint, FromRequest, IntoResponse, Middleware, Request, RequestBody, Response,
    error::ReadBodyError,
};
use poem_openapi::__private::UrlQuery;
use tracing::Instrument;

use crate::error::{Error, problem, problem_response};
use crate::runtime::metrics::{Metrics, UNMATCHED};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Request headers above this total (names and values) are refused with 431: a
/// bearer token, cookies and the usual headers fit in a fraction of it.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The request's id, in request extensions for handlers, and in every log line of
/// the request through its tracing span.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// Who is calling: the client's IP and user agent, resolved once per request by
/// the pipeline. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

/// User agents are stored and logged; nobody needs more than this of one.
const MAX_USER_AGENT: usize = 512;

impl ClientInfo {
    /// The socket's peer, unless that peer is a trusted proxy: then the nearest
    /// untrusted address in X-Forwarded-For (read from the right, since everything
    /// left of the last trusted hop is whatever the client chose to send).
    pub fn resolve(req: &Request, trusted_proxies: &[IpAddr]) -> ClientInfo {
        let peer = req
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut ip = peer;
        if trusted_proxies.contains(&peer) {
            let forwarded = req
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>();
            for hop in forwarded.iter().rev() {
                match hop.parse::<IpAddr>() {
                    Ok(addr) if trusted_proxies.contains(&addr) => continue,
                    Ok(addr) => {
                        ip = addr;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        ClientInfo { ip, user_agent }
    }
}

impl<'a> FromRequest<'a> for ClientInfo {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        Ok(req
            .extensions()
            .get::<ClientInfo>()
            .cloned()
            .unwrap_or_else(|| ClientInfo::resolve(req, &[])))
    }
}

/// What the pipeline needs from the platform. `D` is what every request carries
/// (the platform, which handlers and extractors read with `req.data()`): generic so
/// that the pipeline does not depend on the platform that assembles it.
#[derive(Clone)]
pub(crate) struct PipelineOptions<D> {
    pub data: D,
    pub metrics: Metrics,
    pub app_url: String,
    pub body_limit: usize,
    pub production: bool,
    pub trusted_proxies: Vec<IpAddr>,
    /// Requests served at once before the server sheds load with 503.
    pub max_in_flight: usize,
}

/// Wraps the router in the whole pipeline.
///
/// One endpoint does the steps in sequence instead of one middleware layer each:
/// every layer nests its future in the next and boxes it, and the copies of those
/// futures showed up as a tenth of a request's time in profiles.
pub(crate) fn pipeline<E, D>(inner: E, options: PipelineOptions<D>) -> Pipeline<E, D>
where
    E: Endpoint + 'static,
    D: Clone + Send + Sync + 'static,
{
    let cors = Cors::new()
        .allow_origin(options.app_url.as_str())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            "authorization",
            "content-type",
            "idempotency-key",
            REQUEST_ID_HEADER,
        ])
        .expose_headers([REQUEST_ID_HEADER, "retry-after"])
        .max_age(600);
    let limited = Arc::new(Limits {
        inner,
        body_limit: options.body_limit,
        data: options.data.clone(),
    });
    Pipeline {
        cors: cors.transform(limited.clone()),
        limited,
        permits: tokio::sync::Semaphore::new(options.max_in_flight),
        options,
    }
}

pub(crate) struct Pipeline<E: Endpoint + 'static, D: Clone + Send + Sync + 'static> {
    limited: Arc<Limits<E, D>>,
    /// The same endpoint behind CORS, for requests that carry an Origin.
    cors: <Cors as poem::Middleware<Arc<Limits<E, D>>>>::Output,
    permits: tokio::sync::Semaphore,
    options: PipelineOptions<D>,
}

impl<E: Endpoint + 'static, D: Clone + Send + Sync + 'static> Endpoint for Pipeline<E, D> {
    type Output = Response;

    /// Outermost first: request id, client and tracing span; metrics and logging;
    /// load shedding; panics to problem+json; CORS; header and body limits. Every
    /// error becomes problem+json, and every response gets the security headers.
    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| valid_request_id(v))
            .map(Arc::<str>::from)
            .unwrap_or_else(new_request_id);
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let client = ClientInfo::resolve(&req, &self.options.trusted_proxies);
        req.extensions_mut().insert(client);
        let method = req.method().clone();
        let docs = is_docs(req.uri().path());
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %method,
            path = %loggable(req.uri().path())
        );
        let _in_flight = self.options.metrics.request_started();
        let started = Instant::now();

        let result = self.admit(req).instrument(span.clone()).await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => span.in_scope(|| render_error(err)),
        };

        let route = resp.data::<PathPattern>().map(|p| p.0.clone());
        set_security_headers(&mut resp, docs, self.options.production);
        vary_on_origin(&mut resp);
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        let elapsed = started.elapsed();
        let status = resp.status().as_u16();
        self.options
            .metrics
            .request_finished(&method, route.as_ref(), status, elapsed);
        span.in_scope(|| {
            let latency_ms = elapsed.as_secs_f64() * 1000.0;
            let route = route.as_deref().unwrap_or(UNMATCHED);
            if status >= 500 {
                tracing::error!(status, latency_ms, route = %route, "request failed");
            } else {
                tracing::info!(status, latency_ms, route = %route, "request");
            }
        });
        Ok(resp)
    }
}

impl<E: Endpoint + 'static, D: Clone + Send + Sync + 'static> Pipeline<E, D> {
    /// Sheds load, catches panics, and hands the request to CORS when it has an Origin.
    async fn admit(&self, mut req: Request) -> poem::Result<Response> {
        // A flood is refused at the door instead of queueing in memory.
        let Ok(_permit) = self.permits.try_acquire() else {
            return Err(Error::Overloaded.into());
        };
        // Same-origin requests (Swagger UI on /docs) need no CORS; browsers still
        // send Origin on them, which the CORS layer would refuse.
        if is_same_origin(&req) {
            req.headers_mut().remove(header::ORIGIN);
        }
        let served = async move {
            if req.headers().contains_key(header::ORIGIN) {
                self.cors.call(req).await
            } else {
                self.limited.call(req).await
            }
        };
        match AssertUnwindSafe(served).catch_unwind().await {
            Ok(result) => result,
            Err(_) => {
                tracing::error!("request handler panicked");
                Ok(problem_response(&problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "an internal error occurred; it has been logged",
                    None,
                )))
            }
        }
    }
}

/// The header and body limits, in front of the router; and what every route expects
/// in the request's extensions.
pub(crate) struct Limits<E, D> {
    inner: E,
    body_limit: usize,
    data: D,
}

impl<E: Endpoint, D: Clone + Send + Sync + 'static> Endpoint for Limits<E, D> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        // hyper alone allows 100 headers in a buffer of up to ~400 KiB.
        let bytes: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if bytes > MAX_HEADER_BYTES {
            return Ok(problem_response(&problem(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request headers total more than {MAX_HEADER_BYTES} bytes"),
                None,
            )));
        }
        limit_body(&mut req, self.body_limit).await?;
        // poem-openapi's query parameters read the query from this extension, which
        // its own service would insert; routes are mounted one by one here instead.
        let query = match req.uri().query() {
            Some(_) => req.params::<Vec<(String, String)>>().unwrap_or_default(),
            None => Vec::new(),
        };
        req.extensions_mut().insert(UrlQuery(query));
        req.extensions_mut().insert(self.data.clone());
        Ok(self.inner.call(req).await?.into_response())
    }
}

/// A fresh request id: a UUIDv7 whose random part comes from the thread's generator
/// (asking the OS on every request costs a system call each).
fn new_request_id() -> Arc<str> {
    let random: [u8; 10] = rand::random();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Arc::from(&*id.hyphenated().encode_lower(&mut buf))
}

fn is_docs(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/")
}

fn is_same_origin(req: &Request) -> bool {
    let (Some(origin), Some(host)) = (req.headers().get(header::ORIGIN), req.headers().get(header::HOST))
    else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// The path as logs may show it: invitation tokens travel in the path and are
/// secrets, so that segment is masked.
fn loggable(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/api/invitations/") {
        Some(rest) => {
            let tail = rest
                .split_once('/')
                .map(|(_, t)| format!("/{t}"))
                .unwrap_or_default();
            format!("/api/invitations/[token]{tail}").into()
        }
        None => path.into(),
    }
}

/// Client-supplied ids are kept only when short and plain, so they cannot inject
/// anything into logs or headers.
fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Every error becomes problem+json: ours render themselves; the framework's (no
/// route, wrong method, unparsable JSON, CORS) keep their status and message, except
/// 5xx, whose cause is logged and replaced by a generic detail.
fn render_error(err: poem::Error) -> Response {
    let pattern = err.data::<PathPattern>().cloned();
    if err.is::<Error>() {
        return err.into_response();
    }
    let status = err.status();
    let detail = if status.is_server_error() {
        tracing::error!(error = %err, "internal error");
        "an internal error occurred; it has been logged".to_string()
    } else if status == StatusCode::NOT_FOUND {
        "no such resource".to_string()
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        "this method is not allowed on this resource".to_string()
    } else {
        err.to_string()
    };
    let mut resp = problem_response(&problem(status, detail, None));
    if let Some(pattern) = pattern {
        resp.set_data(pattern);
    }
    resp
}

fn set_security_headers(resp: &mut Response, docs: bool, production: bool) {
    const NOSNIFF: HeaderName = HeaderName::from_static("x-content-type-options");
    const FRAME: HeaderName = HeaderName::from_static("x-frame-options");
    const REFERRER: HeaderName = HeaderName::from_static("referrer-policy");
    const OPENER: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
    const HSTS: HeaderName = HeaderName::from_static("strict-transport-security");
    let csp = if docs {
        // Swagger UI is one page of inline script and style.
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        )
    } else {
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'")
    };
    let headers = resp.headers_mut();
    headers.reserve(8);
    headers.insert(NOSNIFF, HeaderValue::from_static("nosniff"));
    headers.insert(FRAME, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER, HeaderValue::from_static("no-referrer"));
    headers.insert(OPENER, HeaderValue::from_static("same-origin"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if production {
        headers.insert(
            HSTS,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
}

/// Every answer depends on the Origin header (CORS headers for the allowed origin,
/// none or a refusal for others), so shared caches must key on it.
fn vary_on_origin(resp: &mut Response) {
    let already = resp.headers().get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|name| matches!(name.trim(), "*") || name.trim().eq_ignore_ascii_case("origin"))
        })
    });
    if !already {
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("origin"));
    }
}

/// Refuses bodies over the limit with 413: at once when Content-Length says so, and
/// while reading when the body is chunked.
async fn limit_body(req: &mut Request, limit: usize) -> poem::Result<()> {
    if let Some(ContentLength(len)) = req.headers().typed_get::<ContentLength>() {
        if len > limit as u64 {
            return Err(Error::PayloadTooLarge(limit).into());
        }
    } else if req.headers().contains_key(header::TRANSFER_ENCODING) {
        let bytes = req
            .take_body()
            .into_bytes_limit(limit)
            .await
            .map_err(|e| match e {
                ReadBodyError::PayloadTooLarge => Error::PayloadTooLarge(limit),
                other => Error::BadRequest(format!("could not read the request body: {other}")),
            })?;
        req.set_body(Body::from_bytes(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitation_tokens_are_masked_in_logged_paths() {
        assert_eq!(
            loggable("/api/invitations/abc.def/accept"),
            "/api/invitations/[token]/accept"
        );
        assert_eq!(loggable("/api/invitations/abc.def"), "/api/invitations/[token]");
        assert_eq!(loggable("/api/orgs"), "/api/orgs");
    }

    #[test]
    fn request_ids_from_clients_are_sanitised() {
        assert!(valid_request_id("abc-123_x.y"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id("x\r\ninjected: 1"));
        assert!(!valid_request_id(&"a".repeat(65)));
    }
}
