//! Access tokens: HS256 JWTs signed with JWT_SECRET.
//!
//! Verification pins the algorithm (a token claiming `none` or any other algorithm
//! is refused), requires exp, iat, nbf, sub, iss and aud, checks nbf, and allows
//! five seconds of clock skew. A valid signature is not enough on its own: the
//! session named by `sid` must still be live (see `sessions`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};

const LEEWAY_SECS: u64 = 5;

/// The staff member acting through an impersonation token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    /// The session this token belongs to.
    pub sid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// jsonwebtoken's rule: not before `nbf` nor after `exp`, give or take the leeway.
fn within_lifetime(nbf: i64, exp: i64, now: i64) -> bool {
    let leeway = LEEWAY_SECS as i64;
    nbf <= now + leeway && exp >= now - leeway
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl JwtKeys {
    pub fn new(config: &Config) -> Self {
        let secret = config.jwt_secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[config.jwt_issuer.as_str()]);
        validation.set_audience(&[config.jwt_audience.as_str()]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            ttl: config.access_token_ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for `user` in `session`; returns it with its lifetime in seconds.
    pub fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        act: Option<Actor>,
        ttl: Option<Duration>,
    ) -> Result<(String, u64)> {
        let ttl = ttl.unwrap_or(self.ttl);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: user.to_string(),
            sid: session.to_string(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            act,
        };
        let token =
            encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)?;
        Ok((token, ttl.as_secs()))
    }

    /// Whether a token with these `nbf` and `exp` may be used now (the check
    /// `verify` makes, for tokens whose signature was verified before).
    pub fn within_lifetime(&self, nbf: i64, exp: i64) -> bool {
        within_lifetime(nbf, exp, time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Checks signature, algorithm and claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims> {
        decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| Error::Unauthorized("the access token is invalid or expired".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifetime_check_of_remembered_tokens_matches_verification() {
        let config = Config::from_vars([("DATABASE_URL", "sqlite://unused.db")]).expect("config");
        let keys = JwtKeys::new(&config);
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // A token that expired a minute ago: verification refuses it, and so does
        // the check a remembered token goes through.
        let expired = AccessClaims {
            sub: user.to_string(),
            sid: session.to_string(),
            iat: now - 120,
            nbf: now - 120,
            exp: now - 60,
            iss: config.jwt_issuer.clone(),
            aud: config.jwt_audience.clone(),
            act: None,
        };
        let token = encode(&Header::new(Algorithm::HS256), &expired, &keys.encoding).expect("sign");
        assert!(keys.verify(&token).is_err());
        assert!(!keys.within_lifetime(expired.nbf, expired.exp));

        let (fresh, _) = keys.issue(user, session, None, None).expect("issue");
        let claims = keys.verify(&fresh).expect("verify");
        assert!(keys.within_lifetime(claims.nbf, claims.exp));

        // Boundaries, with the 5 s leeway.
        assert!(within_lifetime(100, 200, 205));
        assert!(!within_lifetime(100, 200, 206));
        assert!(within_lifetime(100, 200, 95));
        assert!(!within_lifetime(100, 200, 94));
    }
}
