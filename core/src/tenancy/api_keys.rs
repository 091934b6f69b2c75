//! Org API keys (service accounts): `plk_<prefix>_<secret>`. The prefix finds the
//! key; only HMAC-SHA256(SECRET_KEY, secret) is stored and compared in constant
//! time. Verified keys are cached by prefix (with their org's suspension) and
//! dropped on every change to `tenant_api_keys` or `organizations` (on every
//! node, through the change notes), so a revocation applies at once and a request
//! made with a key costs no query on a warm cache. `last_used_at` is kept in memory and written once a minute,
//! not on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::TryRngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::config::Secret;
use crate::error::{Error, Result};
use crate::identity::tokens;
use crate::params;
use crate::runtime::cache::Cache;
use crate::runtime::ratelimit::RateLimiter;
use crate::storage::db::{Db, now_millis, now_rfc3339};
use crate::storage::sql::{Handle, Row, Sql, is_unique_violation};
use crate::tenancy::permissions::Permissions;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "plk_";
const PREFIX_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

/// What a request made with a key acts as.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    pub id: Uuid,
    pub org_id: Uuid,
    pub permissions: Permissions,
    /// Whether its org is suspended (the cache also follows `organizations`).
    pub org_suspended: bool,
    expires_ms: Option<i64>,
    secret_hash: String,
}

/// A key as its org lists it (never its secret).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub permissions: Permissions,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// The parts of a presented key: (prefix, secret), or `None` when it is not
/// shaped like one (wrong prefix, lengths or characters).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let hex = |s: &str, bytes: usize| {
        s.len() == bytes * 2
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    (hex(prefix, PREFIX_BYTES) && hex(secret, SECRET_BYTES)).then_some((prefix, secret))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| Error::internal(format!("OS random source failed: {e}")))?;
    Ok(hex::encode(buf))
}

#[derive(Clone)]
pub struct ApiKeys {
    secret: Secret,
    verified: Cache<String, Option<Arc<VerifiedKey>>>,
    /// Last use per key on this node since the last flush (RFC 3339).
    used: Arc<Mutex<HashMap<Uuid, String>>>,
    limiter: RateLimiter,
}

/// Verified keys are cached at most this long; every change drops them at once.
const KEY_TTL: Duration = Duration::from_secs(300);

impl ApiKeys {
    pub(crate) fn new(secret: Secret, per_minute: u32, shared: Option<Db>) -> Self {
        let limiter = RateLimiter::per_minute(per_minute, 100_000);
        let limiter = match shared {
            Some(db) => limiter.shared(db, secret.clone()),
            None => limiter,
        };
        ApiKeys {
            secret,
            verified: Cache::new("api_keys", 100_000, Some(KEY_TTL)),
            used: Arc::new(Mutex::new(HashMap::new())),
            limiter,
        }
    }

    pub(crate) fn cache(&self) -> &Cache<String, Option<Arc<VerifiedKey>>> {
        &self.verified
    }

    /// The key `token` names, if it is live: 401 for anything else (malformed,
    /// unknown, wrong secret, expired), with one message, so a probe learns nothing.
    pub async fn verify(&self, root: &Db, token: &str) -> Result<Arc<VerifiedKey>> {
        let refused = || Error::Unauthorized("invalid or revoked API key".into());
        let (prefix, secret) = parse(token).ok_or_else(refused)?;
        let key = self.lookup(root, prefix).await?.ok_or_else(refused)?;
        let presented = tokens::hash(&self.secret, secret);
        if !bool::from(presented.as_bytes().ct_eq(key.secret_hash.as_bytes())) {
            return Err(refused());
        }
        if key.expires_ms.is_some_and(|at| at <= now_millis()) {
            return Err(refused());
        }
        Ok(key)
    }

    /// Counts a request of a verified key: 429 once it used up its requests of
    /// the minute; otherwise its use is noted for `last_used_at`.
    pub async fn admit(&self, key: &VerifiedKey) -> Result<()> {
        self.limiter.check(&format!("api_key:{}", key.id)).await?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(key.id, now_rfc3339());
        }
        Ok(())
    }

    /// The cached or stored key of `prefix` (no secret check).
    pub async fn lookup(&self, root: &Db, prefix: &str) -> Result<Option<Arc<VerifiedKey>>> {
        let root = root.clone();
        let owned = prefix.to_string();
        self.verified
            .get_or_load(owned.clone(), || async move {
                root.call(move |sql| {
                    sql.query_opt(
                        "SELECT k.id, k.org_id, k.permissions, k.expires_ms, k.secret_hash, o.suspended_at IS NOT NULL
                         FROM tenant_api_keys k JOIN organizations o ON o.id = k.org_id WHERE k.prefix = ?1",
                        params![owned],
                        |r| {
                            Ok(Arc::new(VerifiedKey {
                                id: r.get(0)?,
                                org_id: r.get(1)?,
                                permissions: Permissions::from_json(&r.get::<String>(2)?)?,
                                expires_ms: r.get(3)?,
                                secret_hash: r.get(4)?,
                                org_suspended: r.get(5)?,
                            }))
                        },
                    )
                })
                .await
            })
            .await
    }

    /// Creates a key in the bound org; answers it with the whole key, shown once.
    pub fn create(&self, conn: &impl Handle, org: Uuid, new: &NewKey<'_>) -> Result<(ApiKey, String)> {
        let conn = Sql::from(conn);
        let id = Uuid::now_v7();
        let secret = random_hex(SECRET_BYTES)?;
        // 48 random bits: a clash is rare, and a second draw settles it.
        for _ in 0..3 {
            let prefix = random_hex(PREFIX_BYTES)?;
            let inserted = conn.execute(
                "INSERT INTO api_keys (id, org_id, name, prefix, secret_hash, permissions, created_by,
                    expires_at, expires_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id,
                    org,
                    new.name,
                    prefix,
                    tokens::hash(&self.secret, &secret),
                    new.permissions.to_json(),
                    new.created_by,
                    new.expires.map(|(text, _)| text.to_string()),
                    new.expires.map(|(_, ms)| ms),
                    now_rfc3339()
                ],
            );
            match inserted {
                Ok(_) => {
                    let key = get(&conn, id)?.ok_or_else(|| Error::internal("a created key vanished"))?;
                    return Ok((key, format!("{KEY_PREFIX}{prefix}_{secret}")));
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::internal("could not draw a unique API key prefix"))
    }

    /// Forgets a revoked key on this node now (other nodes hear the change note).
    pub async fn forget(&self, prefix: &str) {
        self.verified.invalidate(&prefix.to_string()).await;
    }

    /// When this node last saw `id` used, if since the last flush.
    pub fn used_since_flush(&self, id: Uuid) -> Option<String> {
        self.used.lock().ok().and_then(|u| u.get(&id).cloned())
    }

    /// Writes the last-use times gathered since the last flush, in one transaction.
    pub async fn flush_last_used(&self, root: &Db) -> Result<usize> {
        let batch: Vec<(Uuid, String)> = match self.used.lock() {
            Ok(mut used) => used.drain().collect(),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        root.write(move |sql| {
            for (id, at) in &batch {
                sql.execute(
                    "UPDATE tenant_api_keys SET last_used_at = ?2
                     WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                    params![id, at],
                )?;
            }
            Ok(())
        })
        .await?;
        Ok(n)
    }
}

/// What a new key is made of.
pub struct NewKey<'a> {
    pub name: &'a str,
    pub permissions: &'a Permissions,
    /// `user:<id>` or `api_key:<id>`.
    pub created_by: &'a str,
    /// RFC 3339 text and Unix milliseconds.
    pub expires: Option<(&'a str, i64)>,
}

const SELECT: &str =
    "SELECT id, name, prefix, permissions, created_by, expires_at, created_at, last_used_at FROM api_keys";

fn key_row(r: &Row<'_>) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        permissions: Permissions::from_json(&r.get::<String>(3)?)?,
        created_by: r.get(4)?,
        expires_at: r.get(5)?,
        created_at: r.get(6)?,
        last_used_at: r.get(7)?,
    })
}

/// The bound org's keys, newest last, after `after`.
pub fn list(conn: &impl Handle, limit: u32, after: Option<Uuid>) -> Result<Vec<ApiKey>> {
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    Sql::from(conn).query_all(
        &format!("{SELECT} WHERE id > ?1 ORDER BY id LIMIT ?2"),
        params![after, limit],
        key_row,
    )
}

pub fn get(conn: &impl Handle, id: Uuid) -> Result<Option<ApiKey>> {
    Sql::from(conn).query_opt(&format!("{SELECT} WHERE id = ?1"), params![id], key_row)
}

/// Revokes a key of the bound org: its row goes (the audit log keeps the trace).
pub fn delete(conn: &impl Handle, id: Uuid) -> Result<()> {
    Sql::from(conn).execute("DELETE FROM api_keys WHERE id = ?1", params![id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_shaped_keys_parse() {
        let good = format!("plk_{}_{}", "a1".repeat(6), "0f".repeat(32));
        assert!(parse(&good).is_some());
        for bad in [
            "plk_".to_string(),
            good[..good.len() - 1].to_string(),
            good.replace("plk_", "plx_"),
            format!("{good}0"),
            good.to_uppercase(),
            good.replacen('_', "-", 2),
            format!("plk_{}_{}", "a1".repeat(6), "zz".repeat(32)),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
    }
}
