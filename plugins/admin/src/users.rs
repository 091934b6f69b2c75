//! /api/admin/users: search, detail, disable/enable, staff, sessions, forced
//! password reset, impersonation, erasure.

use std::time::Duration;

use plinth_core::audit::AuditEntry;
use plinth_core::http::ClientInfo;
use plinth_core::http::pagination::Page;
use plinth_core::identity::auth::{StaffAuth, TokenType};
use plinth_core::identity::sessions::{self, reason};
use plinth_core::identity::{Identity, api::enqueue_password_reset, erasure, jwt::Actor, tokens, users};
use plinth_core::storage::sql::Sql;
use plinth_core::tenancy::RoleName;
use plinth_core::{Error, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::{Accepted, AcceptedResponse, AdminApi, AdminTag, NoContent, parse_time};

/// Impersonation tokens live this long and cannot be refreshed.
const IMPERSONATION_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Clone)]
pub(crate) struct UsersApi(pub AdminApi);

#[derive(Object)]
struct AdminUser {
    id: Uuid,
    email: String,
    name: String,
    email_verified: bool,
    is_platform_admin: bool,
    disabled: bool,
    created_at: OffsetDateTime,
}

impl AdminUser {
    fn new(u: users::User) -> Result<Self> {
        Ok(AdminUser {
            id: u.id,
            email: u.email,
            name: u.name,
            email_verified: u.email_verified,
            is_platform_admin: u.is_platform_admin,
            disabled: u.disabled,
            created_at: parse_time(&u.created_at)?,
        })
    }
}

#[derive(Object)]
struct AdminUserPage {
    items: Vec<AdminUser>,
    next_cursor: Option<String>,
}

#[derive(Object)]
struct UserMembership {
    org_id: Uuid,
    org_name: String,
    org_slug: String,
    role: RoleName,
}

#[derive(Object)]
struct UserSession {
    id: Uuid,
    created_at: OffsetDateTime,
    last_used_at: OffsetDateTime,
    ip: Option<String>,
    user_agent: Option<String>,
}

#[derive(Object)]
struct AdminUserDetail {
    user: AdminUser,
    memberships: Vec<UserMembership>,
    sessions: Vec<UserSession>,
}

#[derive(Object)]
struct ImpersonationToken {
    /// Acts as the user for a few minutes; cannot reach /api/admin or change the
    /// password, and every request is audited.
    access_token: String,
    token_type: TokenType,
    expires_in: u64,
    user: AdminUser,
}

impl UsersApi {
    async fn user(&self, id: Uuid) -> Result<users::User> {
        self.0
            .platform
            .db()
            .call(move |conn| users::get(conn, id))
            .await?
            .ok_or_else(|| Error::NotFound("no such user".into()))
    }

    /// Runs a staff change on one user: `change` in a transaction, with its audit
    /// entry, then the caches dropped.
    async fn change(
        &self,
        staff: Uuid,
        user: Uuid,
        action: &'static str,
        client: ClientInfo,
        change: impl FnOnce(&Sql<'_>) -> Result<serde_json::Value> + Send + 'static,
    ) -> Result<Json<AdminUser>> {
        self.user(user).await?;
        self.0
            .platform
            .db()
            .write(move |tx| {
                let details = change(tx)?;
                plinth_core::audit::record(
                    tx,
                    &AuditEntry::new(action)
                        .actor(staff)
                        .target("user", user)
                        .client(&client)
                        .details(details),
                )?;
                Ok(())
            })
            .await?;
        self.0.platform.identity().forget_user(user);
        Ok(Json(AdminUser::new(self.user(user).await?)?))
    }
}

#[OpenApi(tag = "AdminTag::Users")]
impl UsersApi {
    /// Search users
    ///
    /// By email or name prefix, filtered by verified, disabled and staff.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/admin/users", method = "get", operation_id = "adminListUsers")]
    async fn list(
        &self,
        _auth: StaffAuth,
        /// Email or name prefix.
        q: Query<Option<String>>,
        verified: Query<Option<bool>>,
        disabled: Query<Option<bool>>,
        staff: Query<Option<bool>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<AdminUserPage>> {
        let page = Page::parse(limit.0, cursor.0)?;
        let search = users::UserSearch {
            q: q.0,
            verified: verified.0,
            disabled: disabled.0,
            staff: staff.0,
        };
        let rows = self
            .0
            .platform
            .db()
            .call(move |conn| users::search(conn, &search, page.fetch(), page.after))
            .await?;
        let (rows, next_cursor) = page.finish(rows, |u| u.id);
        let items = rows.into_iter().map(AdminUser::new).collect::<Result<_>>()?;
        Ok(Json(AdminUserPage { items, next_cursor }))
    }

    /// A user, with memberships and live sessions
    #[oai(path = "/api/admin/users/:id", method = "get", operation_id = "adminGetUser")]
    async fn get(&self, _auth: StaffAuth, id: Path<Uuid>) -> Result<Json<AdminUserDetail>> {
        let user = self.user(id.0).await?;
        let memberships = self
            .0
            .platform
            .tenancy()
            .orgs_of_user(id.0, 500, None)
            .await?
            .into_iter()
            .map(|m| UserMembership {
                org_id: m.org.id,
                org_name: m.org.name,
                org_slug: m.org.slug,
                role: m.role,
            })
            .collect();
        let uid = id.0;
        let sessions = self
            .0
            .platform
            .db()
            .call(move |conn| sessions::list(conn, uid, 100, None))
            .await?
            .into_iter()
            .map(|s| {
                Ok(UserSession {
                    id: s.id,
                    created_at: parse_time(&s.created_at)?,
                    last_used_at: parse_time(&s.last_used_at)?,
                    ip: s.ip,
                    user_agent: s.user_agent,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Json(AdminUserDetail {
            user: AdminUser::new(user)?,
            memberships,
            sessions,
        }))
    }

    /// Disable a user
    ///
    /// Every session ends at once; logging in is refused until enabled again.
    #[oai(
        path = "/api/admin/users/:id/disable",
        method = "post",
        operation_id = "adminDisableUser"
    )]
    async fn disable(&self, auth: StaffAuth, client: ClientInfo, id: Path<Uuid>) -> Result<Json<AdminUser>> {
        let staff = auth.0.user_id;
        if id.0 == staff {
            return Err(Error::Conflict("you cannot disable your own account".into()));
        }
        self.change(staff, id.0, "user.disabled", client, move |tx| {
            Identity::disable_user(tx, id.0)?;
            Ok(json!({}))
        })
        .await
    }

    /// Enable a user
    #[oai(
        path = "/api/admin/users/:id/enable",
        method = "post",
        operation_id = "adminEnableUser"
    )]
    async fn enable(&self, auth: StaffAuth, client: ClientInfo, id: Path<Uuid>) -> Result<Json<AdminUser>> {
        let staff = auth.0.user_id;
        self.change(staff, id.0, "user.enabled", client, move |tx| {
            users::set_disabled(tx, id.0, false)?;
            Ok(json!({}))
        })
        .await
    }

    /// Grant platform staff
    #[oai(
        path = "/api/admin/users/:id/staff",
        method = "post",
        operation_id = "adminGrantStaff"
    )]
    async fn grant_staff(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<Json<AdminUser>> {
        let staff = auth.0.user_id;
        self.change(staff, id.0, "user.staff_granted", client, move |tx| {
            users::set_platform_admin(tx, id.0, true)?;
            Ok(json!({}))
        })
        .await
    }

    /// Revoke platform staff
    ///
    /// The platform always keeps at least one active staff member.
    #[oai(
        path = "/api/admin/users/:id/staff",
        method = "delete",
        operation_id = "adminRevokeStaff"
    )]
    async fn revoke_staff(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<Json<AdminUser>> {
        let staff = auth.0.user_id;
        self.change(staff, id.0, "user.staff_revoked", client, move |tx| {
            let target = users::get(tx, id.0)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            if target.is_platform_admin && !target.disabled && users::count_staff(tx)? <= 1 {
                return Err(Error::Conflict(
                    "the platform must keep at least one staff member".into(),
                ));
            }
            users::set_platform_admin(tx, id.0, false)?;
            Ok(json!({}))
        })
        .await
    }

    /// Revoke all of a user's sessions
    #[oai(
        path = "/api/admin/users/:id/revoke-sessions",
        method = "post",
        operation_id = "adminRevokeUserSessions"
    )]
    async fn revoke_sessions(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<Json<AdminUser>> {
        let staff = auth.0.user_id;
        self.change(staff, id.0, "user.sessions_revoked", client, move |tx| {
            let revoked = sessions::revoke_all(tx, id.0, None, reason::REVOKED_BY_USER)?;
            Ok(json!({ "sessions_revoked": revoked.len() }))
        })
        .await
    }

    /// Force a password reset
    ///
    /// The current password stops working, every session ends, and a reset link is
    /// emailed to the user.
    #[oai(
        path = "/api/admin/users/:id/force-password-reset",
        method = "post",
        operation_id = "adminForcePasswordReset"
    )]
    async fn force_reset(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<AcceptedResponse> {
        let staff = auth.0.user_id;
        let user = self.user(id.0).await?;
        let jobs = self.0.platform.jobs().clone();
        let ip = client.ip.to_string();
        self.change(staff, id.0, "user.password_reset_forced", client, move |tx| {
            // A value no password hashes to: the old password stops at once.
            users::replace_password(tx, id.0, &format!("!reset-required!{}", tokens::generate()?))?;
            let revoked = sessions::revoke_all(tx, id.0, None, reason::PASSWORD_RESET)?;
            enqueue_password_reset(tx, &jobs, &user.email, &ip)?;
            Ok(json!({ "sessions_revoked": revoked.len() }))
        })
        .await?;
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "the password was invalidated and a reset link is on its way".into(),
        })))
    }

    /// Impersonate a user
    ///
    /// A 10-minute access token acting as the user, naming you in its `act` claim.
    /// It cannot reach /api/admin or change the password; every request is audited.
    #[oai(
        path = "/api/admin/users/:id/impersonate",
        method = "post",
        operation_id = "adminImpersonateUser"
    )]
    async fn impersonate(
        &self,
        auth: StaffAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<Json<ImpersonationToken>> {
        let staff = auth.0.user_id;
        let user = self.user(id.0).await?;
        if user.disabled {
            return Err(Error::Conflict("the user is disabled".into()));
        }
        let target = user.id;
        let session = self
            .0
            .platform
            .db()
            .write(move |tx| {
                let session = sessions::create_impersonation(tx, target, staff, IMPERSONATION_TTL, &client)?;
                plinth_core::audit::record(
                    tx,
                    &AuditEntry::new("user.impersonated")
                        .actor(staff)
                        .target("user", target)
                        .client(&client)
                        .details(
                            json!({ "session_id": session, "minutes": IMPERSONATION_TTL.as_secs() / 60 }),
                        ),
                )?;
                Ok(session)
            })
            .await?;
        let (access_token, expires_in) = self.0.platform.identity().jwt().issue(
            target,
            session,
            Some(Actor {
                sub: staff.to_string(),
            }),
            Some(IMPERSONATION_TTL),
        )?;
        Ok(Json(ImpersonationToken {
            access_token,
            token_type: TokenType::Bearer,
            expires_in,
            user: AdminUser::new(user)?,
        }))
    }

    /// Erase a user (GDPR)
    ///
    /// Deletes the account and its personal data; audit entries stay, naming only
    /// the account's id. Refused while the user is an org's only owner.
    #[oai(
        path = "/api/admin/users/:id",
        method = "delete",
        operation_id = "adminEraseUser"
    )]
    async fn erase(&self, auth: StaffAuth, client: ClientInfo, id: Path<Uuid>) -> Result<NoContent> {
        let staff = auth.0.user_id;
        if id.0 == staff {
            return Err(Error::Conflict("you cannot erase your own account".into()));
        }
        let target = self.user(id.0).await?;
        if target.is_platform_admin {
            let db = self.0.platform.db().clone();
            if db.call(|conn| users::count_staff(conn)).await? <= 1 {
                return Err(Error::Conflict(
                    "the platform must keep at least one staff member".into(),
                ));
            }
        }
        erasure::erase_user(&self.0.platform, id.0, staff, &client).await?;
        Ok(NoContent::Done)
    }
}
