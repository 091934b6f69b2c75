//! The facade's portable SQL in PostgreSQL's dialect, leaving string literals,
//! quoted identifiers and comments alone:
//! - numbered parameters (`?1`, `?2`, and SQLite's bare `?`, numbered one past the
//!   highest so far) become `$1`, `$2`;
//! - `LIKE` becomes `ILIKE`: SQLite's LIKE ignores ASCII case, PostgreSQL's does
//!   not, and searches must answer alike on both.

/// `sql` in PostgreSQL's dialect.
pub(crate) fn rewrite(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut highest = 0u32;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // To the closing quote; a doubled quote stays inside.
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case("like") {
                    out.push_str(&sql[copied..start]);
                    out.push_str("ILIKE");
                    copied = i;
                }
            }
            b'?' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let number = if end > start {
                    sql[start..end].parse().unwrap_or(0)
                } else {
                    highest + 1
                };
                highest = highest.max(number);
                out.push_str(&sql[copied..i]);
                out.push('$');
                out.push_str(&number.to_string());
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn numbered_and_bare_parameters_become_dollar_numbers() {
        assert_eq!(rewrite("SELECT ?1, ?2, ?1"), "SELECT $1, $2, $1");
        assert_eq!(
            rewrite("WHERE a = ? AND b = ? LIMIT ?"),
            "WHERE a = $1 AND b = $2 LIMIT $3"
        );
        assert_eq!(rewrite("VALUES (?2, ?, ?10)"), "VALUES ($2, $3, $10)");
    }

    #[test]
    fn literals_identifiers_and_comments_are_left_alone() {
        assert_eq!(
            rewrite("SELECT '?1 it''s', \"a?b\" -- ?3\n, ?1"),
            "SELECT '?1 it''s', \"a?b\" -- ?3\n, $1"
        );
        assert_eq!(rewrite("x LIKE ?1 ESCAPE '\\'"), "x ILIKE $1 ESCAPE '\\'");
        assert_eq!(
            rewrite("SELECT liked, 'like' FROM t WHERE a like ?1 OR b ILIKE ?2"),
            "SELECT liked, 'like' FROM t WHERE a ILIKE $1 OR b ILIKE $2"
        );
        assert_eq!(rewrite("no parameters"), "no parameters");
    }
}
