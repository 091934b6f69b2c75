//! Access tokens: verification of arbitrary strings never panics and never accepts
//! anything but a token signed with the key.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use plinth_core::Config;
use plinth_core::identity::jwt::JwtKeys;

static KEYS: LazyLock<JwtKeys> = LazyLock::new(|| {
    let config = Config::from_vars([("PLINTH_LOG", "off")]).expect("config");
    JwtKeys::new(&config)
});

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    assert!(KEYS.verify(&token).is_err(), "an arbitrary string verified: {token}");
});
