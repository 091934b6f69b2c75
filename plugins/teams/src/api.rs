//! What the teams API types share: the platform handle, tags, views and helpers.

use plinth_core::{Error, Platform, Result};
use poem_openapi::{ApiResponse, Object, Tags};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

#[derive(Clone)]
pub(crate) struct TeamsApi {
    pub platform: Platform,
}

#[derive(Tags)]
pub(crate) enum TeamsTag {
    /// Organizations (tenants) and their settings.
    Orgs,
    /// Members of an organization and their roles.
    Members,
    /// Invitations to join an organization.
    Invitations,
    /// The activity feed and audit log of an organization.
    Activity,
    /// The permission catalog, and an organization's preset and custom roles.
    Roles,
    /// An organization's API keys (service accounts).
    ApiKeys,
}

#[derive(ApiResponse)]
pub(crate) enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// A user as other members see them.
#[derive(Object, Clone)]
pub(crate) struct Person {
    pub id: Uuid,
    pub name: String,
}

pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(Error::internal)
}

pub(crate) fn millis_to_time(ms: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(Error::internal)
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(Error::internal)
}
