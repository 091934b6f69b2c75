//! The audit log: one row per security-relevant action, written in the same
//! transaction as the action so neither exists without the other.

use rusqlite::{Connection, params};
use serde_json::Value;
use uuid::Uuid;

use crate::db::now_rfc3339;
use crate::error::Result;
use crate::http::ClientInfo;

/// One audit entry. `action` is `area.verb` (`auth.login`, `session.revoked`).
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub actor_id: Option<Uuid>,
    pub action: &'static str,
    pub target_type: Option<&'static str>,
    pub target_id: Option<String>,
    pub org_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Value,
}

impl AuditEntry {
    pub fn new(action: &'static str) -> Self {
        AuditEntry {
            action,
            details: Value::Object(Default::default()),
            ..Default::default()
        }
    }

    pub fn actor(mut self, actor: Uuid) -> Self {
        self.actor_id = Some(actor);
        self
    }

    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target_type = Some(kind);
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
}

/// Appends an entry on `conn` (normally the action's transaction).
pub fn record(conn: &Connection, entry: &AuditEntry) -> Result<Uuid> {
    let id = Uuid::now_v7();
    conn.prepare_cached(
        "INSERT INTO audit_log (id, at, actor_id, action, target_type, target_id, org_id, ip, user_agent, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id.to_string(),
        now_rfc3339(),
        entry.actor_id.map(|a| a.to_string()),
        entry.action,
        entry.target_type,
        entry.target_id,
        entry.org_id.map(|o| o.to_string()),
        entry.ip,
        entry.user_agent,
        entry.details.to_string(),
    ])?;
    Ok(id)
}
