//! The bearer-token extractors: who may call an operation, decided before anything
//! else about the request is read.
//!
//! Each is declared as the poem-openapi security scheme `bearerAuth`, so every
//! operation that takes one is documented with it, and each is an operation's first
//! argument: poem-openapi extracts arguments in order, so a caller who may not use
//! the operation gets 401, 403 or 404 whatever its parameters or body, and learns
//! nothing about their shape. [`BearerAuth`] is any signed-in user, [`StaffAuth`]
//! platform staff acting as themselves, [`OrgPerson`] any member of the org named
//! by the `org_id` path parameter, and the extractors declared with
//! [`crate::org_permission!`] a member or API key of that org holding one
//! permission (404 outside the org, 403 without the permission).

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use serde_json::json;

use crate::audit::{AuditEntry, record};
use crate::error::Error;
use crate::identity::Principal;
use crate::platform::Platform;
use crate::tenancy::Tenant;
use crate::tenancy::api_keys::KEY_PREFIX;

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

fn platform_of(req: &Request) -> Result<&Platform, Error> {
    req.data::<Platform>()
        .ok_or_else(|| Error::internal("the platform is not attached to requests"))
}

async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let platform = platform_of(req)?;
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

/// `Authorization: Bearer <access token>` of platform staff acting as themselves
/// (403 for anyone else, impersonation tokens included).
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "authenticate_staff"
)]
pub struct StaffAuth(pub Principal);

async fn authenticate_staff(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let principal = authenticate(req, bearer).await?;
    principal.require_staff()?;
    Ok(principal)
}

/// The org an org-scoped request names: its path is `/api/orgs/{org_id}/...` by
/// contract (read from the path itself, since poem-openapi renames path variables
/// in the route table). Not a UUID: no org by that name, which is what non-members
/// hear too.
fn org_in_path(req: &Request) -> Result<uuid::Uuid, Error> {
    req.uri()
        .path()
        .strip_prefix("/api/orgs/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|raw| uuid::Uuid::parse_str(raw).ok())
        .ok_or_else(|| Error::NotFound("no such organization".into()))
}

/// The tenant context of an org-scoped request, for a member whose role carries
/// `permission`, or an API key of that org carrying it (404 outside the org, 403
/// without the permission). `None` admits any member and no API key: what only a
/// person may do (leave the org). Every request an API key makes that may change
/// something is audited, its actor `api_key:<id>`.
pub async fn org_access(req: &Request, bearer: Bearer, permission: Option<&str>) -> poem::Result<Tenant> {
    let platform = platform_of(req)?;
    let tenancy = platform.tenancy();
    if bearer.token.starts_with(KEY_PREFIX) {
        let key = tenancy.authenticate_key(&bearer.token).await?;
        let org = org_in_path(req)?;
        let Some(permission) = permission else {
            tenancy.resolve_key(&key, org, None).await?;
            return Err(
                Error::Forbidden("this needs a signed-in member; an API key cannot do it".into()).into(),
            );
        };
        let tenant = tenancy.resolve_key(&key, org, Some(permission)).await?;
        if req.method() != poem::http::Method::GET && req.method() != poem::http::Method::HEAD {
            let entry = AuditEntry::new("api_key.request")
                .actor(tenant.actor_id())
                .org(org)
                .target("api_key", key.id)
                .details(json!({ "method": req.method().as_str(), "path": req.uri().path() }));
            platform
                .db()
                .write(move |tx| record(tx, &entry).map(|_| ()))
                .await?;
        }
        return Ok(tenant);
    }
    let principal = authenticate(req, bearer).await?;
    let org = org_in_path(req)?;
    Ok(tenancy.resolve(&principal, org, permission).await?)
}

/// A member of the request's org (`org_id`) with any role, as a person (API keys
/// get 403): for what every member may do to their own membership.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "org_person"
)]
pub struct OrgPerson(pub Tenant);

async fn org_person(req: &Request, bearer: Bearer) -> poem::Result<Tenant> {
    org_access(req, bearer, None).await
}

/// Declares an org-access extractor: `$name(Tenant)` for a member whose role, or
/// an API key of the org, carries `$permission` (see [`org_access`]).
///
/// ```ignore
/// plinth_core::org_permission!(
///     /// Members of the org who may record usage.
///     pub RecordUsage = "usage:record"
/// );
/// ```
#[macro_export]
macro_rules! org_permission {
    ($(#[$doc:meta])* $vis:vis $name:ident = $permission:literal) => {
        $(#[$doc])*
        #[derive(poem_openapi::SecurityScheme)]
        #[oai(rename = "bearerAuth", ty = "bearer", bearer_format = "JWT", checker = "Self::check")]
        $vis struct $name(pub $crate::tenancy::Tenant);

        impl $name {
            /// The permission this access checks.
            pub const PERMISSION: &'static str = $permission;

            async fn check(
                req: &$crate::__private::Request,
                bearer: $crate::__private::Bearer,
            ) -> $crate::__private::PoemResult<$crate::tenancy::Tenant> {
                $crate::identity::auth::org_access(req, bearer, Some($permission)).await
            }
        }
    };
}
