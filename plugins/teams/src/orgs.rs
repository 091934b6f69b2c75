//! /api/orgs: list, create, read, update and delete organizations.

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::http::pagination::Page;
use plinth_core::identity::auth::BearerAuth;
use plinth_core::runtime::events::Event;
use plinth_core::tenancy::{Org, Role, RoleName, Tenant, bound};
use plinth_core::{Error, FieldError, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{DeleteOrg, ReadOrg, UpdateOrg};
use crate::api::{NoContent, TeamsApi, TeamsTag, parse_time};

#[derive(Clone)]
pub(crate) struct OrgsApi(pub TeamsApi);

/// An organization, with the caller's role in it.
#[derive(Object)]
struct OrgView {
    id: Uuid,
    name: String,
    /// Unique, URL-friendly name.
    slug: String,
    created_at: OffsetDateTime,
    /// The caller's role (null for an API key).
    role: Option<RoleName>,
    /// What the caller may do in this organization (on GET /api/orgs/{org_id};
    /// null in lists), so a frontend can show or hide what needs a permission.
    permissions: Option<Vec<String>>,
}

impl OrgView {
    fn new(org: Org, role: RoleName) -> Result<Self> {
        Ok(OrgView {
            id: org.id,
            name: org.name,
            slug: org.slug,
            created_at: parse_time(&org.created_at)?,
            role: Some(role),
            permissions: None,
        })
    }

    /// The org as the caller of an org-scoped request sees it.
    fn of(org: Org, tenant: &Tenant) -> Result<Self> {
        Ok(OrgView {
            id: org.id,
            name: org.name,
            slug: org.slug,
            created_at: parse_time(&org.created_at)?,
            role: tenant.role.clone(),
            permissions: Some(tenant.permissions.to_vec()),
        })
    }
}

#[derive(Object)]
struct OrgPage {
    items: Vec<OrgView>,
    next_cursor: Option<String>,
}

#[derive(Object)]
#[oai(example)]
struct CreateOrgRequest {
    name: String,
    /// Lowercase letters, digits and hyphens; generated from the name when absent.
    slug: Option<String>,
}

impl Example for CreateOrgRequest {
    fn example() -> Self {
        CreateOrgRequest {
            name: "Initech".into(),
            slug: Some("initech".into()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
struct UpdateOrgRequest {
    name: Option<String>,
    slug: Option<String>,
}

#[derive(ApiResponse)]
enum Created {
    /// Created; the caller is its owner.
    #[oai(status = 201)]
    Org(Json<OrgView>),
}

const MAX_SLUG: usize = 48;

/// Why a slug is refused, if it is.
fn slug_violation(slug: &str) -> Option<&'static str> {
    if slug.len() < 2 || slug.len() > MAX_SLUG {
        return Some("must be 2 to 48 characters long");
    }
    if !slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("may hold only lowercase letters, digits and hyphens");
    }
    if slug.starts_with('-') || slug.ends_with('-') || slug.contains("--") {
        return Some("must not start or end with a hyphen or repeat one");
    }
    None
}

/// A slug from a name: ASCII letters and digits, hyphens between words.
fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let mut slug: String = slug.trim_end_matches('-').chars().take(MAX_SLUG - 4).collect();
    slug = slug.trim_end_matches('-').to_string();
    if slug.len() < 2 {
        slug = format!("org-{}", &Uuid::now_v7().simple().to_string()[24..]);
    }
    slug
}

fn name_error(name: &str) -> Option<FieldError> {
    plinth_core::identity::users::name_violation(name).map(|message| FieldError {
        field: "name".into(),
        message: message.into(),
    })
}

#[OpenApi(tag = "TeamsTag::Orgs")]
impl OrgsApi {
    /// List my organizations
    ///
    /// The organizations the caller belongs to, each with the caller's role.
    #[oai(path = "/api/orgs", method = "get", operation_id = "listOrgs")]
    async fn list(
        &self,
        auth: BearerAuth,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<OrgPage>> {
        let page = Page::parse(limit.0, cursor.0)?;
        let rows = self
            .0
            .platform
            .tenancy()
            .orgs_of_user(auth.0.user_id, page.fetch(), page.after)
            .await?;
        let (rows, next_cursor) = page.finish(rows, |r| r.membership_id);
        let items = rows
            .into_iter()
            .map(|m| OrgView::new(m.org, m.role))
            .collect::<Result<_>>()?;
        Ok(Json(OrgPage { items, next_cursor }))
    }

    /// Create an organization
    ///
    /// The caller becomes its owner.
    #[oai(path = "/api/orgs", method = "post", operation_id = "createOrg")]
    async fn create(
        &self,
        auth: BearerAuth,
        client: ClientInfo,
        body: Json<CreateOrgRequest>,
    ) -> Result<Created> {
        let name = body.0.name.trim().to_string();
        let mut errors: Vec<FieldError> = name_error(&name).into_iter().collect();
        let explicit = body.0.slug.map(|s| s.trim().to_string());
        if let Some(message) = explicit.as_deref().and_then(slug_violation) {
            errors.push(FieldError {
                field: "slug".into(),
                message: message.into(),
            });
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let tenancy = self.0.platform.tenancy();
        let slug = match explicit {
            Some(slug) => slug,
            None => {
                let base = slugify(&name);
                let mut candidate = base.clone();
                let mut n = 2;
                while tenancy.slug_taken(candidate.clone()).await? && n < 100 {
                    candidate = format!("{base}-{n}");
                    n += 1;
                }
                candidate
            }
        };
        let id = Uuid::now_v7();
        let user = auth.0.user_id;
        let platform = self.0.platform.clone();
        let org = tenancy
            .bind(id)
            .write(move |tx| {
                bound::create_org(tx, id, &name, &slug)?;
                bound::add_member(tx, id, user, &Role::Owner.into())?;
                record(
                    tx,
                    &AuditEntry::new("org.created")
                        .actor(user)
                        .org(id)
                        .target("org", id)
                        .client(&client)
                        .details(json!({ "name": name, "slug": slug })),
                )?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "org.created",
                        json!({ "summary": format!("created the organization {name}") }),
                    )
                    .org(id)
                    .actor(user),
                )?;
                bound::get_org(tx)?.ok_or_else(|| Error::internal("the new org is not visible"))
            })
            .await?;
        tenancy.forget_org(id);
        Ok(Created::Org(Json(OrgView::new(org, Role::Owner.into())?)))
    }

    /// Get an organization
    #[oai(path = "/api/orgs/:org_id", method = "get", operation_id = "getOrg")]
    async fn get(
        &self,
        access: ReadOrg,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<Json<OrgView>> {
        let tenant = access.0;
        let org = tenant
            .db()
            .call(|conn| bound::get_org(conn))
            .await?
            .ok_or_else(|| Error::NotFound("no such organization".into()))?;
        Ok(Json(OrgView::of(org, &tenant)?))
    }

    /// Update an organization
    ///
    /// Admins and owners may rename it or change its slug.
    #[oai(path = "/api/orgs/:org_id", method = "patch", operation_id = "updateOrg")]
    async fn update(
        &self,
        access: UpdateOrg,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<UpdateOrgRequest>,
    ) -> Result<Json<OrgView>> {
        let tenant = access.0;
        let UpdateOrgRequest { name, slug } = body.0;
        let name = name.map(|n| n.trim().to_string());
        let slug = slug.map(|s| s.trim().to_string());
        let mut errors: Vec<FieldError> = name.as_deref().and_then(name_error).into_iter().collect();
        if let Some(message) = slug.as_deref().and_then(slug_violation) {
            errors.push(FieldError {
                field: "slug".into(),
                message: message.into(),
            });
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let (org, user, actor) = (tenant.org_id, tenant.user_id(), tenant.actor_id());
        let platform = self.0.platform.clone();
        let updated = tenant
            .db()
            .write(move |tx| {
                let before =
                    bound::get_org(tx)?.ok_or_else(|| Error::NotFound("no such organization".into()))?;
                let new_name = name.unwrap_or_else(|| before.name.clone());
                let new_slug = slug.unwrap_or_else(|| before.slug.clone());
                // Nothing to change (no fields, or the same values): no write, no
                // audit entry, no activity item.
                if new_name == before.name && new_slug == before.slug {
                    return Ok(before);
                }
                bound::update_org(tx, &new_name, &new_slug)?;
                let changes = json!({
                    "before": { "name": before.name, "slug": before.slug },
                    "after": { "name": new_name, "slug": new_slug },
                });
                record(
                    tx,
                    &AuditEntry::new("org.updated")
                        .actor(actor)
                        .org(org)
                        .target("org", org)
                        .client(&client)
                        .details(changes.clone()),
                )?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "org.updated",
                        json!({ "summary": "updated the organization's settings", "changes": changes }),
                    )
                    .org(org)
                    .actor(user),
                )?;
                bound::get_org(tx)?.ok_or_else(|| Error::NotFound("no such organization".into()))
            })
            .await?;
        Ok(Json(OrgView::of(updated, &tenant)?))
    }

    /// Delete an organization
    ///
    /// Owners only. Removes the organization and all its data in one transaction.
    #[oai(path = "/api/orgs/:org_id", method = "delete", operation_id = "deleteOrg")]
    async fn delete(
        &self,
        access: DeleteOrg,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<NoContent> {
        let tenant = access.0;
        let (org, user, actor) = (tenant.org_id, tenant.user_id(), tenant.actor_id());
        let platform = self.0.platform.clone();
        tenant
            .db()
            .delete_org(move |tx| {
                let current =
                    bound::get_org(tx)?.ok_or_else(|| Error::NotFound("no such organization".into()))?;
                let members = bound::count_members(tx)?;
                // Other areas react first (e.g. cancel a subscription), then the
                // cascade removes every tenant row. The audit entry outlives the org.
                platform.events().publish(
                    tx,
                    &Event::new(
                        "org.deleted",
                        json!({ "name": current.name, "slug": current.slug }),
                    )
                    .org(org)
                    .actor(user),
                )?;
                record(
                    tx,
                    &AuditEntry::new("org.deleted")
                        .actor(actor)
                        .org(org)
                        .target("org", org)
                        .client(&client)
                        .details(json!({ "name": current.name, "slug": current.slug, "members": members })),
                )?;
                Ok(())
            })
            .await?;
        self.0.platform.tenancy().forget_org(org);
        Ok(NoContent::Done)
    }
}

impl poem_openapi::types::Example for UpdateOrgRequest {
    fn example() -> Self {
        UpdateOrgRequest {
            name: Some("Initech Holdings".into()),
            slug: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_generated_from_names() {
        assert_eq!(slugify("Acme, Inc."), "acme-inc");
        assert_eq!(slugify("  Émile & Co  "), "mile-co");
        assert!(slugify("!!").starts_with("org-"));
        assert!(slug_violation(&slugify(&"x".repeat(200))).is_none());
    }

    #[test]
    fn slugs_are_validated() {
        assert!(slug_violation("acme").is_none());
        for bad in ["a", "Acme", "-acme", "acme-", "ac--me", "ac me", &"a".repeat(49)] {
            assert!(slug_violation(bad).is_some(), "{bad}");
        }
    }
}
