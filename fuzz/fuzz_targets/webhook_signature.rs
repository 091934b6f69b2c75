//! Stripe-Signature headers and payloads: parsing never panics, a forged header
//! never verifies, and a header signed with the secret always does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plinth_billing::signature::{parse, sign, verify};

const SECRET: &str = "whsec_fuzz";
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize).min(data.len().saturating_sub(1));
    let (header, payload) = data.split_at(split.min(data.len()));
    let header = String::from_utf8_lossy(header);
    let _ = parse(&header);
    // Whatever the attacker sends, it does not verify without the secret...
    if verify(payload, &header, &[SECRET], NOW).is_ok() {
        let ours = sign(payload, SECRET, NOW);
        let mac = ours.split("v1=").nth(1).unwrap_or_default();
        assert!(header.contains(mac), "a header without our signature verified: {header}");
    }
    // ...and what we sign always does.
    assert!(verify(payload, &sign(payload, SECRET, NOW), &[SECRET], NOW).is_ok());
});
