//! Login sessions: creation, refresh-token rotation with reuse detection,
//! revocation, listing, and the status the per-request check reads (cached).
//!
//! A session ends when revoked, when unused (not refreshed) for the idle timeout, or
//! at its absolute lifetime, whichever comes first. Each refresh exchanges the
//! presented token for a new one; presenting an exchanged token again means someone
//! holds a copy, so the whole session is revoked.

use serde::Serialize;
use uuid::Uuid;

use crate::config::{Config, Secret};
use crate::error::{Error, Result};
use crate::http::ClientInfo;
use crate::identity::tokens;
use crate::params;
use crate::storage::db::{now_millis, now_rfc3339};
use crate::storage::sql::{Handle, Sql};

/// What the per-request check needs to know about a session and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub user_id: Uuid,
    pub expires_at: i64,
    pub idle_expires_at: i64,
    pub revoked: bool,
    pub user_disabled: bool,
    pub is_platform_admin: bool,
    pub email_verified: bool,
    /// The staff member behind an impersonation session.
    pub impersonator: Option<Uuid>,
}

impl SessionStatus {
    pub fn is_live(&self, now_ms: i64) -> bool {
        !self.revoked && !self.user_disabled && self.expires_at > now_ms && self.idle_expires_at > now_ms
    }
}

/// Why a session ended, as stored and audited.
pub mod reason {
    pub const LOGOUT: &str = "logout";
    pub const REVOKED_BY_USER: &str = "revoked_by_user";
    pub const PASSWORD_CHANGED: &str = "password_changed";
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const REFRESH_REUSE: &str = "refresh_token_reuse";
    pub const ACCOUNT_DISABLED: &str = "account_disabled";
}

fn idle_deadline(config: &Config) -> i64 {
    now_millis() + config.session_idle_timeout.as_millis() as i64
}

/// Opens a session; returns its id and its first refresh token.
pub fn create(
    conn: &impl Handle,
    config: &Config,
    user: Uuid,
    client: &ClientInfo,
) -> Result<(Uuid, String)> {
    let conn = &Sql::from(conn);
    let id = Uuid::now_v7();
    let now = now_rfc3339();
    conn.execute("INSERT INTO sessions (id, user_id, created_at, last_used_at, idle_expires_at, expires_at, ip, user_agent)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)", params![
        id.to_string(),
        user.to_string(),
        now,
        idle_deadline(config),
        now_millis() + config.session_lifetime.as_millis() as i64,
        client.ip.to_string(),
        client.user_agent
    ])?;
    let refresh = new_refresh_token(conn, &config.secret_key, id)?;
    Ok((id, refresh))
}

/// Opens a short impersonation session of `user` for staff member `staff`: no
/// refresh token, no idle extension; it ends at `ttl`.
pub fn create_impersonation(
    conn: &impl Handle,
    user: Uuid,
    staff: Uuid,
    ttl: std::time::Duration,
    client: &ClientInfo,
) -> Result<Uuid> {
    let conn = &Sql::from(conn);
    let id = Uuid::now_v7();
    let now = now_rfc3339();
    let end = now_millis() + ttl.as_millis() as i64;
    conn.execute("INSERT INTO sessions (id, user_id, created_at, last_used_at, idle_expires_at, expires_at, ip, user_agent,
                               impersonator_id)
         VALUES (?1, ?2, ?3, ?3, ?4, ?4, ?5, ?6, ?7)", params![
        id.to_string(),
        user.to_string(),
        now,
        end,
        client.ip.to_string(),
        client.user_agent,
        staff.to_string()
    ])?;
    Ok(id)
}

fn new_refresh_token(conn: &Sql<'_>, key: &Secret, session: Uuid) -> Result<String> {
    let token = tokens::generate()?;
    conn.execute(
        "INSERT INTO refresh_tokens (hash, session_id, created_at) VALUES (?1, ?2, ?3)",
        params![tokens::hash(key, &token), session.to_string(), now_rfc3339()],
    )?;
    Ok(token)
}

pub enum Rotation {
    /// The new refresh token, for this session and user.
    Rotated {
        session: Uuid,
        user: Uuid,
        refresh: String,
    },
    /// The token was already exchanged: the session is now revoked.
    Reused { session: Uuid, user: Uuid },
    /// Unknown token, or its session is over.
    Invalid,
}

/// Exchanges a refresh token (call inside a write transaction).
pub fn rotate(conn: &impl Handle, config: &Config, token: &str, client: &ClientInfo) -> Result<Rotation> {
    let conn = &Sql::from(conn);
    let hash = tokens::hash(&config.secret_key, token);
    let row = conn.query_opt(
        "SELECT rt.session_id, rt.rotated_at IS NOT NULL, s.user_id
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
             WHERE rt.hash = ?1",
        params![hash],
        |r| Ok((r.get::<String>(0)?, r.get::<bool>(1)?, r.get::<String>(2)?)),
    )?;
    let Some((session, rotated, user)) = row else {
        return Ok(Rotation::Invalid);
    };
    let session = Uuid::parse_str(&session).map_err(Error::internal)?;
    let user = Uuid::parse_str(&user).map_err(Error::internal)?;
    if rotated {
        revoke(conn, session, reason::REFRESH_REUSE)?;
        return Ok(Rotation::Reused { session, user });
    }
    if !status(conn, session)?.is_some_and(|s| s.is_live(now_millis())) {
        return Ok(Rotation::Invalid);
    }
    let now = now_rfc3339();
    conn.execute(
        "UPDATE refresh_tokens SET rotated_at = ?2 WHERE hash = ?1",
        params![hash, now],
    )?;
    conn.execute(
        "UPDATE sessions SET last_used_at = ?2, idle_expires_at = ?3, ip = ?4, user_agent = ?5 WHERE id = ?1",
        params![
            session.to_string(),
            now,
            idle_deadline(config),
            client.ip.to_string(),
            client.user_agent
        ],
    )?;
    let refresh = new_refresh_token(conn, &config.secret_key, session)?;
    Ok(Rotation::Rotated {
        session,
        user,
        refresh,
    })
}

/// Revokes one session; false when it was already revoked or does not exist.
pub fn revoke(conn: &impl Handle, session: Uuid, why: &str) -> Result<bool> {
    let conn = &Sql::from(conn);
    let n = conn.execute(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        params![session.to_string(), now_rfc3339(), why],
    )?;
    Ok(n == 1)
}

/// Revokes every live session of `user` except `keep`; returns the revoked ids.
pub fn revoke_all(conn: &impl Handle, user: Uuid, keep: Option<Uuid>, why: &str) -> Result<Vec<Uuid>> {
    let conn = &Sql::from(conn);
    let keep = keep.map(|k| k.to_string()).unwrap_or_default();
    conn.query_all(
        "UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4
         WHERE user_id = ?1 AND id != ?2 AND revoked_at IS NULL RETURNING id",
        params![user.to_string(), keep, now_rfc3339(), why],
        |r| r.get(0),
    )
}

pub fn status(conn: &impl Handle, session: Uuid) -> Result<Option<SessionStatus>> {
    let conn = &Sql::from(conn);
    let row = conn.query_opt("SELECT s.user_id, s.expires_at, s.idle_expires_at, s.revoked_at IS NOT NULL,
                    u.disabled_at IS NOT NULL, u.is_platform_admin, u.email_verified_at IS NOT NULL, s.impersonator_id
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1", params![session.to_string()], |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<Option<String>>(7)?,
                SessionStatus {
                    user_id: Uuid::nil(),
                    expires_at: r.get(1)?,
                    idle_expires_at: r.get(2)?,
                    revoked: r.get(3)?,
                    user_disabled: r.get(4)?,
                    is_platform_admin: r.get(5)?,
                    email_verified: r.get(6)?,
                    impersonator: None,
                },
            ))
        })?;
    row.map(|(user, impersonator, status)| {
        Ok(SessionStatus {
            user_id: Uuid::parse_str(&user).map_err(Error::internal)?,
            impersonator: impersonator.and_then(|i| Uuid::parse_str(&i).ok()),
            ..status
        })
    })
    .transpose()
}

/// One live session as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub id: Uuid,
    pub created_at: String,
    pub last_used_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub expires_at: i64,
}

/// Live sessions of `user`, newest first, after `cursor` (a session id).
pub fn list(conn: &impl Handle, user: Uuid, limit: u32, cursor: Option<Uuid>) -> Result<Vec<SessionRow>> {
    let conn = &Sql::from(conn);
    let now = now_millis();
    let cursor = cursor
        .map(|c| c.to_string())
        .unwrap_or_else(|| crate::http::pagination::AFTER_EVERY_ID.into());
    conn.query_all(
        "SELECT id, created_at, last_used_at, ip, user_agent,
                CASE WHEN expires_at < idle_expires_at THEN expires_at ELSE idle_expires_at END
         FROM sessions
         WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 AND idle_expires_at > ?2 AND id < ?3
         ORDER BY id DESC LIMIT ?4",
        params![user.to_string(), now, cursor, limit],
        |r| {
            Ok(SessionRow {
                id: r.get(0)?,
                created_at: r.get(1)?,
                last_used_at: r.get(2)?,
                ip: r.get(3)?,
                user_agent: r.get(4)?,
                expires_at: r.get(5)?,
            })
        },
    )
}
