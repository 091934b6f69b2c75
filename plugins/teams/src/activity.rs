//! The activity feed (every org event becomes an item, visible to all members) and
//! the org's audit log (admins and owners, with filters).

use crate::access::{ReadAudit, ReadOrg};
use plinth_core::http::pagination::Page;
use plinth_core::params;
use plinth_core::runtime::events::{ALL_EVENTS, Event, EventBusBuilder};
use plinth_core::seed::SeedContext;
use plinth_core::seed::SeedOptions;
use plinth_core::storage::db::{like_literal, now_rfc3339};
use plinth_core::storage::sql::Sql;
use plinth_core::{Error, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::{Person, TeamsTag, parse_time, parse_uuid};

/// Events that leave no item: the org they would describe is gone.
const NOT_IN_FEED: [&str; 1] = ["org.deleted"];

/// Writes one activity item for the bound org (in the caller's transaction).
pub fn record_activity(
    sql: &Sql<'_>,
    org: Uuid,
    actor: Option<Uuid>,
    action: &str,
    summary: &str,
    details: &Value,
) -> Result<()> {
    sql.execute(
        "INSERT INTO activity (id, org_id, actor_id, action, summary, details, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            Uuid::now_v7(),
            org,
            actor,
            action,
            summary,
            details.to_string(),
            now_rfc3339()
        ],
    )?;
    Ok(())
}

/// Scrubs an erased person from every org's invitations and feed. Erasure runs in
/// core's cross-tenant transaction, so this handler, alone in this plugin, names
/// the base tables.
fn scrub(tx: &Sql<'_>, email: &str, name: &str) -> Result<()> {
    tx.execute("DELETE FROM tenant_invitations WHERE email = ?1", params![email])?;
    let pattern = |s: &str| format!("%{}%", like_literal(s));
    for (needle, replacement) in [(email, "[erased]"), (name, "a former member")] {
        if needle.trim().is_empty() {
            continue;
        }
        tx.execute(
            "UPDATE tenant_activity SET summary = replace(summary, ?1, ?2), details = replace(details, ?1, ?2)
             WHERE summary LIKE ?3 ESCAPE '\\' OR details LIKE ?3 ESCAPE '\\'",
            params![needle, replacement, pattern(needle)],
        )?;
    }
    Ok(())
}

pub(crate) fn subscribe(bus: &mut EventBusBuilder) {
    bus.on("user.erased", |event: &Event, ctx| {
        let email = event.payload["email"].as_str().unwrap_or_default();
        let name = event.payload["name"].as_str().unwrap_or_default();
        scrub(ctx.tx, email, name)
    });
    bus.on(ALL_EVENTS, |event: &Event, ctx| {
        let Some(org) = event.org_id else { return Ok(()) };
        if NOT_IN_FEED.contains(&event.name.as_str()) {
            return Ok(());
        }
        let summary = event.payload["summary"]
            .as_str()
            .unwrap_or(&event.name)
            .to_string();
        record_activity(ctx.tx, org, event.actor_id, &event.name, &summary, &event.payload)
    });
}

pub(crate) fn seed(ctx: &SeedContext<'_>, options: &SeedOptions) -> Result<()> {
    if !options.demo {
        return Ok(());
    }
    let Some(acme) = ctx.demo_org()? else {
        return Ok(());
    };
    let sql = ctx.sql();
    ctx.bind(acme)?;
    let seeded = sql.exists("SELECT 1 FROM activity LIMIT 1", params![])?;
    if !seeded {
        record_activity(
            &sql,
            acme,
            None,
            "org.created",
            "Acme was created with its demo team",
            &json!({}),
        )?;
    }
    Ok(())
}

#[derive(Clone)]
pub(crate) struct ActivityApi;

/// One item of the feed.
#[derive(Object)]
struct ActivityItem {
    id: Uuid,
    /// Who did it; absent for the system or a former member.
    actor: Option<Person>,
    /// The event, `area.verb`.
    action: String,
    /// A sentence for people (`made Mia admin`).
    summary: String,
    details: Value,
    created_at: OffsetDateTime,
}

#[derive(Object)]
struct ActivityPage {
    items: Vec<ActivityItem>,
    next_cursor: Option<String>,
}

/// One audit entry of the organization.
#[derive(Object)]
struct AuditLogEntry {
    id: Uuid,
    at: OffsetDateTime,
    /// A user's id, or `api_key:<id>` for one of the org's API keys.
    actor_id: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    details: Value,
}

#[derive(Object)]
struct AuditLogPage {
    items: Vec<AuditLogEntry>,
    next_cursor: Option<String>,
}

type AuditRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

#[OpenApi(tag = "TeamsTag::Activity")]
impl ActivityApi {
    /// The activity feed
    ///
    /// Who did what in the organization, newest first. Every member can read it.
    #[oai(
        path = "/api/orgs/:org_id/activity",
        method = "get",
        operation_id = "listActivity"
    )]
    async fn activity(
        &self,
        access: ReadOrg,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<ActivityPage>> {
        let tenant = access.0;
        let page = Page::parse(limit.0, cursor.0)?;
        let items = tenant
            .db()
            .call(move |conn| {
                let before = page
                    .after
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| plinth_core::http::pagination::AFTER_EVERY_ID.into());
                let rows = conn.query_all(
                    "SELECT a.id, a.actor_id, u.name, a.action, a.summary, a.details, a.created_at
                     FROM activity a LEFT JOIN org_users u ON u.id = a.actor_id
                     WHERE a.id < ?1 ORDER BY a.id DESC LIMIT ?2",
                    params![before, page.fetch()],
                    |r| {
                        Ok((
                            r.get::<String>(0)?,
                            r.get::<Option<String>>(1)?,
                            r.get::<Option<String>>(2)?,
                            r.get::<String>(3)?,
                            r.get::<String>(4)?,
                            r.get::<String>(5)?,
                            r.get::<String>(6)?,
                        ))
                    },
                )?;
                rows.into_iter()
                    .map(|(id, actor, name, action, summary, details, created_at)| {
                        let actor = match (actor, name) {
                            (Some(actor), Some(name)) => Some(Person {
                                id: parse_uuid(&actor)?,
                                name,
                            }),
                            _ => None,
                        };
                        Ok(ActivityItem {
                            id: parse_uuid(&id)?,
                            actor,
                            action,
                            summary,
                            details: serde_json::from_str(&details).unwrap_or(Value::Null),
                            created_at: parse_time(&created_at)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        let (items, next_cursor) = page.finish(items, |i| i.id);
        Ok(Json(ActivityPage { items, next_cursor }))
    }

    /// The organization's audit log
    ///
    /// Security-relevant actions in the organization, newest first. Admins and owners.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/orgs/:org_id/audit-logs",
        method = "get",
        operation_id = "listOrgAuditLogs"
    )]
    async fn audit_logs(
        &self,
        access: ReadAudit,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        /// Only this action (e.g. `member.role_changed`).
        action: Query<Option<String>>,
        /// Only entries by this user (an id) or API key (`api_key:<id>`).
        actor_id: Query<Option<String>>,
        /// Only entries at or after this time.
        since: Query<Option<OffsetDateTime>>,
        /// Only entries before this time.
        until: Query<Option<OffsetDateTime>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<AuditLogPage>> {
        let tenant = access.0;
        let page = Page::parse(limit.0, cursor.0)?;
        let format = |t: Option<OffsetDateTime>| -> Result<Option<String>> {
            t.map(|t| {
                t.to_offset(time::UtcOffset::UTC)
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(Error::internal)
            })
            .transpose()
        };
        let (since, until) = (format(since.0)?, format(until.0)?);
        let (action, actor) = (action.0, actor_id.0);
        let items = tenant
            .db()
            .call(move |conn| {
                let before = page
                    .after
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| plinth_core::http::pagination::AFTER_EVERY_ID.into());
                let rows: Vec<AuditRow> = conn.query_all(
                    "SELECT id, at, actor_id, action, target_type, target_id, ip, user_agent, details
                     FROM org_audit_log
                     WHERE id < ?1 AND (action = ?2 OR ?2 IS NULL) AND (actor_id = ?3 OR ?3 IS NULL)
                       AND (at >= ?4 OR ?4 IS NULL) AND (at < ?5 OR ?5 IS NULL)
                     ORDER BY id DESC LIMIT ?6",
                    params![before, action, actor, since, until, page.fetch()],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        ))
                    },
                )?;
                rows.into_iter()
                    .map(
                        |(id, at, actor_id, action, target_type, target_id, ip, user_agent, details)| {
                            Ok(AuditLogEntry {
                                id: parse_uuid(&id)?,
                                at: parse_time(&at)?,
                                actor_id,
                                action,
                                target_type,
                                target_id,
                                ip,
                                user_agent,
                                details: serde_json::from_str(&details).unwrap_or(Value::Null),
                            })
                        },
                    )
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        let (items, next_cursor) = page.finish(items, |i| i.id);
        Ok(Json(AuditLogPage { items, next_cursor }))
    }
}
