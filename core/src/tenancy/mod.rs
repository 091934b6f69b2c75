//! Tenancy: organizations, memberships and roles, the tenant context of
//! `/api/orgs/{org_id}/...` requests, and the org-bound database handle.
//!
//! Isolation does not depend on handlers remembering a WHERE clause. Tenant code gets
//! a [`TenantDb`], whose connections come from the tenant pool (see `storage::db`):
//! bound to one org for the length of a checkout (SQLite) or of a transaction
//! (PostgreSQL), and unbound after. There, SQL reaches tenant data only through
//! views filtering by `current_org()`; SQLite's INSTEAD OF triggers, PostgreSQL's
//! row-level security and check options refuse rows of another org. Membership
//! lookups are cached in moka under (org, user) keys and dropped on every
//! membership change.

use std::sync::Arc;
use std::time::Duration;

use poem_openapi::Enum;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identity::Principal;
use crate::params;
use crate::runtime::cache::Cache;
use crate::storage::db::{Db, now_rfc3339};
pub use crate::storage::isolation::{TenantTable, Writes};
use crate::storage::sql::{Handle, Row, Sql, is_unique_violation};

pub mod api_keys;
pub mod permissions;
pub mod roles;

use api_keys::{ApiKeys, VerifiedKey};
pub use permissions::{Catalog, Permission, Permissions};
pub use roles::RoleName;

/// A member's role in an organization, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
            Role::Viewer => 0,
        }
    }

    /// Whether this role may do what `min` may.
    pub fn at_least(self, min: Role) -> bool {
        self.rank() >= min.rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// What an org's plan allows. Core asks; the billing plugin answers (unlimited
/// until it does).
pub trait Entitlements: Send + Sync + 'static {
    /// Seats (members plus pending invitations) the org may use; `None` = unlimited.
    /// `conn` is bound to the org.
    fn seat_limit(&self, conn: &Sql<'_>) -> Result<Option<u32>>;

    /// The id of the org's current plan (flags can target plans); `None` = no plans.
    fn plan(&self, _conn: &Sql<'_>) -> Result<Option<String>> {
        Ok(None)
    }

    /// Whether the org's plan includes a feature.
    fn has_feature(&self, _conn: &Sql<'_>, _feature: &str) -> Result<bool> {
        Ok(true)
    }

    /// The tables the answers are computed from, so that caches of them can watch
    /// those tables (see [`crate::storage::changes`]) without knowing the provider.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
}

/// No limits: the answer while no plugin provides entitlements.
pub struct Unlimited;

impl Entitlements for Unlimited {
    fn seat_limit(&self, _conn: &Sql<'_>) -> Result<Option<u32>> {
        Ok(None)
    }
}

/// The only way tenant code reaches tenant data: a handle bound to one org.
#[derive(Clone)]
pub struct TenantDb {
    pool: Db,
    org: Uuid,
}

impl TenantDb {
    pub fn org_id(&self) -> Uuid {
        self.org
    }

    /// Runs `f` on a connection bound to the org, for code already on a blocking
    /// thread (on PostgreSQL, in a transaction: the binding lives in one).
    pub fn blocking<T>(&self, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        self.pool.bound_blocking(self.org, f)
    }

    /// Reads (or single statements) on a bound connection, on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.blocking(f)).await?
    }

    /// Runs `f` in a transaction on a bound connection, on this thread: committed
    /// when it answers `(value, true)`, rolled back otherwise.
    pub(crate) fn transaction<T>(
        &self,
        write: bool,
        f: impl FnOnce(&Sql<'_>) -> Result<(T, bool)>,
    ) -> Result<T> {
        self.pool.transaction_in(Some(self.org), write, f)
    }

    /// Deletes the bound org and, through foreign keys, every tenant row of it, in one
    /// transaction: `before` runs first in that transaction (publish, audit).
    pub async fn delete_org<F>(&self, before: F) -> Result<()>
    where
        F: FnOnce(&Sql<'_>) -> Result<()> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.pool.delete_org(db.org, before)).await?
    }

    /// [`Db::write`] on a bound connection, answered once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.pool.write_in(Some(self.org), f).await
    }
}

/// Who acts in an org-scoped request: a signed-in member, or one of the org's
/// API keys.
#[derive(Debug, Clone)]
pub enum Actor {
    User(Principal),
    ApiKey(Uuid),
}

/// The caller of an org-scoped request: who, in which org, with which role and
/// permissions.
pub struct Tenant {
    pub org_id: Uuid,
    /// The member's role; `None` for an API key.
    pub role: Option<RoleName>,
    pub permissions: Permissions,
    pub actor: Actor,
    db: TenantDb,
}

impl Tenant {
    /// The signed-in member, when a person (not an API key) is acting.
    pub fn user_id(&self) -> Option<Uuid> {
        match &self.actor {
            Actor::User(p) => Some(p.user_id),
            Actor::ApiKey(_) => None,
        }
    }

    /// The person acting: 403 for an API key, for what only a member may do
    /// (leave, take or hand over ownership, pay with their email).
    pub fn person(&self) -> Result<&Principal> {
        match &self.actor {
            Actor::User(p) => Ok(p),
            Actor::ApiKey(_) => Err(Error::Forbidden(
                "this needs a signed-in member; an API key cannot do it".into(),
            )),
        }
    }

    /// The actor as the audit log names it: the user's id, or `api_key:<id>`.
    pub fn actor_id(&self) -> String {
        match &self.actor {
            Actor::User(p) => p.user_id.to_string(),
            Actor::ApiKey(id) => format!("api_key:{id}"),
        }
    }

    /// 403 unless the caller holds `permission`.
    pub fn require(&self, permission: &str) -> Result<()> {
        if self.permissions.contains(permission) {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "this needs the `{permission}` permission, which {} does not carry",
            match &self.role {
                Some(role) => format!("your role `{role}`"),
                None => "this API key".to_string(),
            }
        )))
    }

    /// The org-bound database handle.
    pub fn db(&self) -> &TenantDb {
        &self.db
    }
}

/// Memberships are cached this long at most; every change drops them at once.
const MEMBERSHIP_TTL: Duration = Duration::from_secs(300);

/// What the tenant context needs about a caller's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub role: RoleName,
    pub permissions: Permissions,
    /// Suspended orgs answer 403 on every route; their data is kept.
    pub suspended: bool,
}

#[derive(Clone)]
pub struct Tenancy {
    root: Db,
    pool: Db,
    memberships: Cache<(Uuid, Uuid), Option<Membership>>,
    entitlements: Arc<dyn Entitlements>,
    catalog: Arc<Catalog>,
    api_keys: ApiKeys,
}

impl Tenancy {
    pub(crate) fn new(
        root: Db,
        pool: Db,
        entitlements: Arc<dyn Entitlements>,
        catalog: Arc<Catalog>,
        api_keys: ApiKeys,
    ) -> Self {
        Tenancy {
            root,
            pool,
            memberships: Cache::new("memberships", 200_000, Some(MEMBERSHIP_TTL)),
            entitlements,
            catalog,
            api_keys,
        }
    }

    pub(crate) fn membership_cache(&self) -> &Cache<(Uuid, Uuid), Option<Membership>> {
        &self.memberships
    }

    pub(crate) fn pool(&self) -> &Db {
        &self.pool
    }

    pub fn entitlements(&self) -> &dyn Entitlements {
        self.entitlements.as_ref()
    }

    /// The permission catalog of the enabled plugins.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The orgs' API keys.
    pub fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    /// The live key `token` names, counted against its rate limit (401, 429).
    pub async fn authenticate_key(&self, token: &str) -> Result<Arc<VerifiedKey>> {
        let key = self.verify_key(token).await?;
        self.api_keys.admit(&key).await?;
        Ok(key)
    }

    /// The live key `token` names (401 otherwise), not counted.
    pub async fn verify_key(&self, token: &str) -> Result<Arc<VerifiedKey>> {
        self.api_keys.verify(&self.root, token).await
    }

    /// The tenant context of an org-scoped request: 404 when the caller is not a
    /// member (whether or not the org exists), 403 when the org is suspended or the
    /// member's role does not carry `permission` (`None`: any member).
    pub async fn resolve(
        &self,
        principal: &Principal,
        org: Uuid,
        permission: Option<&str>,
    ) -> Result<Tenant> {
        let user = principal.user_id;
        let (root, catalog) = (self.root.clone(), self.catalog.clone());
        let membership = self
            .memberships
            .get_or_load((org, user), || async move {
                root.call(move |conn| membership_of(conn, &catalog, org, user))
                    .await
            })
            .await?;
        let Some(Membership {
            role,
            permissions,
            suspended,
        }) = membership
        else {
            return Err(Error::NotFound("no such organization".into()));
        };
        if suspended {
            return Err(suspended_org());
        }
        let tenant = Tenant {
            org_id: org,
            role: Some(role),
            permissions,
            actor: Actor::User(principal.clone()),
            db: self.bind(org),
        };
        if let Some(permission) = permission {
            tenant.require(permission)?;
        }
        Ok(tenant)
    }

    /// The tenant context of a request made with an API key: 404 for another org
    /// than the key's, 403 without `permission`.
    pub async fn resolve_key(
        &self,
        key: &VerifiedKey,
        org: Uuid,
        permission: Option<&str>,
    ) -> Result<Tenant> {
        if key.org_id != org {
            return Err(Error::NotFound("no such organization".into()));
        }
        if key.org_suspended {
            return Err(suspended_org());
        }
        let tenant = Tenant {
            org_id: org,
            role: None,
            permissions: key.permissions.clone(),
            actor: Actor::ApiKey(key.id),
            db: self.bind(org),
        };
        if let Some(permission) = permission {
            tenant.require(permission)?;
        }
        Ok(tenant)
    }

    /// A handle bound to `org` without a membership check, for flows whose caller
    /// proved access another way (an invitation token, a signed webhook, a new org).
    pub fn bind(&self, org: Uuid) -> TenantDb {
        TenantDb {
            pool: self.pool.clone(),
            org,
        }
    }

    /// Drops every cached membership of an org; call after any membership change.
    pub fn forget_org(&self, org: Uuid) {
        self.memberships.invalidate_if(move |(o, _), _| *o == org);
    }

    /// The orgs a user belongs to, with their role, oldest membership first.
    pub async fn orgs_of_user(
        &self,
        user: Uuid,
        limit: u32,
        after: Option<Uuid>,
    ) -> Result<Vec<OrgMembership>> {
        self.root
            .call(move |conn| {
                let after = after.map(|a| a.to_string()).unwrap_or_default();
                conn.query_all(
                    "SELECT m.id, o.id, o.name, o.slug, o.created_at, m.role
                     FROM tenant_memberships m JOIN organizations o ON o.id = m.org_id
                     WHERE m.user_id = ?1 AND m.id > ?2 ORDER BY m.id LIMIT ?3",
                    params![user, after, limit],
                    |r| {
                        Ok(OrgMembership {
                            membership_id: r.get(0)?,
                            org: org_of(r, 1)?,
                            role: role_at(r, 5)?,
                        })
                    },
                )
            })
            .await
    }

    /// Orgs whose name or slug starts with `q` (all when empty), for platform staff.
    pub async fn search_orgs(&self, q: String, limit: u32, after: Option<Uuid>) -> Result<Vec<OrgSummary>> {
        self.root
            .call(move |conn| {
                let after = after.map(|a| a.to_string()).unwrap_or_default();
                let prefix = format!("{}%", crate::storage::db::like_literal(&q));
                conn.query_all(
                    "SELECT o.id, o.name, o.slug, o.created_at, o.suspended_at IS NOT NULL,
                            (SELECT count(*) FROM tenant_memberships m WHERE m.org_id = o.id)
                     FROM organizations o
                     WHERE (o.name LIKE ?1 ESCAPE '\\' OR o.slug LIKE ?1 ESCAPE '\\') AND o.id > ?2
                     ORDER BY o.id LIMIT ?3",
                    params![prefix, after, limit],
                    |r| {
                        Ok(OrgSummary {
                            org: org_of(r, 0)?,
                            suspended: r.get(4)?,
                            members: r.get(5)?,
                        })
                    },
                )
            })
            .await
    }

    /// Org counts for platform stats: (orgs, suspended, memberships).
    pub async fn counts(&self) -> Result<(i64, i64, i64)> {
        self.root
            .call(|conn| {
                conn.query_one(
                    "SELECT (SELECT count(*) FROM organizations),
                            (SELECT count(*) FROM organizations WHERE suspended_at IS NOT NULL),
                            (SELECT count(*) FROM tenant_memberships)",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .await
    }

    /// Whether an org exists (for staff and system flows that name one).
    pub async fn org_exists(&self, org: Uuid) -> Result<bool> {
        self.root
            .call(move |conn| conn.exists("SELECT 1 FROM organizations WHERE id = ?1", params![org]))
            .await
    }

    /// Whether a slug is taken by any org (slugs are global).
    pub async fn slug_taken(&self, slug: String) -> Result<bool> {
        self.root
            .call(move |conn| conn.exists("SELECT 1 FROM organizations WHERE slug = ?1", params![slug]))
            .await
    }
}

/// The org in columns `at..at + 4` (id, name, slug, created_at).
fn org_of(r: &Row<'_>, at: usize) -> Result<Org> {
    Ok(Org {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        slug: r.get(at + 2)?,
        created_at: r.get(at + 3)?,
    })
}

fn role_at(r: &Row<'_>, at: usize) -> Result<RoleName> {
    Ok(RoleName(r.get(at)?))
}

fn membership_of(conn: &Sql<'_>, catalog: &Catalog, org: Uuid, user: Uuid) -> Result<Option<Membership>> {
    let row: Option<(String, bool, Option<String>)> = conn.query_opt(
        "SELECT m.role, o.suspended_at IS NOT NULL, r.permissions FROM tenant_memberships m
         JOIN organizations o ON o.id = m.org_id
         LEFT JOIN tenant_roles r ON r.org_id = m.org_id AND r.key = m.role
         WHERE m.org_id = ?1 AND m.user_id = ?2",
        params![org, user],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some((role, suspended, custom)) = row else {
        return Ok(None);
    };
    let permissions = match (Role::parse(&role), custom) {
        (Some(preset), _) => catalog.preset(preset).clone(),
        (None, Some(stored)) => Permissions::from_json(&stored)?,
        // A role deleted under a member cannot happen (deletion of a role in use is
        // refused); should it, the member keeps no permission rather than a guess.
        (None, None) => Permissions::default(),
    };
    Ok(Some(Membership {
        role: RoleName(role),
        permissions,
        suspended,
    }))
}

fn suspended_org() -> Error {
    Error::Forbidden(
        "this organization is suspended; its data is kept, contact support to restore access".into(),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created_at: String,
}

/// An org as platform staff list it.
#[derive(Debug, Clone)]
pub struct OrgSummary {
    pub org: Org,
    pub suspended: bool,
    pub members: u32,
}

#[derive(Debug, Clone)]
pub struct OrgMembership {
    pub membership_id: Uuid,
    pub org: Org,
    pub role: RoleName,
}

/// A member as the bound org sees them.
#[derive(Debug, Clone)]
pub struct Member {
    pub membership_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: RoleName,
    pub joined_at: String,
}

/// Operations on the bound org's own rows; every function takes a bound connection.
pub mod bound {
    use super::*;

    /// Creates the org the connection is bound to.
    pub fn create_org(conn: &impl Handle, id: Uuid, name: &str, slug: &str) -> Result<()> {
        let now = now_rfc3339();
        Sql::from(conn)
            .execute(
                "INSERT INTO org (id, name, slug, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, name, slug, now],
            )
            .map_err(|e| slug_conflict(e, slug))?;
        Ok(())
    }

    /// Slugs are the only unique column an org write can collide on.
    pub(super) fn slug_conflict(e: Error, slug: &str) -> Error {
        if is_unique_violation(&e) {
            Error::Conflict(format!("the slug `{slug}` is taken"))
        } else {
            e
        }
    }

    pub fn get_org(conn: &impl Handle) -> Result<Option<Org>> {
        Sql::from(conn).query_opt("SELECT id, name, slug, created_at FROM org", params![], |r| {
            org_of(r, 0)
        })
    }

    /// Suspends or restores the bound org.
    pub fn set_suspended(conn: &impl Handle, suspended: bool) -> Result<()> {
        let now = now_rfc3339();
        Sql::from(conn).execute(
            "UPDATE org SET suspended_at = ?1, updated_at = ?2",
            params![suspended.then(|| now.clone()), now],
        )?;
        Ok(())
    }

    /// Whether the bound org is suspended.
    pub fn is_suspended(conn: &impl Handle) -> Result<bool> {
        Ok(Sql::from(conn)
            .query_opt("SELECT suspended_at IS NOT NULL FROM org", params![], |r| {
                r.get(0)
            })?
            .unwrap_or(false))
    }

    pub fn update_org(conn: &impl Handle, name: &str, slug: &str) -> Result<()> {
        Sql::from(conn)
            .execute(
                "UPDATE org SET name = ?1, slug = ?2, updated_at = ?3",
                params![name, slug, now_rfc3339()],
            )
            .map_err(|e| slug_conflict(e, slug))?;
        Ok(())
    }

    pub fn add_member(conn: &impl Handle, org: Uuid, user: Uuid, role: &RoleName) -> Result<()> {
        let now = now_rfc3339();
        Sql::from(conn)
            .execute(
                "INSERT INTO memberships (id, org_id, user_id, role, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![Uuid::now_v7(), org, user, role.as_str(), now],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict("already a member of this organization".into())
                } else {
                    e
                }
            })?;
        Ok(())
    }

    pub fn role_of(conn: &impl Handle, user: Uuid) -> Result<Option<RoleName>> {
        Sql::from(conn).query_opt(
            "SELECT role FROM memberships WHERE user_id = ?1",
            params![user],
            |r| role_at(r, 0),
        )
    }

    /// Changes a member's role. Writes through views report no changed rows, so the
    /// caller checks membership first ([`role_of`]).
    pub fn set_role(conn: &impl Handle, user: Uuid, role: &RoleName) -> Result<()> {
        Sql::from(conn).execute(
            "UPDATE memberships SET role = ?2, updated_at = ?3 WHERE user_id = ?1",
            params![user, role.as_str(), now_rfc3339()],
        )?;
        Ok(())
    }

    pub fn remove_member(conn: &impl Handle, user: Uuid) -> Result<()> {
        Sql::from(conn).execute("DELETE FROM memberships WHERE user_id = ?1", params![user])?;
        Ok(())
    }

    /// Members holding `role` (a preset's name or a custom role's key).
    pub fn count_role(conn: &impl Handle, role: &str) -> Result<u32> {
        Sql::from(conn).query_one(
            "SELECT count(*) FROM memberships WHERE role = ?1",
            params![role],
            |r| r.get(0),
        )
    }

    pub fn count_members(conn: &impl Handle) -> Result<u32> {
        Sql::from(conn).query_one("SELECT count(*) FROM memberships", params![], |r| r.get(0))
    }

    const MEMBER_SELECT: &str = "SELECT m.id, m.user_id, u.email, u.name, m.role, m.created_at
         FROM memberships m JOIN org_users u ON u.id = m.user_id";

    fn member_row(r: &Row<'_>) -> Result<Member> {
        Ok(Member {
            membership_id: r.get(0)?,
            user_id: r.get(1)?,
            email: r.get(2)?,
            name: r.get(3)?,
            role: role_at(r, 4)?,
            joined_at: r.get(5)?,
        })
    }

    /// Members in join order, after the membership `after`.
    pub fn members(conn: &impl Handle, limit: u32, after: Option<Uuid>) -> Result<Vec<Member>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let sql = format!("{MEMBER_SELECT} WHERE m.id > ?1 ORDER BY m.id LIMIT ?2");
        Sql::from(conn).query_all(&sql, params![after, limit], member_row)
    }

    /// One member's profile, if they belong to the bound org.
    pub fn member(conn: &impl Handle, user: Uuid) -> Result<Option<Member>> {
        let sql = format!("{MEMBER_SELECT} WHERE m.user_id = ?1");
        Sql::from(conn).query_opt(&sql, params![user], member_row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Owner.at_least(Role::Admin));
        assert!(Role::Admin.at_least(Role::Admin));
        assert!(!Role::Member.at_least(Role::Admin));
        assert!(Role::Viewer.at_least(Role::Viewer));
        for r in [Role::Owner, Role::Admin, Role::Member, Role::Viewer] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }
}
