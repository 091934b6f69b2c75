//! Password hashing with argon2id, and the password policy.
//!
//! Parameters: OWASP's minimum for argon2id (19 MiB memory, 2 iterations, 1 lane),
//! recorded in each PHC hash string so they can be raised later without breaking
//! existing hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use crate::error::{Error, Result};

pub const MIN_LENGTH: usize = 10;
/// Longer inputs only cost hashing time; nobody types more.
pub const MAX_LENGTH: usize = 256;

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;

fn hasher() -> Result<Argon2<'static>> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, LANES, None).map_err(|e| Error::internal(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::internal(e.to_string()))?;
    let hash = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks a password against a stored hash (constant-time inside argon2).
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    hasher().is_ok_and(|h| h.verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Why a new password is refused, or `None` when it is acceptable.
pub fn policy_violation(password: &str) -> Option<String> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        return Some(format!("must be at least {MIN_LENGTH} characters long"));
    }
    if len > MAX_LENGTH {
        return Some(format!("must be at most {MAX_LENGTH} characters long"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verifiable() {
        let a = hash("correct horse battery").expect("hash");
        let b = hash("correct horse battery").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("wrong horse battery", &a));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn policy_refuses_short_passwords() {
        assert!(policy_violation("short").is_some());
        assert!(policy_violation("long enough pass").is_none());
    }
}
