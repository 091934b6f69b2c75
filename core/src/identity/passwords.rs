//! Password hashing with argon2id, and the password policy.
//!
//! Parameters: OWASP's minimum for argon2id (19 MiB memory, 2 iterations, 1 lane),
//! recorded in each PHC hash string so they can be raised later without breaking
//! existing hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// The password of every demo and synthetic account (public: production refuses it).
pub const DEMO_PASSWORD: &str = "demo-password-1";

pub const MIN_LENGTH: usize = 10;
/// Longer inputs only cost hashing time; nobody types more.
pub const MAX_LENGTH: usize = 256;

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;

fn hasher(memory_kib: u32, iterations: u32, lanes: u32) -> Result<Argon2<'static>> {
    let params =
        Params::new(memory_kib, iterations, lanes, None).map_err(|e| Error::internal(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash(password: &str) -> Result<String> {
    hash_with_params(password, MEMORY_KIB, ITERATIONS, LANES)
}

/// Hashes with explicit argon2id parameters (today's are [`hash`]'s; others exist
/// to check upgrades of hashes stored by older settings).
pub fn hash_with_params(password: &str, memory_kib: u32, iterations: u32, lanes: u32) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::internal(e.to_string()))?;
    let hash = hasher(memory_kib, iterations, lanes)?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks a password against a stored hash (constant-time inside argon2).
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    // The parameters recorded in the hash are the ones used to check it.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Whether a stored hash was made with other parameters than today's (or another
/// algorithm), so it should be replaced at the next successful login.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm.as_str() != "argon2id"
        || params.m_cost() != MEMORY_KIB
        || params.t_cost() != ITERATIONS
        || params.p_cost() != LANES
}

/// Among the most used passwords of at least ten characters (from public breach
/// corpora), compared case-insensitively. Short ones are already refused by length.
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "1234567890a",
    "0123456789",
    "1111111111",
    "0000000000",
    "1234512345",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "asdfghjkl1",
    "zxcvbnm123",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "p@ssw0rd123",
    "p@ssword123",
    "iloveyou12",
    "iloveyou123",
    "abcdefghij",
    "abcd123456",
    "abc1234567",
    "a123456789",
    "aa12345678",
    "football123",
    "baseball123",
    "princess12",
    "sunshine123",
    "superman123",
    "welcome123",
    "welcome1234",
    "letmein123",
    "monkey1234",
    "dragon1234",
    "master1234",
    "trustno1234",
    "administrator",
    "admin12345",
    "admin123456",
    "changeme123",
    "qazwsxedcrfv",
    "987654321a",
    "9876543210",
    "1122334455",
    "1234554321",
    "123123123123",
    "q1w2e3r4t5",
    "michael123",
    "jennifer123",
    "computer123",
    "whatever123",
    "starwars123",
    "pokemon123",
    "liverpool1",
    "chocolate1",
    "basketball",
    "football12",
    "blink182blink",
    "password!1",
    "passwordpassword",
    "demo-password-1",
];

/// Why a new password is refused, or `None` when it is acceptable.
pub fn policy_violation(password: &str) -> Option<String> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        return Some(format!("must be at least {MIN_LENGTH} characters long"));
    }
    if len > MAX_LENGTH {
        return Some(format!("must be at most {MAX_LENGTH} characters long"));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Some("is one of the most commonly used passwords; choose another".into());
    }
    if password.chars().all(|c| password.starts_with(c)) {
        return Some("must not repeat a single character".into());
    }
    None
}

/// Runs argon2 on the blocking pool with bounded concurrency, so a login flood
/// queues here instead of starving every other request of threads and memory.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Hasher {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || hash(&password)).await?
    }

    pub async fn verify(&self, password: String, stored: String) -> Result<bool> {
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        Ok(tokio::task::spawn_blocking(move || verify(&password, &stored)).await?)
    }
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
    fn policy_refuses_short_common_and_repetitive_passwords() {
        assert!(policy_violation("short").is_some());
        assert!(policy_violation("Password123").is_some());
        assert!(policy_violation("aaaaaaaaaaaa").is_some());
        assert!(policy_violation("long enough pass").is_none());
    }

    #[test]
    fn hashes_with_other_parameters_need_rehashing() {
        let current = hash("correct horse battery").expect("hash");
        assert!(!needs_rehash(&current));
        let weaker = hash_with_params("correct horse battery", 8192, 1, 1).expect("hash");
        assert!(verify("correct horse battery", &weaker));
        assert!(needs_rehash(&weaker));
        assert!(needs_rehash("garbage"));
    }
}
