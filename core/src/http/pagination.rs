//! Keyset pagination: `?limit=&cursor=` in, `{items, next_cursor}` out. A cursor is
//! the UUIDv7 id of the last item of the previous page; no OFFSET anywhere.

use uuid::Uuid;

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Sorts after every id (lowercase hex UUIDs) under any collation: the cursor of a
/// newest-first first page. A letter, not punctuation such as `~`, which the
/// linguistic collations of many PostgreSQL databases ignore.
pub const AFTER_EVERY_ID: &str = "g";

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub after: Option<Uuid>,
}

impl Page {
    pub fn parse(limit: Option<u32>, cursor: Option<String>) -> Result<Page> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(|c| {
                Uuid::parse_str(&c).map_err(|_| Error::invalid("cursor", "is not a cursor from this list"))
            })
            .transpose()?;
        Ok(Page { limit, after })
    }

    /// How many rows to fetch: one more than the page, to know whether another
    /// page follows.
    pub fn fetch(&self) -> u32 {
        self.limit + 1
    }

    /// Cuts the fetched rows to the page; the cursor is set only when more follow.
    pub fn finish<T>(&self, mut items: Vec<T>, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
        if items.len() <= self.limit as usize {
            return (items, None);
        }
        items.truncate(self.limit as usize);
        let cursor = items.last().map(|item| id(item).to_string());
        (items, cursor)
    }
}
