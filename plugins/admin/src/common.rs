//! What the admin API types share.

use plinth_core::audit::{AuditEntry, record};
use plinth_core::{Error, Platform, Result};
use poem_openapi::{ApiResponse, Object, Tags};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Clone)]
pub(crate) struct AdminApi {
    pub platform: Platform,
}

impl AdminApi {
    pub async fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.platform
            .db()
            .write(move |tx| record(tx, &entry).map(|_| ()))
            .await
    }
}

#[derive(Tags)]
pub(crate) enum AdminTag {
    /// Platform staff: accounts.
    #[oai(rename = "AdminUsers")]
    Users,
    /// Platform staff: organizations.
    #[oai(rename = "AdminOrgs")]
    Orgs,
    /// Platform staff: the audit log.
    #[oai(rename = "AdminAudit")]
    Audit,
    /// Platform staff: stats and system health.
    #[oai(rename = "AdminSystem")]
    System,
}

#[derive(ApiResponse)]
pub(crate) enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[derive(Object)]
pub(crate) struct Accepted {
    pub detail: String,
}

#[derive(ApiResponse)]
pub(crate) enum AcceptedResponse {
    /// Accepted; the rest happens by email.
    #[oai(status = 202)]
    Accepted(poem_openapi::payload::Json<Accepted>),
}

pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(Error::internal)
}

pub(crate) fn format_time(t: OffsetDateTime) -> Result<String> {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(Error::internal)
}
