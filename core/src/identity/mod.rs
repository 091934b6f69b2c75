//! Identity: accounts, passwords, sessions and access tokens, emailed tokens, and
//! the per-request authentication every plugin relies on.
//!
//! Token lifetimes: access token 15 min (PLINTH_ACCESS_TOKEN_TTL_SECS); session idle
//! timeout 7 days and absolute lifetime 30 days (configurable); email verification
//! link 24 h; password reset link 1 h.

pub mod api;
pub mod auth;
pub mod erasure;
pub mod jwt;
pub mod passwords;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::runtime::cache::Cache;
use crate::runtime::ratelimit::RateLimiter;
use crate::storage::db::{Db, now_millis};
use jwt::JwtKeys;
use passwords::Hasher;
use sessions::SessionStatus;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub is_platform_admin: bool,
    pub email_verified: bool,
    /// The staff member behind an impersonation token.
    pub impersonator: Option<Uuid>,
}

impl Principal {
    /// Platform staff acting as themselves (not through an impersonation token).
    pub fn require_staff(&self) -> Result<()> {
        if !self.is_platform_admin || self.impersonator.is_some() {
            return Err(Error::Forbidden("this needs platform staff".into()));
        }
        Ok(())
    }
}

/// Session statuses are cached this long at most; revocations invalidate at once.
const SESSION_CACHE_TTL: Duration = Duration::from_secs(300);
/// Verified access tokens remembered at most (about 0.5 KiB each).
const VERIFIED_TOKENS: u64 = 20_000;

/// What a verified access token says.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedToken {
    user: Uuid,
    session: Uuid,
    impersonator: Option<Uuid>,
    nbf: i64,
    exp: i64,
}

#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    jwt: JwtKeys,
    /// Access tokens whose signature and claims were verified, by the whole token
    /// string: a hit skips the HMAC and JSON decoding, not the lifetime check nor
    /// the session check, which run on every request.
    verified: Cache<String, VerifiedToken>,
    sessions: Cache<Uuid, Option<SessionStatus>>,
    hasher: Hasher,
    per_ip: RateLimiter,
    per_account: RateLimiter,
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Identity {
    /// `shared_limits`: the database whose `rate_buckets` every node counts in
    /// (several nodes on PostgreSQL); `None` counts in this process's memory.
    pub(crate) fn new(config: &Config, shared_limits: Option<Db>) -> Self {
        let limiter = |per_minute| {
            let limiter = RateLimiter::per_minute(per_minute, 100_000);
            match &shared_limits {
                Some(db) => limiter.shared(db.clone(), config.secret_key.clone()),
                None => limiter,
            }
        };
        Identity {
            inner: Arc::new(Inner {
                jwt: JwtKeys::new(config),
                verified: Cache::new(
                    "access_tokens",
                    VERIFIED_TOKENS,
                    Some(config.access_token_ttl + Duration::from_secs(60)),
                ),
                sessions: Cache::new("sessions", 100_000, Some(SESSION_CACHE_TTL)),
                hasher: Hasher::new(config.password_hash_concurrency),
                per_ip: limiter(config.auth_rate_per_ip),
                per_account: limiter(config.auth_rate_per_account),
                dummy_hash: tokio::sync::OnceCell::new(),
            }),
        }
    }

    pub fn jwt(&self) -> &JwtKeys {
        &self.inner.jwt
    }

    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    pub(crate) fn session_cache(&self) -> &Cache<Uuid, Option<SessionStatus>> {
        &self.inner.sessions
    }

    pub(crate) fn token_cache(&self) -> &Cache<String, VerifiedToken> {
        &self.inner.verified
    }

    /// Verifies an access token and checks its session is still live (cached; no
    /// database query on a warm cache).
    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<Principal> {
        let invalid = || Error::Unauthorized("the access token is invalid or expired".into());
        let verified = match self.inner.verified.get(token).await {
            Some(verified) => verified,
            None => {
                let claims = self.inner.jwt.verify(token)?;
                let verified = VerifiedToken {
                    user: Uuid::parse_str(&claims.sub).map_err(|_| invalid())?,
                    session: Uuid::parse_str(&claims.sid).map_err(|_| invalid())?,
                    impersonator: claims.act.and_then(|a| Uuid::parse_str(&a.sub).ok()),
                    nbf: claims.nbf,
                    exp: claims.exp,
                };
                self.inner
                    .verified
                    .insert(token.to_string(), verified.clone())
                    .await;
                verified
            }
        };
        if !self.inner.jwt.within_lifetime(verified.nbf, verified.exp) {
            return Err(invalid());
        }
        let (user, sid) = (verified.user, verified.session);
        let db = db.clone();
        let status = self
            .inner
            .sessions
            .get_or_load(sid, || async move {
                db.call(move |conn| sessions::status(conn, sid)).await
            })
            .await?;
        match status {
            Some(s) if s.user_id == user && s.is_live(now_millis()) => Ok(Principal {
                user_id: user,
                session_id: sid,
                is_platform_admin: s.is_platform_admin,
                email_verified: s.email_verified,
                impersonator: verified.impersonator,
            }),
            _ => Err(Error::Unauthorized("the session has ended; log in again".into())),
        }
    }

    /// Makes a revoked session's access tokens fail on their next use.
    pub async fn forget_session(&self, session: Uuid) {
        self.inner.sessions.invalidate(&session).await;
    }

    /// Drops every cached session of a user (disabled, staff flag or sessions changed).
    pub fn forget_user(&self, user: Uuid) {
        self.inner
            .sessions
            .invalidate_if(move |_, status| status.as_ref().is_some_and(|s| s.user_id == user));
    }

    /// Disables an account inside the caller's transaction: every session is
    /// revoked. Call [`Identity::forget_user`] after the commit so that the account's
    /// access tokens stop at once. Returns false when it was already disabled.
    pub fn disable_user(conn: &impl crate::storage::sql::Handle, user: Uuid) -> Result<bool> {
        let changed = users::set_disabled(conn, user, true)?;
        sessions::revoke_all(conn, user, None, sessions::reason::ACCOUNT_DISABLED)?;
        Ok(changed)
    }

    /// Rate limits an auth action per client IP and, when given, per account.
    pub async fn limit(&self, action: &str, ip: IpAddr, account: Option<&str>) -> Result<()> {
        self.inner.per_ip.check(&format!("{action}:ip:{ip}")).await?;
        if let Some(account) = account {
            self.inner
                .per_account
                .check(&format!("{action}:account:{}", users::normalize_email(account)))
                .await?;
        }
        Ok(())
    }

    /// Computes the stand-in hash for unknown emails ahead of the first login, so
    /// that one is not slower than the rest.
    pub async fn warm_up(&self) {
        if let Err(e) = self.verify_nothing(String::new()).await {
            tracing::warn!(error = %e, "could not prepare the login timing stand-in");
        }
    }

    /// Spends the time of a password check against a hash nobody has, so a login for
    /// an unknown email takes as long as one for a known email.
    pub async fn verify_nothing(&self, password: String) -> Result<()> {
        let hasher = self.inner.hasher.clone();
        let dummy = self
            .inner
            .dummy_hash
            .get_or_try_init(|| async { hasher.hash(tokens::generate()?).await })
            .await?
            .clone();
        self.inner.hasher.verify(password, dummy).await?;
        Ok(())
    }
}
