//! Opaque random tokens (refresh tokens, emailed links) and their keyed hashes.
//!
//! A token is 32 bytes from the OS random source, hex-encoded. Only
//! HMAC-SHA256(SECRET_KEY, token) is stored, so a copy of the database alone cannot
//! be turned into working tokens. Emailed tokens are single use: redemption is one
//! atomic UPDATE that only one of any number of concurrent attempts can win.

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use uuid::Uuid;

use crate::config::Secret;
use crate::error::{Error, Result};
use crate::params;
use crate::storage::db::{now_millis, now_rfc3339};
use crate::storage::sql::{Handle, Sql};

const TOKEN_BYTES: usize = 32;

pub fn generate() -> Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::internal(format!("OS random source failed: {e}")))?;
    Ok(hex::encode(bytes))
}

pub fn hash(key: &Secret, token: &str) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What an emailed token is for, and how long it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }

    pub fn lifetime_millis(self) -> i64 {
        match self {
            Purpose::VerifyEmail => 24 * 3600 * 1000,
            Purpose::PasswordReset => 3600 * 1000,
        }
    }
}

/// Issues a new token for `user` and `purpose`; earlier unused ones stop working.
pub fn issue(conn: &impl Handle, key: &Secret, user: Uuid, purpose: Purpose) -> Result<String> {
    let conn = &Sql::from(conn);
    let now = now_rfc3339();
    conn.execute(
        "UPDATE user_tokens SET used_at = ?3 WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL",
        params![user.to_string(), purpose.as_str(), now],
    )?;
    let token = generate()?;
    conn.execute("INSERT INTO user_tokens (hash, user_id, purpose, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)", params![
        hash(key, &token),
        user.to_string(),
        purpose.as_str(),
        now,
        now_millis() + purpose.lifetime_millis()
    ])?;
    Ok(token)
}

/// Ends every unused emailed token of `user`, whatever its purpose: a reset or
/// verification link mailed before a password change must not outlive it.
pub fn revoke_all(conn: &impl Handle, user: Uuid) -> Result<usize> {
    let conn = &Sql::from(conn);
    let n = conn.execute(
        "UPDATE user_tokens SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL",
        params![user.to_string(), now_rfc3339()],
    )?;
    Ok(n)
}

/// Marks the token used and returns its user, if it is valid, unused, unexpired and
/// for this purpose; otherwise `None`, whichever the reason.
pub fn redeem(conn: &impl Handle, key: &Secret, token: &str, purpose: Purpose) -> Result<Option<Uuid>> {
    let conn = &Sql::from(conn);
    let user: Option<String> = conn.query_opt(
        "UPDATE user_tokens SET used_at = ?3
             WHERE hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?4
             RETURNING user_id",
        params![hash(key, token), purpose.as_str(), now_rfc3339(), now_millis()],
        |r| r.get(0),
    )?;
    user.map(|u| Uuid::parse_str(&u).map_err(Error::internal))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hash_with_the_key() {
        let a = generate().expect("token");
        let b = generate().expect("token");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let k1 = Secret::new("one");
        let k2 = Secret::new("two");
        assert_eq!(hash(&k1, &a), hash(&k1, &a));
        assert_ne!(hash(&k1, &a), hash(&k2, &a));
        assert_ne!(hash(&k1, &a), a);
    }
}
