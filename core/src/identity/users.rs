//! The users table: creation and lookup.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::params;
use crate::storage::db::{like_literal, now_rfc3339};
use crate::storage::sql::{Handle, Sql};

/// Emails are compared trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A deliberately small check: one `@`, something on both sides, a dot in the domain,
/// no spaces. Deliverability is proven by the verification email, not by a regex.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub is_platform_admin: bool,
    pub email_verified: bool,
}

/// Inserts a user; a taken email is a 409.
pub fn create(conn: &impl Handle, user: &NewUser<'_>) -> Result<Uuid> {
    let conn = &Sql::from(conn);
    let email = normalize_email(user.email);
    if !valid_email(&email) {
        return Err(Error::invalid("email", "is not a valid email address"));
    }
    let id = Uuid::now_v7();
    let now = now_rfc3339();
    let verified = user.email_verified.then(|| now.clone());
    let inserted = conn.execute("INSERT INTO users (id, email, name, password_hash, is_platform_admin, email_verified_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (email) DO NOTHING", params![id.to_string(), email, user.name.trim(), user.password_hash, user.is_platform_admin, verified, now])?;
    if inserted == 0 {
        return Err(Error::Conflict(
            "an account with this email already exists".into(),
        ));
    }
    Ok(id)
}

pub fn find_id_by_email(conn: &impl Handle, email: &str) -> Result<Option<Uuid>> {
    let conn = &Sql::from(conn);
    conn.query_opt(
        "SELECT id FROM users WHERE email = ?1",
        params![normalize_email(email)],
        |r| r.get(0),
    )
}

pub fn set_platform_admin(conn: &impl Handle, id: Uuid, admin: bool) -> Result<()> {
    let conn = &Sql::from(conn);
    conn.execute(
        "UPDATE users SET is_platform_admin = ?2, updated_at = ?3 WHERE id = ?1",
        params![id.to_string(), admin, now_rfc3339()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Owner@Acme.TEST "), "owner@acme.test");
        assert!(valid_email("a@b.co"));
        for bad in ["", "a", "a@b", "@b.co", "a@.co", "a b@c.co", "a@b.co."] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}

/// A user as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub email_verified: bool,
    pub is_platform_admin: bool,
    pub disabled: bool,
    pub created_at: String,
}

pub fn get(conn: &impl Handle, id: Uuid) -> Result<Option<User>> {
    let conn = &Sql::from(conn);
    let row = conn.query_opt("SELECT email, name, email_verified_at IS NOT NULL, is_platform_admin, disabled_at IS NOT NULL, created_at
             FROM users WHERE id = ?1", params![id.to_string()], |r| {
            Ok(User {
                id,
                email: r.get(0)?,
                name: r.get(1)?,
                email_verified: r.get(2)?,
                is_platform_admin: r.get(3)?,
                disabled: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?;
    Ok(row)
}

/// What login needs: the hash and whether the account may log in.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: Uuid,
    pub name: String,
    pub password_hash: String,
    pub disabled: bool,
}

fn credentials_where(conn: &Sql<'_>, clause: &str, value: &str) -> Result<Option<Credentials>> {
    let sql =
        format!("SELECT id, name, password_hash, disabled_at IS NOT NULL FROM users WHERE {clause} = ?1");
    let row = conn.query_opt(&sql, params![value], |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<bool>(3)?,
        ))
    })?;
    row.map(|(id, name, password_hash, disabled)| {
        Ok(Credentials {
            id: Uuid::parse_str(&id).map_err(Error::internal)?,
            name,
            password_hash,
            disabled,
        })
    })
    .transpose()
}

pub fn credentials_by_email(conn: &impl Handle, email: &str) -> Result<Option<Credentials>> {
    let conn = &Sql::from(conn);
    credentials_where(conn, "email", &normalize_email(email))
}

pub fn credentials_by_id(conn: &impl Handle, id: Uuid) -> Result<Option<Credentials>> {
    let conn = &Sql::from(conn);
    credentials_where(conn, "id", &id.to_string())
}

/// Replaces the password: every emailed token still outstanding (reset links,
/// verification links) stops working with the old password. Sessions are the
/// caller's to end, since a change keeps the current one.
pub fn replace_password(conn: &impl Handle, id: Uuid, hash: &str) -> Result<()> {
    let conn = &Sql::from(conn);
    store_password_hash(conn, id, hash)?;
    crate::identity::tokens::revoke_all(conn, id)?;
    Ok(())
}

/// Stores a new hash of the same password (a rehash at login with stronger
/// parameters), which changes nothing a token or session depends on.
pub fn store_password_hash(conn: &impl Handle, id: Uuid, hash: &str) -> Result<()> {
    let conn = &Sql::from(conn);
    conn.execute(
        "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
        params![id.to_string(), hash, now_rfc3339()],
    )?;
    Ok(())
}

pub fn set_name(conn: &impl Handle, id: Uuid, name: &str) -> Result<()> {
    let conn = &Sql::from(conn);
    conn.execute(
        "UPDATE users SET name = ?2, updated_at = ?3 WHERE id = ?1",
        params![id.to_string(), name, now_rfc3339()],
    )?;
    Ok(())
}

/// Marks the email verified; false when it already was.
pub fn mark_verified(conn: &impl Handle, id: Uuid) -> Result<bool> {
    let conn = &Sql::from(conn);
    let n = conn.execute("UPDATE users SET email_verified_at = ?2, updated_at = ?2 WHERE id = ?1 AND email_verified_at IS NULL", params![id.to_string(), now_rfc3339()])?;
    Ok(n == 1)
}

/// Search criteria of the staff user list.
#[derive(Debug, Clone, Default)]
pub struct UserSearch {
    /// Prefix of the email or the name.
    pub q: Option<String>,
    pub verified: Option<bool>,
    pub disabled: Option<bool>,
    pub staff: Option<bool>,
}

/// Users matching `search`, by id, after `after`.
pub fn search(conn: &impl Handle, search: &UserSearch, limit: u32, after: Option<Uuid>) -> Result<Vec<User>> {
    let conn = &Sql::from(conn);
    let prefix = search
        .q
        .as_ref()
        .map(|q| format!("{}%", like_literal(&q.trim().to_lowercase())));
    conn.query_all(
        "SELECT id, email, name, email_verified_at IS NOT NULL, is_platform_admin, disabled_at IS NOT NULL, created_at
         FROM users
         WHERE (email LIKE ?1 ESCAPE '\\' OR lower(name) LIKE ?1 ESCAPE '\\' OR ?1 IS NULL)
           AND ((email_verified_at IS NOT NULL) = ?2 OR ?2 IS NULL)
           AND ((disabled_at IS NOT NULL) = ?3 OR ?3 IS NULL)
           AND (is_platform_admin = ?4 OR ?4 IS NULL)
           AND id > ?5
         ORDER BY id LIMIT ?6",
        params![
            prefix,
            search.verified,
            search.disabled,
            search.staff,
            after.map(|a| a.to_string()).unwrap_or_default(),
            limit
        ],
        |r| {
            Ok(User {
                id: r.get(0)?,
                email: r.get(1)?,
                name: r.get(2)?,
                email_verified: r.get(3)?,
                is_platform_admin: r.get(4)?,
                disabled: r.get(5)?,
                created_at: r.get(6)?,
            })
        },
    )
}

/// Active platform staff accounts.
pub fn count_staff(conn: &impl Handle) -> Result<i64> {
    let conn = &Sql::from(conn);
    conn.query_one(
        "SELECT count(*) FROM users WHERE is_platform_admin = 1 AND disabled_at IS NULL",
        params![],
        |r| r.get(0),
    )
}

/// Disables or re-enables an account; false when nothing changed.
pub fn set_disabled(conn: &impl Handle, id: Uuid, disabled: bool) -> Result<bool> {
    let conn = &Sql::from(conn);
    let now = now_rfc3339();
    let n = if disabled {
        conn.execute(
            "UPDATE users SET disabled_at = ?2, updated_at = ?2 WHERE id = ?1 AND disabled_at IS NULL",
            params![id.to_string(), now],
        )?
    } else {
        conn.execute(
            "UPDATE users SET disabled_at = NULL, updated_at = ?2 WHERE id = ?1 AND disabled_at IS NOT NULL",
            params![id.to_string(), now],
        )?
    };
    Ok(n == 1)
}

/// Names are shown to teammates: trimmed, 1 to 100 characters, no control characters.
pub fn name_violation(name: &str) -> Option<&'static str> {
    let name = name.trim();
    if name.is_empty() {
        Some("must not be empty")
    } else if name.chars().count() > 100 {
        Some("must be at most 100 characters long")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}
