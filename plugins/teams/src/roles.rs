//! /api/permissions and /api/orgs/{org_id}/roles: the permission catalog, and the
//! org's roles (the presets and its custom roles).
//!
//! Rules: creating, changing or deleting a role needs `roles:manage` and every
//! permission the role carries (before and after a change); owner powers are not
//! grantable (422); a role held by a member or a pending invitation cannot be
//! deleted (409); the presets cannot be changed.

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::identity::auth::BearerAuth;
use plinth_core::storage::db::now_millis;
use plinth_core::storage::sql::Sql;
use plinth_core::tenancy::permissions::require_covers;
use plinth_core::tenancy::roles::{self, CustomRole, valid_key};
use plinth_core::tenancy::{Role, bound};
use plinth_core::{Error, FieldError, Platform, Result, params};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use uuid::Uuid;

use crate::access::{ManageRoles, ReadOrg};
use crate::api::{NoContent, TeamsApi, TeamsTag};

#[derive(Clone)]
pub(crate) struct RolesApi(pub TeamsApi);

/// One permission of the catalog.
#[derive(Object)]
struct PermissionView {
    /// `area:action`.
    key: String,
    description: String,
    /// The lowest preset role holding it (every preset above holds it too).
    preset: Role,
    /// An owner power: no custom role or API key may carry it.
    owner_only: bool,
}

#[derive(Object)]
struct PermissionList {
    items: Vec<PermissionView>,
}

/// A role of the organization: a preset or a custom role.
#[derive(Object)]
struct RoleView {
    /// A preset's name or the custom role's key.
    key: String,
    name: String,
    description: String,
    permissions: Vec<String>,
    /// A built-in preset (fixed) rather than a custom role.
    preset: bool,
}

#[derive(Object)]
struct RolePage {
    items: Vec<RoleView>,
    /// Always null: an org's roles come in one page.
    next_cursor: Option<String>,
}

#[derive(Object)]
#[oai(example)]
struct CreateRoleRequest {
    /// Lowercase letters, digits, `_` and `-` (1 to 40), not a preset's name;
    /// immutable once created.
    key: String,
    name: String,
    #[oai(default)]
    description: String,
    /// Permission keys from GET /api/permissions; owner powers are refused.
    permissions: Vec<String>,
}

impl Example for CreateRoleRequest {
    fn example() -> Self {
        CreateRoleRequest {
            key: "billing-manager".into(),
            name: "Billing manager".into(),
            description: "Runs the subscription and reads invoices.".into(),
            permissions: vec!["org:read".into(), "billing:read".into(), "billing:manage".into()],
        }
    }
}

#[derive(Object)]
#[oai(example)]
struct UpdateRoleRequest {
    name: Option<String>,
    description: Option<String>,
    /// The whole new set (replaces the old one).
    permissions: Option<Vec<String>>,
}

impl Example for UpdateRoleRequest {
    fn example() -> Self {
        UpdateRoleRequest {
            name: None,
            description: None,
            permissions: Some(vec!["org:read".into(), "billing:read".into()]),
        }
    }
}

#[derive(ApiResponse)]
enum CreatedRole {
    /// Created.
    #[oai(status = 201)]
    Role(Json<RoleView>),
}

const MAX_NAME: usize = 100;
const MAX_DESCRIPTION: usize = 500;

fn preset_view(platform: &Platform, role: Role) -> RoleView {
    let (name, description) = match role {
        Role::Owner => ("Owner", "Everything, including the owner powers."),
        Role::Admin => (
            "Admin",
            "Manages the organization, its members, billing and keys.",
        ),
        Role::Member => ("Member", "Reads the organization and records usage."),
        Role::Viewer => ("Viewer", "Reads the organization."),
    };
    RoleView {
        key: role.as_str().into(),
        name: name.into(),
        description: description.into(),
        permissions: platform.tenancy().catalog().preset(role).to_vec(),
        preset: true,
    }
}

fn custom_view(role: CustomRole) -> RoleView {
    RoleView {
        key: role.key,
        name: role.name,
        description: role.description,
        permissions: role.permissions.to_vec(),
        preset: false,
    }
}

fn no_such_role() -> Error {
    Error::NotFound("no such role".into())
}

/// Name and description checks, one message per field.
fn text_errors(name: Option<&str>, description: Option<&str>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(name) = name
        && (name.trim().is_empty() || name.chars().count() > MAX_NAME)
    {
        errors.push(FieldError {
            field: "name".into(),
            message: format!("must be 1 to {MAX_NAME} characters"),
        });
    }
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        errors.push(FieldError {
            field: "description".into(),
            message: format!("must be at most {MAX_DESCRIPTION} characters"),
        });
    }
    errors
}

/// A role in use by a member or a pending invitation cannot go.
fn in_use(tx: &Sql<'_>, key: &str) -> Result<u32> {
    let members = bound::count_role(tx, key)?;
    let invited: u32 = tx.query_one(
        "SELECT count(*) FROM invitations WHERE role = ?1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?2",
        params![key, now_millis()],
        |r| r.get(0),
    )?;
    Ok(members + invited)
}

fn audit(
    tx: &Sql<'_>,
    tenant: &(Uuid, String),
    action: &'static str,
    key: &str,
    details: serde_json::Value,
    client: &ClientInfo,
) -> Result<()> {
    record(
        tx,
        &AuditEntry::new(action)
            .actor(&tenant.1)
            .org(tenant.0)
            .target("role", key)
            .client(client)
            .details(details),
    )
    .map(|_| ())
}

#[OpenApi(tag = "TeamsTag::Roles")]
impl RolesApi {
    /// List the permission catalog
    ///
    /// Every permission an org operation may check, contributed by the enabled
    /// plugins, with the lowest preset role holding it.
    #[oai(path = "/api/permissions", method = "get", operation_id = "listPermissions")]
    async fn permissions(&self, _auth: BearerAuth) -> Result<Json<PermissionList>> {
        let items = self
            .0
            .platform
            .tenancy()
            .catalog()
            .entries()
            .iter()
            .map(|p| PermissionView {
                key: p.key.to_string(),
                description: p.description.to_string(),
                preset: p.preset,
                owner_only: p.owner_only(),
            })
            .collect();
        Ok(Json(PermissionList { items }))
    }

    /// List roles
    ///
    /// The four presets, then the org's custom roles by key.
    #[oai(path = "/api/orgs/:org_id/roles", method = "get", operation_id = "listRoles")]
    async fn list(
        &self,
        access: ReadOrg,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<Json<RolePage>> {
        let custom = access.0.db().call(|conn| roles::list(conn)).await?;
        let platform = &self.0.platform;
        let items = [Role::Owner, Role::Admin, Role::Member, Role::Viewer]
            .into_iter()
            .map(|r| preset_view(platform, r))
            .chain(custom.into_iter().map(custom_view))
            .collect();
        Ok(Json(RolePage {
            items,
            next_cursor: None,
        }))
    }

    /// Create a custom role
    ///
    /// The caller must hold every permission of the new role.
    #[oai(
        path = "/api/orgs/:org_id/roles",
        method = "post",
        operation_id = "createRole"
    )]
    async fn create(
        &self,
        access: ManageRoles,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<CreateRoleRequest>,
    ) -> Result<CreatedRole> {
        let tenant = access.0;
        let CreateRoleRequest {
            key,
            name,
            description,
            permissions,
        } = body.0;
        let mut errors = text_errors(Some(&name), Some(&description));
        if !valid_key(&key) {
            errors.push(FieldError {
                field: "key".into(),
                message: "1 to 40 lowercase letters, digits, `_` or `-`".into(),
            });
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        if Role::parse(&key).is_some() {
            return Err(Error::Conflict(format!("`{key}` is a preset role")));
        }
        let catalog = self.0.platform.tenancy().catalog();
        let granted = catalog.grantable("permissions", &permissions, &tenant.permissions, "the role")?;
        let who = (tenant.org_id, tenant.actor_id());
        let org = tenant.org_id;
        let role = tenant
            .db()
            .write(move |tx| {
                let role = roles::create(tx, org, &key, name.trim(), description.trim(), &granted)?;
                audit(
                    tx,
                    &who,
                    "role.created",
                    &key,
                    json!({ "permissions": granted.to_vec() }),
                    &client,
                )?;
                Ok(role)
            })
            .await?;
        Ok(CreatedRole::Role(Json(custom_view(role))))
    }

    /// Change a custom role
    ///
    /// The caller must hold every permission of the role before and after; the
    /// change applies to its members at once. Presets cannot be changed (409).
    #[oai(
        path = "/api/orgs/:org_id/roles/:key",
        method = "patch",
        operation_id = "updateRole"
    )]
    async fn update(
        &self,
        access: ManageRoles,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        key: Path<String>,
        body: Json<UpdateRoleRequest>,
    ) -> Result<Json<RoleView>> {
        let tenant = access.0;
        let key = key.0;
        if Role::parse(&key).is_some() {
            return Err(Error::Conflict(format!("the preset `{key}` cannot be changed")));
        }
        let UpdateRoleRequest {
            name,
            description,
            permissions,
        } = body.0;
        let errors = text_errors(name.as_deref(), description.as_deref());
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let catalog = self.0.platform.tenancy().catalog();
        let granted = permissions
            .map(|p| catalog.grantable("permissions", &p, &tenant.permissions, "the role"))
            .transpose()?;
        let (who, held) = ((tenant.org_id, tenant.actor_id()), tenant.permissions.clone());
        let role = tenant
            .db()
            .write(move |tx| {
                let before = roles::get(tx, &key)?.ok_or_else(no_such_role)?;
                require_covers(&held, &before.permissions, &format!("the role `{key}`"))?;
                let permissions = granted.unwrap_or_else(|| before.permissions.clone());
                let name = name.map_or(before.name.clone(), |n| n.trim().to_string());
                let description = description.map_or(before.description.clone(), |d| d.trim().to_string());
                roles::update(tx, &key, &name, &description, &permissions)?;
                audit(
                    tx,
                    &who,
                    "role.updated",
                    &key,
                    json!({ "before": before.permissions.to_vec(), "after": permissions.to_vec() }),
                    &client,
                )?;
                roles::get(tx, &key)?.ok_or_else(no_such_role)
            })
            .await?;
        self.0.platform.tenancy().forget_org(tenant.org_id);
        Ok(Json(custom_view(role)))
    }

    /// Delete a custom role
    ///
    /// Refused (409) while a member holds it or a pending invitation names it.
    #[oai(
        path = "/api/orgs/:org_id/roles/:key",
        method = "delete",
        operation_id = "deleteRole"
    )]
    async fn delete(
        &self,
        access: ManageRoles,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        key: Path<String>,
    ) -> Result<NoContent> {
        let tenant = access.0;
        let key = key.0;
        if Role::parse(&key).is_some() {
            return Err(Error::Conflict(format!("the preset `{key}` cannot be deleted")));
        }
        let (who, held) = ((tenant.org_id, tenant.actor_id()), tenant.permissions.clone());
        tenant
            .db()
            .write(move |tx| {
                let role = roles::get(tx, &key)?.ok_or_else(no_such_role)?;
                require_covers(&held, &role.permissions, &format!("the role `{key}`"))?;
                let users = in_use(tx, &key)?;
                if users > 0 {
                    return Err(Error::Conflict(format!(
                        "the role `{key}` is held by {users} member(s) or pending invitation(s); change them first"
                    )));
                }
                roles::delete(tx, &key)?;
                audit(tx, &who, "role.deleted", &key, json!({ "permissions": role.permissions.to_vec() }), &client)
            })
            .await?;
        self.0.platform.tenancy().forget_org(tenant.org_id);
        Ok(NoContent::Done)
    }
}
