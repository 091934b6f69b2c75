//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`,
//! each v1 an HMAC-SHA256 of `"<t>.<raw body>"` under the endpoint's secret. Parsed
//! and checked here rather than by the SDK so that the tolerance, the several
//! secrets of a rotation and the parser itself are ours to test and fuzz.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's own default: a signature older (or newer) than this is refused.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a delivery was refused. Deliberately coarse in what it tells the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is missing parts or is not in Stripe's format.
    Malformed(&'static str),
    /// The timestamp is outside the tolerance.
    Stale,
    /// No v1 signature matches any configured secret.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Malformed(why) => write!(f, "malformed Stripe-Signature header: {why}"),
            SignatureError::Stale => write!(f, "the signature's timestamp is outside the 5-minute tolerance"),
            SignatureError::Mismatch => write!(f, "no signature matches the webhook secret"),
        }
    }
}

/// A parsed header: the timestamp and every v1 signature (other schemes ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub v1: Vec<[u8; 32]>,
}

/// Parses a Stripe-Signature header. Bounded: at most 16 elements are looked at.
pub fn parse(header: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',').take(16) {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed("an element is not key=value"));
        };
        match key {
            "t" => {
                let t: i64 = value
                    .parse()
                    .map_err(|_| SignatureError::Malformed("t is not a number"))?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed("t appears twice"));
                }
            }
            "v1" => {
                let mut sig = [0u8; 32];
                hex::decode_to_slice(value, &mut sig)
                    .map_err(|_| SignatureError::Malformed("v1 is not 64 hex digits"))?;
                v1.push(sig);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t"))?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    Ok(SignatureHeader { timestamp, v1 })
}

fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// Checks `header` against `payload` at time `now` (unix seconds): some v1 must
/// match some secret (constant-time), and `t` must be within the tolerance.
pub fn verify(payload: &[u8], header: &str, secrets: &[&str], now: i64) -> Result<i64, SignatureError> {
    let parsed = parse(header)?;
    if (now - parsed.timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let matched = secrets.iter().any(|secret| {
        parsed
            .v1
            .iter()
            .any(|sig| mac(secret, parsed.timestamp, payload).verify_slice(sig).is_ok())
    });
    if matched {
        Ok(parsed.timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header Stripe would send for `payload` at `timestamp` (tests, tooling).
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let sig = mac(secret, timestamp, payload).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let header = sign(BODY, "whsec_a", 1_000_000);
        assert_eq!(verify(BODY, &header, &["whsec_a"], 1_000_100), Ok(1_000_000));
    }

    #[test]
    fn any_of_several_signatures_and_secrets_may_match_during_rotation() {
        let old = sign(BODY, "whsec_old", 1_000_000);
        let new = sign(BODY, "whsec_new", 1_000_000);
        let both = format!(
            "{old},v1={},v0=ignored",
            new.split("v1=").nth(1).unwrap_or_default()
        );
        assert!(verify(BODY, &both, &["whsec_new"], 1_000_000).is_ok());
        assert!(verify(BODY, &old, &["whsec_new", "whsec_old"], 1_000_000).is_ok());
    }

    #[test]
    fn a_changed_body_wrong_secret_or_old_timestamp_is_refused() {
        let header = sign(BODY, "whsec_a", 1_000_000);
        assert_eq!(
            verify(b"{}", &header, &["whsec_a"], 1_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(BODY, &header, &["whsec_b"], 1_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(BODY, &header, &["whsec_a"], 1_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(BODY, &header, &["whsec_a"], 999_699),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn malformed_headers_are_refused_with_a_reason() {
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,t=2,v1=00",
            "garbage",
        ] {
            assert!(matches!(parse(bad), Err(SignatureError::Malformed(_))), "{bad}");
        }
    }
}
