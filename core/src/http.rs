//! The HTTP pipeline around every route, outermost first: request id and tracing
//! span, metrics, problem+json for every error (ours, the framework's, panics),
//! security headers; then panic catching, CORS and the request body limit.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use poem::middleware::{CatchPanic, Cors, PanicHandler};
use poem::web::headers::{ContentLength, HeaderMapExt};
use poem::{
    Body, Endpoint, EndpointExt, FromRequest, IntoResponse, Request, RequestBody, Response,
    error::ReadBodyError,
};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{Error, problem, problem_response};
use crate::metrics::Metrics;

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

/// What the pipeline needs from the platform.
#[derive(Clone)]
pub(crate) struct PipelineOptions {
    pub metrics: Metrics,
    pub app_url: String,
    pub body_limit: usize,
    pub production: bool,
    pub trusted_proxies: Vec<IpAddr>,
    /// Requests served at once before the server sheds load with 503.
    pub max_in_flight: usize,
}

/// Wraps the router in the whole pipeline.
pub(crate) fn pipeline(
    inner: impl Endpoint + 'static,
    options: PipelineOptions,
) -> impl Endpoint<Output = Response> {
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
    let limit = options.body_limit;
    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_in_flight));
    let options = Arc::new(options);
    inner
        .around(move |ep, req| limit_body(ep, req, limit))
        .around(|ep, req| async move {
            // hyper alone allows 100 headers in a buffer of up to ~400 KiB.
            let bytes: usize = req
                .headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum();
            if bytes > MAX_HEADER_BYTES {
                return Ok(crate::error::problem_response(&crate::error::problem(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("the request headers total more than {MAX_HEADER_BYTES} bytes"),
                    None,
                )));
            }
            Ok(ep.call(req).await?.into_response())
        })
        .with(cors)
        .around(|ep, mut req| async move {
            // Same-origin requests (Swagger UI on /docs) need no CORS; browsers still
            // send Origin on them, which the CORS layer would refuse.
            if is_same_origin(&req) {
                req.headers_mut().remove(header::ORIGIN);
            }
            ep.call(req).await
        })
        .with(CatchPanic::new().with_handler(ProblemOnPanic))
        .around(move |ep, req| {
            // A flood is refused at the door instead of queueing in memory.
            let permits = permits.clone();
            async move {
                let Ok(_permit) = permits.try_acquire() else {
                    return Err(Error::Overloaded.into());
                };
                Ok(ep.call(req).await?.into_response())
            }
        })
        .around(move |ep, req| observe(ep, req, options.clone()))
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

async fn observe<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    options: Arc<PipelineOptions>,
) -> poem::Result<Response> {
    let request_id: Arc<str> = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(Arc::from)
        .unwrap_or_else(|| Uuid::now_v7().to_string().into());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let client = ClientInfo::resolve(&req, &options.trusted_proxies);
    req.extensions_mut().insert(client);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, path = %loggable(&path));
    let _in_flight = options.metrics.request_started();
    let started = Instant::now();

    let result = ep.call(req).instrument(span.clone()).await;
    let mut resp = match result {
        Ok(resp) => resp.into_response(),
        Err(err) => span.in_scope(|| render_error(err)),
    };

    let route = resp
        .data::<PathPattern>()
        .map(|p| p.0.to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    set_security_headers(&mut resp, &path, options.production);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    options
        .metrics
        .request_finished(method.as_str(), &route, status, elapsed);
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(status, latency_ms, route = %route, "request failed");
        } else {
            tracing::info!(status, latency_ms, route = %route, "request");
        }
    });
    Ok(resp)
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

fn set_security_headers(resp: &mut Response, path: &str, production: bool) {
    let docs = path == "/docs" || path.starts_with("/docs/");
    let csp = if docs {
        // Swagger UI is one page of inline script and style.
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    let headers = resp.headers_mut();
    let set = |headers: &mut poem::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    };
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "content-security-policy", csp);
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    if production {
        set(
            headers,
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        );
    }
}

/// Refuses bodies over the limit with 413: at once when Content-Length says so, and
/// while reading when the body is chunked.
async fn limit_body<E: Endpoint>(ep: Arc<E>, mut req: Request, limit: usize) -> poem::Result<Response> {
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
    Ok(ep.call(req).await?.into_response())
}

#[derive(Clone)]
struct ProblemOnPanic;

impl PanicHandler for ProblemOnPanic {
    type Response = Response;

    fn get_response(&self, _err: Box<dyn std::any::Any + Send + 'static>) -> Response {
        tracing::error!("request handler panicked");
        problem_response(&problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "an internal error occurred; it has been logged",
            None,
        ))
    }
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
