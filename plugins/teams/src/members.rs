//! /api/orgs/{org_id}/members: list, change roles, remove, leave, transfer ownership.
//!
//! Rules: `members:manage` changes roles and removes members; touching an owner, or
//! granting owner, needs `owners:manage` (an owner power); nobody hands out or acts
//! on a role carrying permissions they lack; an org always keeps at least one owner.

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::http::pagination::Page;
use plinth_core::http::rendered::Rendered;
use plinth_core::identity::auth::OrgPerson;
use plinth_core::runtime::cache::Cache;
use plinth_core::runtime::events::Event;
use plinth_core::storage::sql::Sql;
use plinth_core::tenancy::permissions::require_covers;
use plinth_core::tenancy::{Member, Permissions, Role, RoleName, Tenant, bound, roles};
use plinth_core::{Error, Platform, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{ManageMembers, ManageOwners, ReadOrg};
use crate::api::{NoContent, TeamsApi, TeamsTag, parse_time};

#[derive(Clone)]
pub(crate) struct MembersApi(pub TeamsApi, MemberPages);

/// Rendered member-list pages by (org, page size, cursor). Emptied by every commit
/// that changes memberships or users (names and emails are listed), so no write
/// path has to remember it.
type MemberPages = Cache<(Uuid, u32, Option<Uuid>), Rendered<MemberPage>>;

/// Bounds how long a change made outside the server (the CLI) goes unseen.
const PAGE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl MembersApi {
    pub(crate) fn new(api: TeamsApi) -> Self {
        let pages =
            api.platform
                .table_cache("member_pages", 10_000, PAGE_TTL, &["tenant_memberships", "users"]);
        MembersApi(api, pages)
    }
}

/// A member of the organization.
#[derive(Object)]
struct MemberView {
    user_id: Uuid,
    email: String,
    name: String,
    role: RoleName,
    joined_at: OffsetDateTime,
}

impl MemberView {
    fn new(m: Member) -> Result<Self> {
        Ok(MemberView {
            user_id: m.user_id,
            email: m.email,
            name: m.name,
            role: m.role,
            joined_at: parse_time(&m.joined_at)?,
        })
    }
}

#[derive(Object)]
struct MemberPage {
    items: Vec<MemberView>,
    next_cursor: Option<String>,
}

#[derive(Object)]
#[oai(example)]
struct RoleChange {
    /// A preset or one of the org's custom roles.
    role: RoleName,
}

#[derive(Object)]
#[oai(example)]
struct TransferRequest {
    /// The member who becomes an owner; the caller becomes an admin.
    user_id: Uuid,
}

fn not_a_member() -> Error {
    Error::NotFound("no such member".into())
}

fn last_owner() -> Error {
    Error::Conflict("an organization must keep at least one owner".into())
}

/// Who acts on a membership: the org, the acting member (none for an API key),
/// the audit actor and what the actor may do.
#[derive(Clone)]
struct Acting {
    org: Uuid,
    user: Option<Uuid>,
    actor: String,
    permissions: Permissions,
}

impl Acting {
    fn of(tenant: &Tenant) -> Self {
        Acting {
            org: tenant.org_id,
            user: tenant.user_id(),
            actor: tenant.actor_id(),
            permissions: tenant.permissions.clone(),
        }
    }

    fn require(&self, permission: &str, why: &str) -> Result<()> {
        if self.permissions.contains(permission) {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "{why} needs the `{permission}` permission"
        )))
    }

    /// The actor may act on a member holding `role` only when it holds every
    /// permission of that role (nobody manages someone more powerful).
    fn covers_role(&self, tx: &Sql<'_>, platform: &Platform, role: &RoleName, what: &str) -> Result<()> {
        let held =
            roles::permissions_of(tx, platform.tenancy().catalog(), role.as_str())?.unwrap_or_default();
        require_covers(&self.permissions, &held, what)
    }
}

/// Removes `target` (the caller when leaving) after checking the rules; publishes
/// `member.removed` and audits, in the caller's transaction.
fn remove(
    tx: &Sql<'_>,
    platform: &Platform,
    acting: &Acting,
    target: Uuid,
    client: &ClientInfo,
) -> Result<()> {
    let leaving = acting.user == Some(target);
    if !leaving {
        acting.require("members:manage", "removing members")?;
    }
    let member = bound::member(tx, target)?.ok_or_else(not_a_member)?;
    if member.role.is(Role::Owner) {
        if !leaving {
            acting.require("owners:manage", "removing an owner")?;
        }
        if bound::count_role(tx, Role::Owner.as_str())? <= 1 {
            return Err(last_owner());
        }
    }
    if !leaving {
        acting.covers_role(
            tx,
            platform,
            &member.role,
            &format!("the member's role `{}`", member.role),
        )?;
    }
    bound::remove_member(tx, target)?;
    let (action, summary) = if leaving {
        ("member.left", format!("{} left the organization", member.name))
    } else {
        (
            "member.removed",
            format!("removed {} from the organization", member.name),
        )
    };
    record(
        tx,
        &AuditEntry::new(action)
            .actor(&acting.actor)
            .org(acting.org)
            .target("user", target)
            .client(client)
            .details(json!({ "role": member.role.as_str() }))
            .personal(json!({ "email": member.email })),
    )?;
    platform.events().publish(
        tx,
        &Event::new(
            "member.removed",
            json!({ "summary": summary, "user_id": target, "role": member.role.as_str(), "left": leaving }),
        )
        .org(acting.org)
        .actor(acting.user),
    )
}

impl MembersApi {
    async fn remove_and_forget(
        &self,
        tenant: &Tenant,
        target: Uuid,
        client: ClientInfo,
    ) -> Result<NoContent> {
        let platform = self.0.platform.clone();
        let acting = Acting::of(tenant);
        tenant
            .db()
            .write(move |tx| remove(tx, &platform, &acting, target, &client))
            .await?;
        self.0.platform.tenancy().forget_org(tenant.org_id);
        Ok(NoContent::Done)
    }
}

#[OpenApi(tag = "TeamsTag::Members")]
impl MembersApi {
    /// List members
    ///
    /// In the order they joined.
    #[oai(
        path = "/api/orgs/:org_id/members",
        method = "get",
        operation_id = "listMembers"
    )]
    async fn list(
        &self,
        access: ReadOrg,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Rendered<MemberPage>> {
        let tenant = access.0;
        let page = Page::parse(limit.0, cursor.0)?;
        let key = (tenant.org_id, page.limit, page.after);
        self.1
            .get_or_load(key, || async move {
                let rows = tenant
                    .db()
                    .call(move |conn| bound::members(conn, page.fetch(), page.after))
                    .await?;
                let (rows, next_cursor) = page.finish(rows, |m| m.membership_id);
                let items = rows.into_iter().map(MemberView::new).collect::<Result<_>>()?;
                Ok(Rendered::new(&MemberPage { items, next_cursor }))
            })
            .await
    }

    /// Change a member's role
    ///
    /// To a preset or a custom role. The caller must hold every permission of both
    /// the member's current role and the new one; granting or revoking owner is an
    /// owner power; the last owner cannot be demoted.
    #[oai(
        path = "/api/orgs/:org_id/members/:user_id",
        method = "patch",
        operation_id = "updateMemberRole"
    )]
    async fn change_role(
        &self,
        access: ManageMembers,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        user_id: Path<Uuid>,
        body: Json<RoleChange>,
    ) -> Result<Json<MemberView>> {
        let tenant = access.0;
        let acting = Acting::of(&tenant);
        let (org, target, new_role) = (tenant.org_id, user_id.0, body.0.role);
        let platform = self.0.platform.clone();
        let member = tenant
            .db()
            .write(move |tx| {
                let member = bound::member(tx, target)?.ok_or_else(not_a_member)?;
                let granted = roles::assignable(tx, platform.tenancy().catalog(), &new_role)?;
                if member.role == new_role {
                    return Ok(member);
                }
                if member.role.is(Role::Owner) || new_role.is(Role::Owner) {
                    acting.require("owners:manage", "granting or revoking the owner role")?;
                }
                acting.covers_role(
                    tx,
                    &platform,
                    &member.role,
                    &format!("the member's role `{}`", member.role),
                )?;
                require_covers(&acting.permissions, &granted, &format!("the role `{new_role}`"))?;
                if member.role.is(Role::Owner) && bound::count_role(tx, Role::Owner.as_str())? <= 1 {
                    return Err(last_owner());
                }
                bound::set_role(tx, target, &new_role)?;
                let change = json!({ "before": member.role.as_str(), "after": new_role.as_str() });
                record(
                    tx,
                    &AuditEntry::new("member.role_changed")
                        .actor(&acting.actor)
                        .org(org)
                        .target("user", target)
                        .client(&client)
                        .details(change.clone()),
                )?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "member.role_changed",
                        json!({
                            "summary": format!("made {} {}", member.name, new_role.as_str()),
                            "user_id": target,
                            "role": change,
                        }),
                    )
                    .org(org)
                    .actor(acting.user),
                )?;
                bound::member(tx, target)?.ok_or_else(not_a_member)
            })
            .await?;
        self.0.platform.tenancy().forget_org(org);
        Ok(Json(MemberView::new(member)?))
    }

    /// Remove a member
    ///
    /// Removing someone else needs `members:manage` and every permission of their
    /// role (an owner also `owners:manage`); any member may remove themselves
    /// (leave). The last owner cannot be removed.
    #[oai(
        path = "/api/orgs/:org_id/members/:user_id",
        method = "delete",
        operation_id = "removeMember"
    )]
    async fn remove(
        &self,
        access: ReadOrg,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        user_id: Path<Uuid>,
    ) -> Result<NoContent> {
        // Any member may leave; removing someone else needs `members:manage`
        // (checked in `remove`, with the owner rules).
        self.remove_and_forget(&access.0, user_id.0, client).await
    }

    /// Leave an organization
    ///
    /// The last owner must transfer ownership (or delete the org) first.
    #[oai(path = "/api/orgs/:org_id/leave", method = "post", operation_id = "leaveOrg")]
    async fn leave(
        &self,
        access: OrgPerson,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<NoContent> {
        let tenant = access.0;
        let me = tenant.person()?.user_id;
        self.remove_and_forget(&tenant, me, client).await
    }

    /// Transfer ownership
    ///
    /// An owner power: the member becomes an owner and the caller an admin.
    #[oai(
        path = "/api/orgs/:org_id/transfer-ownership",
        method = "post",
        operation_id = "transferOwnership"
    )]
    async fn transfer(
        &self,
        access: ManageOwners,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<TransferRequest>,
    ) -> Result<Json<MemberView>> {
        let tenant = access.0;
        let (org, actor, target) = (tenant.org_id, tenant.person()?.user_id, body.0.user_id);
        if target == actor {
            return Err(Error::invalid("user_id", "must be another member"));
        }
        let platform = self.0.platform.clone();
        let member = tenant
            .db()
            .write(move |tx| {
                let member = bound::member(tx, target)?.ok_or_else(not_a_member)?;
                bound::set_role(tx, target, &Role::Owner.into())?;
                bound::set_role(tx, actor, &Role::Admin.into())?;
                record(
                    tx,
                    &AuditEntry::new("org.ownership_transferred")
                        .actor(actor)
                        .org(org)
                        .target("user", target)
                        .client(&client)
                        .details(json!({ "from": actor, "to": target, "previous_role": member.role.as_str() })),
                )?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "org.ownership_transferred",
                        json!({ "summary": format!("transferred ownership to {}", member.name), "user_id": target }),
                    )
                    .org(org)
                    .actor(actor),
                )?;
                bound::member(tx, target)?.ok_or_else(not_a_member)
            })
            .await?;
        self.0.platform.tenancy().forget_org(org);
        Ok(Json(MemberView::new(member)?))
    }
}

impl poem_openapi::types::Example for RoleChange {
    fn example() -> Self {
        RoleChange {
            role: Role::Admin.into(),
        }
    }
}

impl poem_openapi::types::Example for TransferRequest {
    fn example() -> Self {
        TransferRequest {
            user_id: uuid::Uuid::nil(),
        }
    }
}
