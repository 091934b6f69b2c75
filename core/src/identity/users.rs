//! The users table: creation and lookup.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::db::now_rfc3339;
use crate::error::{Error, Result};

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
pub fn create(conn: &Connection, user: &NewUser<'_>) -> Result<Uuid> {
    let email = normalize_email(user.email);
    if !valid_email(&email) {
        return Err(Error::invalid("email", "is not a valid email address"));
    }
    let id = Uuid::now_v7();
    let now = now_rfc3339();
    let verified = user.email_verified.then(|| now.clone());
    let inserted = conn.execute(
        "INSERT INTO users (id, email, name, password_hash, is_platform_admin, email_verified_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (email) DO NOTHING",
        params![id.to_string(), email, user.name.trim(), user.password_hash, user.is_platform_admin, verified, now],
    )?;
    if inserted == 0 {
        return Err(Error::Conflict(
            "an account with this email already exists".into(),
        ));
    }
    Ok(id)
}

pub fn find_id_by_email(conn: &Connection, email: &str) -> Result<Option<Uuid>> {
    let id: Option<String> = conn
        .query_row(
            "SELECT id FROM users WHERE email = ?1",
            [normalize_email(email)],
            |r| r.get(0),
        )
        .optional()?;
    id.map(|id| Uuid::parse_str(&id).map_err(Error::internal))
        .transpose()
}

pub fn set_platform_admin(conn: &Connection, id: Uuid, admin: bool) -> Result<()> {
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
