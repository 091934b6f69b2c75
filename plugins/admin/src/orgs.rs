//! /api/admin/orgs: search, detail, suspend and restore, delete.

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::http::pagination::Page;
use plinth_core::identity::auth::StaffAuth;
use plinth_core::runtime::events::Event;
use plinth_core::tenancy::{OrgSummary, RoleName, bound};
use plinth_core::{Error, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::{AdminApi, AdminTag, NoContent, parse_time};

#[derive(Clone)]
pub(crate) struct OrgsApi(pub AdminApi);

#[derive(Object)]
struct AdminOrg {
    id: Uuid,
    name: String,
    slug: String,
    created_at: OffsetDateTime,
    suspended: bool,
    members: u32,
}

impl AdminOrg {
    fn new(o: OrgSummary) -> Result<Self> {
        Ok(AdminOrg {
            id: o.org.id,
            name: o.org.name,
            slug: o.org.slug,
            created_at: parse_time(&o.org.created_at)?,
            suspended: o.suspended,
            members: o.members,
        })
    }
}

#[derive(Object)]
struct AdminOrgPage {
    items: Vec<AdminOrg>,
    next_cursor: Option<String>,
}

#[derive(Object)]
struct AdminMember {
    user_id: Uuid,
    email: String,
    name: String,
    role: RoleName,
}

#[derive(Object)]
struct AdminOrgDetail {
    id: Uuid,
    name: String,
    slug: String,
    created_at: OffsetDateTime,
    suspended: bool,
    /// The current plan's id; null while no plugin provides plans.
    plan: Option<String>,
    /// The first 100 members, in join order.
    members: Vec<AdminMember>,
    member_count: u32,
}

impl OrgsApi {
    async fn detail(&self, org: Uuid) -> Result<AdminOrgDetail> {
        let tenancy = self.0.platform.tenancy().clone();
        tenancy
            .bind(org)
            .call(move |conn| {
                let current =
                    bound::get_org(conn)?.ok_or_else(|| Error::NotFound("no such organization".into()))?;
                let members = bound::members(conn, 100, None)?
                    .into_iter()
                    .map(|m| AdminMember {
                        user_id: m.user_id,
                        email: m.email,
                        name: m.name,
                        role: m.role,
                    })
                    .collect();
                Ok(AdminOrgDetail {
                    id: current.id,
                    name: current.name,
                    slug: current.slug,
                    created_at: parse_time(&current.created_at)?,
                    suspended: bound::is_suspended(conn)?,
                    plan: tenancy.entitlements().plan(conn)?,
                    members,
                    member_count: bound::count_members(conn)?,
                })
            })
            .await
    }

    async fn set_suspended(
        &self,
        staff: Uuid,
        org: Uuid,
        suspended: bool,
        client: ClientInfo,
    ) -> Result<AdminOrgDetail> {
        let action = if suspended {
            "org.suspended"
        } else {
            "org.unsuspended"
        };
        self.0
            .platform
            .tenancy()
            .bind(org)
            .write(move |tx| {
                bound::get_org(tx)?.ok_or_else(|| Error::NotFound("no such organization".into()))?;
                bound::set_suspended(tx, suspended)?;
                record(
                    tx,
                    &AuditEntry::new(action)
                        .actor(staff)
                        .org(org)
                        .target("org", org)
                        .client(&client),
                )?;
                Ok(())
            })
            .await?;
        self.0.platform.tenancy().forget_org(org);
        self.detail(org).await
    }
}

#[OpenApi(tag = "AdminTag::Orgs")]
impl OrgsApi {
    /// Search organizations
    ///
    /// By name or slug prefix.
    #[oai(path = "/api/admin/orgs", method = "get", operation_id = "adminListOrgs")]
    async fn list(
        &self,
        _auth: StaffAuth,
        /// Name or slug prefix.
        q: Query<Option<String>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<AdminOrgPage>> {
        let page = Page::parse(limit.0, cursor.0)?;
        let rows = self
            .0
            .platform
            .tenancy()
            .search_orgs(q.0.unwrap_or_default(), page.fetch(), page.after)
            .await?;
        let (rows, next_cursor) = page.finish(rows, |o| o.org.id);
        let items = rows.into_iter().map(AdminOrg::new).collect::<Result<_>>()?;
        Ok(Json(AdminOrgPage { items, next_cursor }))
    }

    /// An organization, with members and plan
    #[oai(path = "/api/admin/orgs/:id", method = "get", operation_id = "adminGetOrg")]
    async fn get(&self, _auth: StaffAuth, id: Path<Uuid>) -> Result<Json<AdminOrgDetail>> {
        Ok(Json(self.detail(id.0).await?))
    }

    /// Suspend an organization
    ///
    /// Its routes answer 403 until restored; its data is kept.
    #[oai(
        path = "/api/admin/orgs/:id/suspend",
        method = "post",
        operation_id = "adminSuspendOrg"
    )]
    async fn suspend(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<Json<AdminOrgDetail>> {
        let staff = auth.0.user_id;
        Ok(Json(self.set_suspended(staff, id.0, true, client).await?))
    }

    /// Restore a suspended organization
    #[oai(
        path = "/api/admin/orgs/:id/unsuspend",
        method = "post",
        operation_id = "adminUnsuspendOrg"
    )]
    async fn unsuspend(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<Json<AdminOrgDetail>> {
        let staff = auth.0.user_id;
        Ok(Json(self.set_suspended(staff, id.0, false, client).await?))
    }

    /// Delete an organization
    ///
    /// Removes it and all its data in one transaction.
    #[oai(
        path = "/api/admin/orgs/:id",
        method = "delete",
        operation_id = "adminDeleteOrg"
    )]
    async fn delete(&self, auth: StaffAuth, client: ClientInfo, id: Path<Uuid>) -> Result<NoContent> {
        let staff = auth.0.user_id;
        let org = id.0;
        let platform = self.0.platform.clone();
        self.0
            .platform
            .tenancy()
            .bind(org)
            .delete_org(move |tx| {
                let current =
                    bound::get_org(tx)?.ok_or_else(|| Error::NotFound("no such organization".into()))?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "org.deleted",
                        json!({ "name": current.name, "slug": current.slug, "by_staff": true }),
                    )
                    .org(org)
                    .actor(staff),
                )?;
                record(
                    tx,
                    &AuditEntry::new("org.deleted")
                        .actor(staff)
                        .org(org)
                        .target("org", org)
                        .client(&client)
                        .details(json!({ "name": current.name, "slug": current.slug, "by_staff": true })),
                )?;
                Ok(())
            })
            .await?;
        self.0.platform.tenancy().forget_org(org);
        Ok(NoContent::Done)
    }
}
