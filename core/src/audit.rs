//! The audit log: one row per security-relevant action, written in the same
//! transaction as the action so neither exists without the other.
//!
//! Tamper evidence: entries form a hash chain. Entry `n` stores `seq = n`, the hash
//! of entry `n - 1` and `hash = SHA-256(prev_hash, n, its fields)`; triggers refuse
//! UPDATE and DELETE. Anyone editing the file directly (triggers dropped) breaks the
//! chain at the first changed or missing entry, which [`verify`] reports. Writers
//! are serialized by SQLite's write lock, so reading the last hash inside the
//! writing transaction cannot fork the chain.
//!
//! Personal data (IP, user agent, emails) lives in `audit_personal`, outside the
//! chain: each entry commits to it with a salted digest. Erasing a person deletes
//! those rows; the chain still verifies, and the salt is gone with them, so the
//! digest cannot be matched against a guess.

use std::borrow::Cow;

use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::http::ClientInfo;
use crate::params;
use crate::storage::EngineKind;
use crate::storage::db::now_rfc3339;
use crate::storage::sql::{Handle, Sql, ToSql};

/// The `prev_hash` of the first entry of a chain that was never pruned.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry. `action` is `area.verb` (`auth.login`, `session.revoked`).
/// `details` must hold no personal data; put emails and the like in `personal`.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// A user's id, or `api_key:<id>` for an org API key.
    pub actor_id: Option<String>,
    pub action: Cow<'static, str>,
    pub target_type: Option<Cow<'static, str>>,
    pub target_id: Option<String>,
    pub org_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Value,
    pub personal: Option<Value>,
}

impl AuditEntry {
    pub fn new(action: impl Into<Cow<'static, str>>) -> Self {
        AuditEntry {
            action: action.into(),
            details: Value::Object(Default::default()),
            ..Default::default()
        }
    }

    pub fn actor(mut self, actor: impl ToString) -> Self {
        self.actor_id = Some(actor.to_string());
        self
    }

    pub fn target(mut self, kind: impl Into<Cow<'static, str>>, id: impl ToString) -> Self {
        self.target_type = Some(kind.into());
        self.target_id = Some(id.to_string());
        self
    }

    pub fn org(mut self, org: Uuid) -> Self {
        self.org_id = Some(org);
        self
    }

    pub fn client(mut self, client: &ClientInfo) -> Self {
        self.ip = Some(client.ip.to_string());
        self.user_agent = client.user_agent.clone();
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Personal data about the entry (emails, names): kept apart and erasable.
    pub fn personal(mut self, personal: Value) -> Self {
        self.personal = Some(personal);
        self
    }
}

/// The chained fields of an entry, in a fixed order.
struct Chained<'a> {
    seq: i64,
    id: &'a str,
    at: &'a str,
    actor_id: Option<&'a str>,
    action: &'a str,
    target_type: Option<&'a str>,
    target_id: Option<&'a str>,
    org_id: Option<&'a str>,
    details: &'a str,
    personal_digest: Option<&'a str>,
}

fn chain_hash(prev: &str, e: &Chained<'_>) -> String {
    let content = json!([
        e.seq,
        e.id,
        e.at,
        e.actor_id,
        e.action,
        e.target_type,
        e.target_id,
        e.org_id,
        e.details,
        e.personal_digest
    ]);
    hex::encode(
        Sha256::new()
            .chain_update(prev.as_bytes())
            .chain_update(b"\n")
            .chain_update(content.to_string())
            .finalize(),
    )
}

/// Where the next entry attaches: the last entry, else the retention anchor, else genesis.
fn chain_head(conn: &Sql<'_>) -> Result<(i64, String)> {
    if conn.engine() == EngineKind::Postgres {
        // Not a dialect: PostgreSQL has concurrent writers, and tenant roles see
        // only their org's entries. The schema's function reads the head with the
        // owner's rights under the chain's lock, held to the end of the transaction.
        return conn.query_one("SELECT seq, hash FROM audit_chain_head()", params![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        });
    }
    let last: Option<(i64, String)> = conn.query_opt(
        "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match last {
        Some(head) => Ok(head),
        None => anchor(conn),
    }
}

/// Where the retained chain starts: the retention anchor, else genesis.
fn anchor(conn: &Sql<'_>) -> Result<(i64, String)> {
    let anchor: Option<(i64, String)> = conn.query_opt(
        "SELECT seq, hash FROM audit_anchor WHERE id = 1",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(anchor.unwrap_or((0, GENESIS.to_string())))
}

/// Appends an entry on `conn` (normally the action's transaction).
pub fn record(conn: &impl Handle, entry: &AuditEntry) -> Result<Uuid> {
    let conn = &Sql::from(conn);
    let id = Uuid::now_v7();
    let at = now_rfc3339();
    let (last_seq, prev_hash) = chain_head(conn)?;
    let seq = last_seq + 1;
    let has_personal = entry.ip.is_some() || entry.user_agent.is_some() || entry.personal.is_some();
    let personal = has_personal.then(|| {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = hex::encode(salt);
        let data = entry.personal.clone().unwrap_or_else(|| json!({})).to_string();
        let digest = hex::encode(
            Sha256::new()
                .chain_update(salt.as_bytes())
                .chain_update(json!([entry.ip, entry.user_agent, data]).to_string())
                .finalize(),
        );
        (salt, data, digest)
    });
    let id_text = id.to_string();
    let actor = entry.actor_id.clone();
    let org = entry.org_id.map(|o| o.to_string());
    let details = entry.details.to_string();
    let hash = chain_hash(
        &prev_hash,
        &Chained {
            seq,
            id: &id_text,
            at: &at,
            actor_id: actor.as_deref(),
            action: &entry.action,
            target_type: entry.target_type.as_deref(),
            target_id: entry.target_id.as_deref(),
            org_id: org.as_deref(),
            details: &details,
            personal_digest: personal.as_ref().map(|p| p.2.as_str()),
        },
    );
    conn.execute(
        "INSERT INTO audit_log (id, seq, at, actor_id, action, target_type, target_id, org_id, details,
                                personal_digest, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            id_text,
            seq,
            at,
            actor,
            entry.action.as_ref(),
            entry.target_type.as_deref(),
            entry.target_id,
            org,
            details,
            personal.as_ref().map(|p| p.2.as_str()),
            prev_hash,
            hash
        ],
    )?;
    if let Some((salt, data, _)) = personal {
        conn.execute(
            "INSERT INTO audit_personal (entry_id, salt, ip, user_agent, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id_text, salt, entry.ip, entry.user_agent, data],
        )?;
    }
    Ok(id)
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub checked: u64,
    /// The first entry where the chain breaks: (its sequence number, why).
    pub broken: Option<(i64, String)>,
}

/// Walks the whole chain in order, in constant memory.
pub fn verify(conn: &impl Handle) -> Result<Verification> {
    let conn = &Sql::from(conn);
    let (mut expected_seq, mut prev) = anchor(conn)?;
    let mut checked = 0u64;
    let mut broken = None;
    conn.query_each(
        "SELECT seq, id, at, actor_id, action, target_type, target_id, org_id, details, personal_digest, prev_hash, hash
         FROM audit_log WHERE seq IS NOT NULL ORDER BY seq",
        params![],
        |r| {
            let seq: i64 = r.get(0)?;
            expected_seq += 1;
            if seq != expected_seq {
                broken = Some((
                    expected_seq,
                    format!("entry {expected_seq} is missing (next present is {seq})"),
                ));
                return Ok(false);
            }
            let (id, at): (String, String) = (r.get(1)?, r.get(2)?);
            let (actor, action, target_type): (Option<String>, String, Option<String>) =
                (r.get(3)?, r.get(4)?, r.get(5)?);
            let (target_id, org, details): (Option<String>, Option<String>, String) =
                (r.get(6)?, r.get(7)?, r.get(8)?);
            let (digest, prev_hash, hash): (Option<String>, String, String) =
                (r.get(9)?, r.get(10)?, r.get(11)?);
            if prev_hash != prev {
                broken = Some((seq, "its prev_hash does not match the entry before it".into()));
                return Ok(false);
            }
            let recomputed = chain_hash(
                &prev,
                &Chained {
                    seq,
                    id: &id,
                    at: &at,
                    actor_id: actor.as_deref(),
                    action: &action,
                    target_type: target_type.as_deref(),
                    target_id: target_id.as_deref(),
                    org_id: org.as_deref(),
                    details: &details,
                    personal_digest: digest.as_deref(),
                },
            );
            if recomputed != hash {
                broken = Some((seq, "its content was changed after it was written".into()));
                return Ok(false);
            }
            prev = hash;
            checked += 1;
            Ok(true)
        },
    )?;
    Ok(Verification { checked, broken })
}

/// Filters of the audit-log queries (admin list and export).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// A user's id, or `api_key:<id>`.
    pub actor_id: Option<String>,
    pub org_id: Option<Uuid>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// One entry as staff read it (personal data included while it exists).
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: String,
    pub seq: Option<i64>,
    pub at: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub org_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: String,
    pub personal: Option<String>,
}

pub const EXPORT_COLUMNS: [&str; 12] = [
    "id",
    "seq",
    "at",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "org_id",
    "ip",
    "user_agent",
    "details",
    "personal",
];

/// Runs `each` over the entries matching `filter`, newest first, after the entry
/// `before` (an id), at most `limit` (None: all, streamed row by row).
pub fn query(
    conn: &impl Handle,
    filter: &AuditFilter,
    before: Option<&str>,
    limit: Option<u32>,
    mut each: impl FnMut(AuditRow) -> Result<()>,
) -> Result<()> {
    let conn = Sql::from(conn);
    // Only the filters given appear in the SQL, so the planner can use the index
    // of the one that narrows (actor, org, action); a catch-all `(?1 IS NULL OR
    // col = ?1)` form scanned the whole log newest-first instead. Each combination
    // is its own cached statement.
    let (actor, org) = (filter.actor_id.clone(), filter.org_id.map(|o| o.to_string()));
    let conditions: [(&str, Option<&str>); 8] = [
        ("a.actor_id = ?", actor.as_deref()),
        ("a.org_id = ?", org.as_deref()),
        ("a.action = ?", filter.action.as_deref()),
        ("a.target_type = ?", filter.target_type.as_deref()),
        ("a.target_id = ?", filter.target_id.as_deref()),
        ("a.at >= ?", filter.since.as_deref()),
        ("a.at < ?", filter.until.as_deref()),
        ("a.id < ?", before),
    ];
    let mut sql = String::from(
        "SELECT a.id, a.seq, a.at, a.actor_id, a.action, a.target_type, a.target_id, a.org_id,
                coalesce(p.ip, a.ip), coalesce(p.user_agent, a.user_agent), a.details, p.data
         FROM audit_log a LEFT JOIN audit_personal p ON p.entry_id = a.id WHERE 1 = 1",
    );
    let mut values: Vec<&str> = Vec::new();
    for (condition, value) in conditions {
        if let Some(value) = value {
            sql.push_str(" AND ");
            sql.push_str(condition);
            values.push(value);
        }
    }
    sql.push_str(" ORDER BY a.id DESC");
    // No limit is no LIMIT clause (SQLite's `LIMIT -1` is an error on PostgreSQL).
    if limit.is_some() {
        sql.push_str(" LIMIT ?");
    }
    let mut params: Vec<&dyn ToSql> = values.iter().map(|v| v as &dyn ToSql).collect();
    if let Some(limit) = &limit {
        params.push(limit);
    }
    conn.query_each(&sql, &params, |r| {
        each(AuditRow {
            id: r.get(0)?,
            seq: r.get(1)?,
            at: r.get(2)?,
            actor_id: r.get(3)?,
            action: r.get(4)?,
            target_type: r.get(5)?,
            target_id: r.get(6)?,
            org_id: r.get(7)?,
            ip: r.get(8)?,
            user_agent: r.get(9)?,
            details: r.get(10)?,
            personal: r.get(11)?,
        })?;
        Ok(true)
    })
}

/// Deletes the personal data of audit entries about a person (erasure).
pub fn erase_personal(conn: &impl Handle, user: Uuid, email: &str) -> Result<usize> {
    let pattern = format!("%{}%", crate::storage::db::like_literal(email));
    let n = Sql::from(conn).execute(
        "DELETE FROM audit_personal WHERE entry_id IN
             (SELECT id FROM audit_log WHERE actor_id = ?1 OR target_id = ?1)
           OR data LIKE ?2 ESCAPE '\\'",
        params![user, pattern],
    )?;
    Ok(n)
}

/// Archives entries older than `cutoff` (RFC 3339) as NDJSON to `file`, deletes
/// them, and anchors the chain at the last archived entry. Returns how many moved.
pub fn archive_before(conn: &impl Handle, cutoff: &str, file: &std::path::Path) -> Result<usize> {
    use std::io::Write;
    let conn = Sql::from(conn);
    let last: Option<(i64, String)> = conn.query_opt(
        "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL AND at < ?1 ORDER BY seq DESC LIMIT 1",
        params![cutoff],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((last_seq, last_hash)) = last else {
        return Ok(0);
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(Error::internal)?);
    let mut n = 0;
    conn.query_each(
        "SELECT id, seq, at, actor_id, action, target_type, target_id, org_id, details, personal_digest, prev_hash, hash
         FROM audit_log WHERE seq IS NOT NULL AND seq <= ?1 ORDER BY seq",
        params![last_seq],
        |r| {
            let line = json!({
                "id": r.get::<String>(0)?, "seq": r.get::<i64>(1)?, "at": r.get::<String>(2)?,
                "actor_id": r.get::<Option<String>>(3)?, "action": r.get::<String>(4)?,
                "target_type": r.get::<Option<String>>(5)?, "target_id": r.get::<Option<String>>(6)?,
                "org_id": r.get::<Option<String>>(7)?, "details": r.get::<String>(8)?,
                "personal_digest": r.get::<Option<String>>(9)?, "prev_hash": r.get::<String>(10)?,
                "hash": r.get::<String>(11)?,
            });
            writeln!(out, "{line}").map_err(Error::internal)?;
            n += 1;
            Ok(true)
        },
    )?;
    out.flush().map_err(Error::internal)?;
    out.get_ref().sync_all().map_err(Error::internal)?;
    conn.execute("INSERT INTO audit_pruning (active) VALUES (1)", params![])?;
    conn.execute(
        "DELETE FROM audit_personal WHERE entry_id IN (SELECT id FROM audit_log WHERE seq <= ?1)",
        params![last_seq],
    )?;
    conn.execute(
        "DELETE FROM audit_log WHERE seq IS NOT NULL AND seq <= ?1",
        params![last_seq],
    )?;
    conn.execute("DELETE FROM audit_pruning", params![])?;
    conn.execute(
        "INSERT INTO audit_anchor (id, seq, hash, archived_at, archive_file) VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
             archived_at = excluded.archived_at, archive_file = excluded.archive_file",
        params![last_seq, last_hash, now_rfc3339(), file.display().to_string()],
    )?;
    Ok(n)
}

#[cfg(test)]
mod postgres_tests {
    use super::*;
    use crate::storage::postgres::bind::PgConn;

    /// Writers of several orgs appending at once, each as the tenant role in its
    /// own transaction: one chain, every entry in it, verified.
    #[test]
    fn concurrent_writers_on_postgresql_keep_one_unbroken_chain() {
        let Some(db) = crate::storage::postgres::testing::core_database("audit") else {
            return;
        };
        let (writers, each) = (6, 15);
        let threads: Vec<_> = (0..writers)
            .map(|_| {
                let url = db.tenant_url.clone();
                std::thread::spawn(move || {
                    let conn = PgConn::connect(&url).expect("tenant").tenant();
                    let org = Uuid::now_v7();
                    for _ in 0..each {
                        conn.begin(&crate::storage::postgres::bind::bind_org_sql(org))
                            .expect("begin");
                        record(&conn, &AuditEntry::new("test.write").org(org)).expect("record");
                        conn.end(true).expect("commit");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer");
        }
        let verdict = verify(&db.owner).expect("verify");
        assert_eq!(verdict.broken, None);
        assert_eq!(verdict.checked, writers * each);
    }
}
