//! The bearer-token extractor every authenticated operation takes.
//!
//! Declared as a poem-openapi security scheme, so each operation that takes it is
//! documented with `bearerAuth`, and a missing or bad token is a 401 problem.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use serde_json::json;

use crate::audit::{AuditEntry, record};
use crate::error::Error;
use crate::identity::Principal;
use crate::platform::Platform;

/// How an access token is presented: always `Authorization: Bearer <token>`.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Bearer,
}

/// `Authorization: Bearer <access token>`, checked against its live session.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "authenticate"
)]
pub struct BearerAuth(pub Principal);

async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let platform = req
        .data::<Platform>()
        .ok_or_else(|| Error::internal("the platform is not attached to requests"))?;
    let principal = platform
        .identity()
        .authenticate(platform.db(), &bearer.token)
        .await?;
    if let Some(staff) = principal.impersonator {
        // Every request made as someone else leaves a trace.
        let entry = AuditEntry::new("impersonation.request")
            .actor(staff)
            .target("user", principal.user_id)
            .details(json!({ "method": req.method().as_str(), "path": req.uri().path() }));
        platform
            .db()
            .write(move |tx| record(tx, &entry).map(|_| ()))
            .await?;
    }
    Ok(principal)
}
