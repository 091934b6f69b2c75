//! Pagination input: any limit and cursor either parse into a bounded page or are
//! refused with a validation error; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plinth_core::http::pagination::{MAX_LIMIT, Page};

fuzz_target!(|data: &[u8]| {
    let limit = data.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let cursor = data.get(4..).map(|b| String::from_utf8_lossy(b).into_owned());
    if let Ok(page) = Page::parse(limit, cursor) {
        assert!((1..=MAX_LIMIT).contains(&page.limit));
        assert_eq!(page.fetch(), page.limit + 1);
    }
});
