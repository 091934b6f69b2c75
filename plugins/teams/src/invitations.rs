//! Invitations: admins invite an email with a role; the invitee previews the
//! invitation without logging in and accepts it logged in with that (verified)
//! email.
//!
//! A token is `<org id>.<64 hex>`: the org part lets a public request find the org
//! to bind to without any cross-tenant lookup; the secret part is 256 random bits.
//! Only the keyed hash of the whole token is stored.

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::http::pagination::Page;
use plinth_core::identity::auth::BearerAuth;
use plinth_core::identity::{tokens, users};
use plinth_core::params;
use plinth_core::runtime::events::Event;
use plinth_core::runtime::mail::render;
use plinth_core::storage::db::{now_millis, now_rfc3339};
use plinth_core::storage::sql::{Row as SqlRow, Sql};
use plinth_core::tenancy::permissions::require_covers;
use plinth_core::tenancy::{Role, RoleName, bound, roles};
use plinth_core::{Error, Platform, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::InviteMembers;
use crate::api::{NoContent, Person, TeamsApi, TeamsTag, millis_to_time, parse_time, parse_uuid};

const LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Clone)]
pub(crate) struct InvitationsApi(pub TeamsApi);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
enum InvitationStatus {
    Pending,
    Expired,
}

/// A pending (or expired, not yet replaced) invitation.
#[derive(Object)]
struct InvitationView {
    id: Uuid,
    email: String,
    role: RoleName,
    invited_by: Option<Person>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    status: InvitationStatus,
}

#[derive(Object)]
struct InvitationPage {
    items: Vec<InvitationView>,
    next_cursor: Option<String>,
}

#[derive(Object)]
#[oai(example)]
struct InviteRequest {
    email: String,
    /// A preset or one of the org's custom roles; the inviter must hold every
    /// permission it carries.
    role: RoleName,
}

impl Example for InviteRequest {
    fn example() -> Self {
        InviteRequest {
            email: "teammate@example.com".into(),
            role: Role::Member.into(),
        }
    }
}

/// What an invitee sees before accepting.
#[derive(Object)]
struct InvitationPreview {
    org_name: String,
    org_slug: String,
    inviter_name: Option<String>,
    email: String,
    role: RoleName,
    expires_at: OffsetDateTime,
}

/// The membership an accepted invitation created.
#[derive(Object)]
struct AcceptedInvitation {
    org_id: Uuid,
    org_name: String,
    role: RoleName,
}

#[derive(ApiResponse)]
enum CreatedInvitation {
    /// Invited; the email is on its way.
    #[oai(status = 201)]
    Invitation(Json<InvitationView>),
}

struct Row {
    id: Uuid,
    email: String,
    role: RoleName,
    invited_by: Option<Uuid>,
    created_at: String,
    expires_at: i64,
}

const COLUMNS: &str = "id, email, role, invited_by, created_at, expires_at";
/// Neither accepted nor revoked (it may have expired).
const OPEN: &str = "accepted_at IS NULL AND revoked_at IS NULL";

fn row(r: &SqlRow<'_>) -> Result<(String, String, String, Option<String>, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn to_row(raw: (String, String, String, Option<String>, String, i64)) -> Result<Row> {
    let (id, email, role, invited_by, created_at, expires_at) = raw;
    Ok(Row {
        id: parse_uuid(&id)?,
        email,
        role: RoleName(role),
        invited_by: invited_by.map(|i| parse_uuid(&i)).transpose()?,
        created_at,
        expires_at,
    })
}

fn open_by_id(conn: &Sql<'_>, id: Uuid) -> Result<Option<Row>> {
    let sql = format!("SELECT {COLUMNS} FROM invitations WHERE id = ?1 AND {OPEN}");
    conn.query_opt(&sql, params![id.to_string()], row)?
        .map(to_row)
        .transpose()
}

fn open_by_hash(conn: &Sql<'_>, hash: &str) -> Result<Option<Row>> {
    let sql =
        format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = ?1 AND {OPEN} AND expires_at > ?2");
    conn.query_opt(&sql, params![hash, now_millis()], row)?
        .map(to_row)
        .transpose()
}

fn person(conn: &Sql<'_>, id: Option<Uuid>) -> Result<Option<Person>> {
    let Some(id) = id else { return Ok(None) };
    let name: Option<String> = conn.query_opt(
        "SELECT name FROM org_users WHERE id = ?1",
        params![id.to_string()],
        |r| r.get(0),
    )?;
    Ok(name.map(|name| Person { id, name }))
}

fn view(conn: &Sql<'_>, row: Row) -> Result<InvitationView> {
    Ok(InvitationView {
        id: row.id,
        invited_by: person(conn, row.invited_by)?,
        email: row.email,
        role: row.role,
        created_at: parse_time(&row.created_at)?,
        expires_at: millis_to_time(row.expires_at)?,
        status: if row.expires_at > now_millis() {
            InvitationStatus::Pending
        } else {
            InvitationStatus::Expired
        },
    })
}

/// Splits a token into its org and checks its shape; `None` for anything malformed.
fn token_org(token: &str) -> Option<Uuid> {
    let (org, secret) = token.split_once('.')?;
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(org).ok()
}

/// The name invitation emails give the inviter: the member's, or the org's own
/// when an API key invites.
fn inviter_name(tx: &Sql<'_>, user: Option<Uuid>) -> Result<String> {
    match person(tx, user)? {
        Some(p) => Ok(p.name),
        None => Ok(bound::get_org(tx)?.map(|o| o.name).unwrap_or_default()),
    }
}

fn not_found() -> Error {
    Error::NotFound("no such invitation, or it expired or was used".into())
}

/// Issues a fresh token for invitation `id` and emails it (in the caller's transaction).
fn send(
    tx: &Sql<'_>,
    platform: &Platform,
    org: Uuid,
    id: Uuid,
    email: &str,
    role: &RoleName,
    inviter: &str,
) -> Result<()> {
    let token = format!("{}.{}", org.simple(), tokens::generate()?);
    tx.execute(
        "UPDATE invitations SET token_hash = ?2, expires_at = ?3 WHERE id = ?1",
        params![
            id.to_string(),
            tokens::hash(&platform.config().secret_key, &token),
            now_millis() + LIFETIME_MS
        ],
    )?;
    let org_name = bound::get_org(tx)?.map(|o| o.name).unwrap_or_default();
    let link = format!("{}/invitations/{token}", platform.config().app_url);
    let mail = render(
        email,
        "{{inviter}} invited you to join {{org}}",
        include_str!("../templates/invitation.txt"),
        include_str!("../templates/invitation.html"),
        &[
            ("inviter", inviter),
            ("org", &org_name),
            ("app", "Plinth"),
            ("role", role.as_str()),
            ("link", &link),
        ],
    );
    platform.mailer().send(tx, platform.jobs(), &mail)?;
    Ok(())
}

#[OpenApi(tag = "TeamsTag::Invitations")]
impl InvitationsApi {
    /// List invitations
    ///
    /// Invitations neither accepted nor revoked, newest first; expired ones are
    /// marked and can be re-sent.
    #[oai(
        path = "/api/orgs/:org_id/invitations",
        method = "get",
        operation_id = "listInvitations"
    )]
    async fn list(
        &self,
        access: InviteMembers,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<InvitationPage>> {
        let tenant = access.0;
        let page = Page::parse(limit.0, cursor.0)?;
        let items = tenant
            .db()
            .call(move |conn| {
                let after = page
                    .after
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| plinth_core::http::pagination::AFTER_EVERY_ID.into());
                let sql = format!(
                    "SELECT {COLUMNS} FROM invitations WHERE {OPEN} AND id < ?1 ORDER BY id DESC LIMIT ?2"
                );
                let rows = conn.query_all(&sql, params![after, page.fetch()], row)?;
                rows.into_iter()
                    .map(|r| view(conn, to_row(r)?))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        let (items, next_cursor) = page.finish(items, |i| i.id);
        Ok(Json(InvitationPage { items, next_cursor }))
    }

    /// Invite someone
    ///
    /// Emails `{APP_URL}/invitations/{token}` (valid 7 days). The inviter must hold
    /// every permission of the role (owner only by owners). Refused with 409 for a member or an already pending
    /// invitation, and with 402 when the plan has no seat left.
    #[oai(
        path = "/api/orgs/:org_id/invitations",
        method = "post",
        operation_id = "createInvitation"
    )]
    async fn create(
        &self,
        access: InviteMembers,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<InviteRequest>,
    ) -> Result<CreatedInvitation> {
        let tenant = access.0;
        let email = users::normalize_email(&body.0.email);
        let role = body.0.role;
        if !users::valid_email(&email) {
            return Err(Error::invalid("email", "is not a valid email address"));
        }
        let (org, user, actor) = (tenant.org_id, tenant.user_id(), tenant.actor_id());
        let held = tenant.permissions.clone();
        let platform = self.0.platform.clone();
        let invitation = tenant
            .db()
            .write(move |tx| {
                let granted = roles::assignable(tx, platform.tenancy().catalog(), &role)?;
                require_covers(&held, &granted, &format!("the role `{role}`"))?;
                let is_member = tx.exists("SELECT 1 FROM org_users WHERE email = ?1", params![email])?;
                if is_member {
                    return Err(Error::Conflict(format!("{email} is already a member")));
                }
                let pending = tx.exists(&format!(
                        "SELECT 1 FROM invitations WHERE email = ?1 AND {OPEN} AND expires_at > ?2"
                    ), params![email, now_millis()])?;
                if pending {
                    return Err(Error::Conflict(format!(
                        "{email} already has a pending invitation; re-send it instead"
                    )));
                }
                if let Some(limit) = platform.tenancy().entitlements().seat_limit(tx)? {
                    let open: u32 = tx.query_one(&format!("SELECT count(*) FROM invitations WHERE {OPEN} AND expires_at > ?1"), params![now_millis()], |r| r.get(0))?;
                    if bound::count_members(tx)? + open >= limit {
                        return Err(Error::PaymentRequired(format!(
                            "all {limit} seats of the plan are taken (members and pending invitations); upgrade the plan or free a seat"
                        )));
                    }
                }
                // An expired invitation to the same address is replaced.
                tx.execute(&format!("UPDATE invitations SET revoked_at = ?2 WHERE email = ?1 AND {OPEN}"), params![email, now_rfc3339()])?;
                let id = Uuid::now_v7();
                let placeholder = tokens::generate()?;
                tx.execute("INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", params![
                    id.to_string(),
                    org.to_string(),
                    email,
                    role.as_str(),
                    placeholder,
                    user.map(|u| u.to_string()),
                    now_rfc3339(),
                    now_millis() + LIFETIME_MS
                ])?;
                let inviter = inviter_name(tx, user)?;
                send(tx, &platform, org, id, &email, &role, &inviter)?;
                record(
                    tx,
                    &AuditEntry::new("invitation.created")
                        .actor(actor)
                        .org(org)
                        .target("invitation", id)
                        .client(&client)
                        .details(json!({ "role": role.as_str() }))
                        .personal(json!({ "email": email })),
                )?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "invitation.created",
                        json!({ "summary": format!("invited {email} as {}", role.as_str()), "invitation_id": id }),
                    )
                    .org(org)
                    .actor(user),
                )?;
                let row = open_by_id(tx, id)?.ok_or_else(not_found)?;
                view(tx, row)
            })
            .await?;
        Ok(CreatedInvitation::Invitation(Json(invitation)))
    }

    /// Revoke an invitation
    #[oai(
        path = "/api/orgs/:org_id/invitations/:id",
        method = "delete",
        operation_id = "revokeInvitation"
    )]
    async fn revoke(
        &self,
        access: InviteMembers,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        id: Path<Uuid>,
    ) -> Result<NoContent> {
        let tenant = access.0;
        let (org, user, actor, id) = (tenant.org_id, tenant.user_id(), tenant.actor_id(), id.0);
        let platform = self.0.platform.clone();
        tenant
            .db()
            .write(move |tx| {
                let row = open_by_id(tx, id)?.ok_or_else(not_found)?;
                tx.execute("UPDATE invitations SET revoked_at = ?2 WHERE id = ?1", params![id.to_string(), now_rfc3339()])?;
                record(
                    tx,
                    &AuditEntry::new("invitation.revoked")
                        .actor(actor)
                        .org(org)
                        .target("invitation", id)
                        .client(&client)
                        .personal(json!({ "email": row.email })),
                )?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "invitation.revoked",
                        json!({ "summary": format!("revoked the invitation of {}", row.email), "invitation_id": id }),
                    )
                    .org(org)
                    .actor(user),
                )
            })
            .await?;
        Ok(NoContent::Done)
    }

    /// Re-send an invitation
    ///
    /// Issues a new link (the old one stops working) valid for 7 more days.
    #[oai(
        path = "/api/orgs/:org_id/invitations/:id/resend",
        method = "post",
        operation_id = "resendInvitation"
    )]
    async fn resend(
        &self,
        access: InviteMembers,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        id: Path<Uuid>,
    ) -> Result<Json<InvitationView>> {
        let tenant = access.0;
        let (org, user, actor, id) = (tenant.org_id, tenant.user_id(), tenant.actor_id(), id.0);
        let platform = self.0.platform.clone();
        let invitation = tenant
            .db()
            .write(move |tx| {
                let row = open_by_id(tx, id)?.ok_or_else(not_found)?;
                let inviter = inviter_name(tx, user)?;
                send(tx, &platform, org, id, &row.email, &row.role, &inviter)?;
                record(
                    tx,
                    &AuditEntry::new("invitation.resent")
                        .actor(actor)
                        .org(org)
                        .target("invitation", id)
                        .client(&client)
                        .personal(json!({ "email": row.email })),
                )?;
                let row = open_by_id(tx, id)?.ok_or_else(not_found)?;
                view(tx, row)
            })
            .await?;
        Ok(Json(invitation))
    }

    /// Preview an invitation
    ///
    /// No login needed: shows the organization, the inviter and the role.
    #[oai(
        path = "/api/invitations/:token",
        method = "get",
        operation_id = "getInvitation"
    )]
    async fn preview(&self, client: ClientInfo, token: Path<String>) -> Result<Json<InvitationPreview>> {
        self.0
            .platform
            .identity()
            .limit("invitation", client.ip, None)
            .await?;
        let org = token_org(&token.0).ok_or_else(not_found)?;
        let hash = tokens::hash(&self.0.platform.config().secret_key, &token.0);
        let preview = self
            .0
            .platform
            .tenancy()
            .bind(org)
            .call(move |conn| {
                let row = open_by_hash(conn, &hash)?.ok_or_else(not_found)?;
                let org = bound::get_org(conn)?.ok_or_else(not_found)?;
                Ok(InvitationPreview {
                    org_name: org.name,
                    org_slug: org.slug,
                    inviter_name: person(conn, row.invited_by)?.map(|p| p.name),
                    email: row.email,
                    role: row.role,
                    expires_at: millis_to_time(row.expires_at)?,
                })
            })
            .await?;
        Ok(Json(preview))
    }

    /// Accept an invitation
    ///
    /// The caller must be logged in with the invited email address, verified.
    #[oai(
        path = "/api/invitations/:token/accept",
        method = "post",
        operation_id = "acceptInvitation"
    )]
    async fn accept(
        &self,
        auth: BearerAuth,
        client: ClientInfo,
        token: Path<String>,
    ) -> Result<Json<AcceptedInvitation>> {
        self.0
            .platform
            .identity()
            .limit("invitation", client.ip, None)
            .await?;
        let org = token_org(&token.0).ok_or_else(not_found)?;
        let hash = tokens::hash(&self.0.platform.config().secret_key, &token.0);
        let user_id = auth.0.user_id;
        let user = self
            .0
            .platform
            .db()
            .call(move |conn| users::get(conn, user_id))
            .await?
            .ok_or_else(|| Error::Unauthorized("the account no longer exists".into()))?;
        let platform = self.0.platform.clone();
        let accepted = self
            .0
            .platform
            .tenancy()
            .bind(org)
            .write(move |tx| {
                let row = open_by_hash(tx, &hash)?.ok_or_else(not_found)?;
                if row.email != user.email {
                    return Err(Error::Forbidden(
                        "this invitation was sent to another email address".into(),
                    ));
                }
                if !user.email_verified {
                    return Err(Error::Forbidden(
                        "verify your email address before accepting".into(),
                    ));
                }
                if bound::role_of(tx, user.id)?.is_some() {
                    return Err(Error::Conflict(
                        "you are already a member of this organization".into(),
                    ));
                }
                tx.execute(
                    "UPDATE invitations SET accepted_at = ?2, accepted_by = ?3 WHERE id = ?1",
                    params![row.id.to_string(), now_rfc3339(), user.id.to_string()],
                )?;
                bound::add_member(tx, org, user.id, &row.role)?;
                record(
                    tx,
                    &AuditEntry::new("invitation.accepted")
                        .actor(user.id)
                        .org(org)
                        .target("invitation", row.id)
                        .client(&client)
                        .details(json!({ "role": row.role.as_str() }))
                        .personal(json!({ "email": user.email })),
                )?;
                platform.events().publish(
                    tx,
                    &Event::new(
                        "member.added",
                        json!({
                            "summary": format!("{} joined as {}", user.name, row.role.as_str()),
                            "user_id": user.id,
                            "role": row.role.as_str(),
                            "invitation_id": row.id,
                        }),
                    )
                    .org(org)
                    .actor(user.id),
                )?;
                let org_name = bound::get_org(tx)?.map(|o| o.name).unwrap_or_default();
                Ok(AcceptedInvitation {
                    org_id: org,
                    org_name,
                    role: row.role,
                })
            })
            .await?;
        self.0.platform.tenancy().forget_org(org);
        Ok(Json(accepted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_org_and_carry_a_long_secret() {
        let org = Uuid::now_v7();
        let token = format!("{}.{}", org.simple(), "ab".repeat(32));
        assert_eq!(token_org(&token), Some(org));
        assert_eq!(token_org("nonsense"), None);
        assert_eq!(token_org(&format!("{}.{}", org.simple(), "ab")), None);
        assert_eq!(token_org(&format!("not-a-uuid.{}", "ab".repeat(32))), None);
    }
}
