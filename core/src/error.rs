//! The one error type of plinth-core and its single mapping to RFC 9457 problem+json.
//!
//! Variants are outcomes, not causes: each has one HTTP status and one stable `type`
//! that clients can match on. Causes of internal errors are logged, never serialized.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Response, error::ResponseError};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document, the body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Object)]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `/problems/not-found`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub type_: String,
    /// A short, human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// Per-field messages (validation problems only).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One invalid field in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct FieldError {
    /// The field's name, in the request's own spelling (`email`, `members[2].role`).
    pub field: String,
    /// Why the value was refused.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request could not be understood (malformed JSON, bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing, invalid or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 402: the org's plan does not allow this (seats, quotas, features).
    #[error("{0}")]
    PaymentRequired(String),
    /// 403: authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one the caller may not know exists.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with the current state (duplicate, last owner, stale version).
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is larger than the configured limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 422: well-formed but invalid input, with one message per field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 429: too many requests; retry after the given number of seconds.
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// 502: a service Plinth depends on (Stripe) refused or garbled the request;
    /// the detail carries its message, since it names what to fix.
    #[error("{0}")]
    Upstream(String),
    /// 503: too many requests in flight; retry shortly.
    #[error("the server is busy; retry shortly")]
    Overloaded,
    /// 503: a dependency is not ready (database, migrations).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an infrastructure failure. The cause is logged, never sent.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(cause.into())
    }

    /// A 422 naming one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// A copy of this error, for sharing one failure among several waiters (causes
    /// of internal errors are not `Clone`; their text is kept).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::BadRequest(s) => Error::BadRequest(s.clone()),
            Error::Unauthorized(s) => Error::Unauthorized(s.clone()),
            Error::PaymentRequired(s) => Error::PaymentRequired(s.clone()),
            Error::Forbidden(s) => Error::Forbidden(s.clone()),
            Error::NotFound(s) => Error::NotFound(s.clone()),
            Error::Conflict(s) => Error::Conflict(s.clone()),
            Error::PayloadTooLarge(n) => Error::PayloadTooLarge(*n),
            Error::Validation(errors) => Error::Validation(errors.clone()),
            Error::RateLimited { retry_after_secs } => Error::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            Error::Unavailable(s) => Error::Unavailable(s.clone()),
            Error::Upstream(s) => Error::Upstream(s.clone()),
            Error::Overloaded => Error::Overloaded,
            Error::Internal(cause) => Error::internal(cause.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::Unavailable(_) | Error::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document sent to the client.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (detail, errors) = match self {
            Error::Validation(errors) => ("the request has invalid fields".to_string(), Some(errors.clone())),
            Error::RateLimited { retry_after_secs } => {
                (format!("too many requests; retry in {retry_after_secs} s"), None)
            }
            Error::Internal(_) => ("an internal error occurred; it has been logged".into(), None),
            other => (other.to_string(), None),
        };
        problem(status, detail, errors)
    }
}

/// The `type` and `title` for a status: one table, so every source of errors (ours,
/// the framework's, panics) renders the same problem for the same status.
pub fn problem(status: StatusCode, detail: impl Into<String>, errors: Option<Vec<FieldError>>) -> Problem {
    let (slug, title) = match status.as_u16() {
        400 => ("bad-request", "Bad request"),
        401 => ("unauthorized", "Unauthorized"),
        402 => ("payment-required", "Payment required"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not-found", "Not found"),
        405 => ("method-not-allowed", "Method not allowed"),
        406 => ("not-acceptable", "Not acceptable"),
        409 => ("conflict", "Conflict"),
        411 => ("length-required", "Length required"),
        413 => ("payload-too-large", "Payload too large"),
        415 => ("unsupported-media-type", "Unsupported media type"),
        422 => ("validation-error", "Validation error"),
        429 => ("rate-limited", "Too many requests"),
        431 => ("headers-too-large", "Request header fields too large"),
        502 => ("upstream-error", "Upstream service error"),
        503 => ("unavailable", "Service unavailable"),
        s if s >= 500 => ("internal-error", "Internal server error"),
        _ => ("error", "Error"),
    };
    Problem {
        type_: format!("/problems/{slug}"),
        title: title.to_string(),
        status: status.as_u16(),
        detail: detail.into(),
        errors,
    }
}

/// Renders a problem as an HTTP response with the problem+json media type.
pub fn problem_response(problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
        .body(body)
}

impl ResponseError for Error {
    fn status(&self) -> StatusCode {
        Error::status(self)
    }

    fn as_response(&self) -> Response {
        if let Error::Internal(cause) = self {
            tracing::error!(error = %cause, "internal error");
        }
        let mut resp = problem_response(&self.problem());
        if let Error::Unauthorized(_) = self {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Error::Overloaded = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Error::RateLimited { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, value);
        }
        resp
    }
}

/// Documents the problem responses an operation may return. Every operation that
/// returns `Result<_, Error>` lists them, with the `Problem` schema.
impl ApiResponse for Error {
    fn meta() -> MetaResponses {
        const DOCUMENTED: [(u16, &str); 13] = [
            (400, "Malformed request (bad JSON or parameter)"),
            (401, "Missing or invalid credentials"),
            (402, "The plan does not allow this"),
            (403, "Not allowed"),
            (404, "Not found"),
            (409, "Conflict with the current state"),
            (413, "Request body too large"),
            (415, "Unsupported content type"),
            (422, "Invalid fields"),
            (429, "Too many requests"),
            (500, "Internal error"),
            (
                502,
                "A service Plinth depends on (e.g. Stripe) refused the request",
            ),
            (503, "Busy (retry after Retry-After) or a dependency is not ready"),
        ];
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_CONTENT_TYPE,
                        schema: Problem::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::internal(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_reveal_their_cause() {
        let err = Error::internal("disk /var/secret failed");
        let problem = err.problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("secret"));
    }

    #[test]
    fn every_kind_renders_with_its_own_status_and_type() {
        let kinds = [
            Error::BadRequest("x".into()),
            Error::Unauthorized("x".into()),
            Error::PaymentRequired("x".into()),
            Error::Forbidden("x".into()),
            Error::NotFound("x".into()),
            Error::Conflict("x".into()),
            Error::PayloadTooLarge(10),
            Error::invalid("email", "is not an email address"),
            Error::RateLimited { retry_after_secs: 3 },
            Error::Unavailable("x".into()),
            Error::Upstream("x".into()),
            Error::internal("x"),
        ];
        let mut types = std::collections::HashSet::new();
        for err in kinds {
            let problem = err.problem();
            assert_eq!(problem.status, err.status().as_u16());
            assert!(
                types.insert(problem.type_.clone()),
                "duplicate type {}",
                problem.type_
            );
            let resp = err.as_response();
            assert_eq!(resp.status(), err.status());
            assert_eq!(
                resp.headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                Some(PROBLEM_CONTENT_TYPE)
            );
        }
    }

    #[test]
    fn validation_problem_lists_fields() {
        let problem = Error::invalid("email", "is required").problem();
        assert_eq!(problem.status, 422);
        let errors = problem.errors.expect("errors");
        assert_eq!(errors[0].field, "email");
    }
}
