//! The bearer-token extractors: who may call an operation, decided before anything
//! else about the request is read.
//!
//! Each is declared as the poem-openapi security scheme `bearerAuth`, so every
//! operation that takes one is documented with it, and each is an operation's first
//! argument: poem-openapi extracts arguments in order, so a caller who may not use
//! the operation gets 401, 403 or 404 whatever its parameters or body, and learns
//! nothing about their shape. [`BearerAuth`] is any signed-in user, [`StaffAuth`]
//! platform staff acting as themselves, and [`OrgViewer`], [`OrgMember`],
//! [`OrgAdmin`] and [`OrgOwner`] a member of the org named by the `org_id` path
//! parameter with at least that role (404 to non-members, 403 below the role).

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use serde_json::json;

use crate::audit::{AuditEntry, record};
use crate::error::Error;
use crate::identity::Principal;
use crate::platform::Platform;
use crate::tenancy::{Role, Tenant};

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

/// The tenant context of the org an org-scoped request names: its path is
/// `/api/orgs/{org_id}/...` by contract (read from the path itself, since
/// poem-openapi renames path variables in the route table).
async fn org_access(req: &Request, bearer: Bearer, min: Role) -> poem::Result<Tenant> {
    let principal = authenticate(req, bearer).await?;
    let platform = platform_of(req)?;
    // Not a UUID: no org by that name, which is what non-members hear too.
    let org = req
        .uri()
        .path()
        .strip_prefix("/api/orgs/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|raw| uuid::Uuid::parse_str(raw).ok())
        .ok_or_else(|| Error::NotFound("no such organization".into()))?;
    Ok(platform.tenancy().resolve(&principal, org, min).await?)
}

/// Declares an org-access extractor: `$name(Tenant)` for members of the request's
/// org with at least `$min`, checked by `$checker` (named twice: the derive wants
/// its name as a string).
macro_rules! org_access {
    ($(#[$doc:meta])* $name:ident, $checker:ident, $checker_name:literal, $min:expr) => {
        $(#[$doc])*
        #[derive(SecurityScheme)]
        #[oai(rename = "bearerAuth", ty = "bearer", bearer_format = "JWT", checker = $checker_name)]
        pub struct $name(pub Tenant);

        async fn $checker(req: &Request, bearer: Bearer) -> poem::Result<Tenant> {
            org_access(req, bearer, $min).await
        }
    };
}

org_access!(
    /// A member of the request's org (`org_id`) with any role.
    OrgViewer, org_viewer, "org_viewer", Role::Viewer
);
org_access!(
    /// A member of the request's org (`org_id`) with the member role or higher.
    OrgMember, org_member, "org_member", Role::Member
);
org_access!(
    /// A member of the request's org (`org_id`) with the admin role or higher.
    OrgAdmin, org_admin, "org_admin", Role::Admin
);
org_access!(
    /// An owner of the request's org (`org_id`).
    OrgOwner, org_owner, "org_owner", Role::Owner
);
