//! /api/admin/audit-logs: filtered queries, streaming export (CSV, NDJSON) in
//! constant memory, and chain verification.

use std::io::Write;

use bytes::Bytes;
use plinth_core::audit::{self, AuditEntry, AuditFilter, AuditRow, EXPORT_COLUMNS};
use plinth_core::http::pagination::Page;
use plinth_core::identity::auth::StaffAuth;
use plinth_core::{Error, Result};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::registry::{
    MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::common::{AdminApi, AdminTag, format_time, parse_time};

/// Rows are sent in chunks of about this size; at most `CHANNEL` chunks wait.
const CHUNK: usize = 64 * 1024;
const CHANNEL: usize = 4;

#[derive(Clone)]
pub(crate) struct AuditApi(pub AdminApi);

#[derive(Object)]
struct AdminAuditEntry {
    id: Uuid,
    seq: Option<i64>,
    at: OffsetDateTime,
    /// A user's id, or `api_key:<id>` for an org API key.
    actor_id: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    org_id: Option<Uuid>,
    ip: Option<String>,
    user_agent: Option<String>,
    details: Value,
    /// Personal data of the entry (emails); gone after the person's erasure.
    personal: Option<Value>,
}

impl AdminAuditEntry {
    fn new(r: AuditRow) -> Result<Self> {
        Ok(AdminAuditEntry {
            id: Uuid::parse_str(&r.id).map_err(Error::internal)?,
            seq: r.seq,
            at: parse_time(&r.at)?,
            actor_id: r.actor_id,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            org_id: r.org_id.and_then(|o| Uuid::parse_str(&o).ok()),
            ip: r.ip,
            user_agent: r.user_agent,
            details: serde_json::from_str(&r.details).unwrap_or(Value::Null),
            personal: r.personal.and_then(|p| serde_json::from_str(&p).ok()),
        })
    }
}

#[derive(Object)]
struct AdminAuditPage {
    items: Vec<AdminAuditEntry>,
    next_cursor: Option<String>,
}

#[derive(Object)]
struct ChainReport {
    /// True when every entry links to the one before and matches its hash.
    intact: bool,
    /// Entries checked before the first break (all of them when intact).
    checked: u64,
    /// The sequence number of the first broken or missing entry.
    broken_at: Option<i64>,
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
enum ExportFormat {
    Csv,
    Ndjson,
}

/// The export: one 200 response in either of two media types, streamed.
struct Export {
    content_type: &'static str,
    body: poem::Body,
}

const CSV: &str = "text/csv";
const NDJSON: &str = "application/x-ndjson";

impl poem::IntoResponse for Export {
    fn into_response(self) -> poem::Response {
        poem::Response::builder()
            .content_type(self.content_type)
            .body(self.body)
    }
}

impl ApiResponse for Export {
    fn meta() -> MetaResponses {
        let binary = || MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary")));
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Every matching entry, newest first: CSV rows or one JSON object per line",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType {
                        content_type: CSV,
                        schema: binary(),
                    },
                    MetaMediaType {
                        content_type: NDJSON,
                        schema: binary(),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

use plinth_core::poem;

struct Filters {
    actor_id: Option<String>,
    org_id: Option<Uuid>,
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
}

impl Filters {
    fn into_filter(self) -> Result<AuditFilter> {
        Ok(AuditFilter {
            actor_id: self.actor_id,
            org_id: self.org_id,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            since: self.since.map(format_time).transpose()?,
            until: self.until.map(format_time).transpose()?,
        })
    }
}

fn ndjson_line(r: &AuditRow) -> String {
    json!({
        "id": r.id, "seq": r.seq, "at": r.at, "actor_id": r.actor_id, "action": r.action,
        "target_type": r.target_type, "target_id": r.target_id, "org_id": r.org_id, "ip": r.ip,
        "user_agent": r.user_agent,
        "details": serde_json::from_str::<Value>(&r.details).unwrap_or(Value::Null),
        "personal": r.personal.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()),
    })
    .to_string()
}

#[OpenApi(tag = "AdminTag::Audit")]
impl AuditApi {
    /// Query the audit log
    ///
    /// Newest first, filtered by actor, org, action, target and time range.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/admin/audit-logs",
        method = "get",
        operation_id = "adminListAuditLogs"
    )]
    async fn list(
        &self,
        _auth: StaffAuth,
        /// A user's id, or `api_key:<id>`.
        actor_id: Query<Option<String>>,
        org_id: Query<Option<Uuid>>,
        action: Query<Option<String>>,
        target_type: Query<Option<String>>,
        target_id: Query<Option<String>>,
        /// At or after this time.
        since: Query<Option<OffsetDateTime>>,
        /// Before this time.
        until: Query<Option<OffsetDateTime>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<AdminAuditPage>> {
        let page = Page::parse(limit.0, cursor.0)?;
        let filter = Filters {
            actor_id: actor_id.0,
            org_id: org_id.0,
            action: action.0,
            target_type: target_type.0,
            target_id: target_id.0,
            since: since.0,
            until: until.0,
        }
        .into_filter()?;
        let rows = self
            .0
            .platform
            .db()
            .call(move |conn| {
                let mut rows = Vec::new();
                let before = page.after.map(|a| a.to_string());
                audit::query(conn, &filter, before.as_deref(), Some(page.fetch()), |r| {
                    rows.push(r);
                    Ok(())
                })?;
                Ok(rows)
            })
            .await?;
        let items = rows
            .into_iter()
            .map(AdminAuditEntry::new)
            .collect::<Result<Vec<_>>>()?;
        let (items, next_cursor) = page.finish(items, |e| e.id);
        Ok(Json(AdminAuditPage { items, next_cursor }))
    }

    /// Export the audit log
    ///
    /// Every matching entry as CSV or NDJSON, streamed in constant memory.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/admin/audit-logs/export",
        method = "get",
        operation_id = "adminExportAuditLogs"
    )]
    async fn export(
        &self,
        auth: StaffAuth,
        /// `csv` (default) or `ndjson`.
        format: Query<Option<ExportFormat>>,
        /// A user's id, or `api_key:<id>`.
        actor_id: Query<Option<String>>,
        org_id: Query<Option<Uuid>>,
        action: Query<Option<String>>,
        target_type: Query<Option<String>>,
        target_id: Query<Option<String>>,
        since: Query<Option<OffsetDateTime>>,
        until: Query<Option<OffsetDateTime>>,
    ) -> Result<Export> {
        let staff = auth.0.user_id;
        let format = format.0.unwrap_or(ExportFormat::Csv);
        let filter = Filters {
            actor_id: actor_id.0,
            org_id: org_id.0,
            action: action.0,
            target_type: target_type.0,
            target_id: target_id.0,
            since: since.0,
            until: until.0,
        }
        .into_filter()?;
        self.0
            .audit(AuditEntry::new("audit.exported").actor(staff).details(json!({
                "format": if format == ExportFormat::Csv { "csv" } else { "ndjson" },
            })))
            .await?;
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL);
        let db = self.0.platform.db().clone();
        tokio::task::spawn_blocking(move || {
            let result = db.blocking(|conn| {
                let mut out = ChunkSender::new(tx);
                match format {
                    ExportFormat::Csv => {
                        let mut w = csv::Writer::from_writer(&mut out);
                        w.write_record(EXPORT_COLUMNS).map_err(Error::internal)?;
                        audit::query(conn, &filter, None, None, |r| {
                            let seq = r.seq.map(|s| s.to_string()).unwrap_or_default();
                            w.write_record([
                                r.id.as_str(),
                                seq.as_str(),
                                r.at.as_str(),
                                r.actor_id.as_deref().unwrap_or(""),
                                r.action.as_str(),
                                r.target_type.as_deref().unwrap_or(""),
                                r.target_id.as_deref().unwrap_or(""),
                                r.org_id.as_deref().unwrap_or(""),
                                r.ip.as_deref().unwrap_or(""),
                                r.user_agent.as_deref().unwrap_or(""),
                                r.details.as_str(),
                                r.personal.as_deref().unwrap_or(""),
                            ])
                            .map_err(Error::internal)
                        })?;
                        w.flush().map_err(Error::internal)?;
                    }
                    ExportFormat::Ndjson => {
                        audit::query(conn, &filter, None, None, |r| {
                            writeln!(out, "{}", ndjson_line(&r)).map_err(Error::internal)
                        })?;
                    }
                }
                out.finish()
            });
            if let Err(e) = result {
                tracing_stop(&e);
            }
        });
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Export {
            content_type: if format == ExportFormat::Csv { CSV } else { NDJSON },
            body: poem::Body::from_bytes_stream(stream),
        })
    }

    /// Verify the audit chain
    ///
    /// Walks every entry and reports the first one that was altered or removed
    /// outside the application.
    #[oai(
        path = "/api/admin/audit-logs/verify",
        method = "get",
        operation_id = "adminVerifyAuditLog"
    )]
    async fn verify(&self, _auth: StaffAuth) -> Result<Json<ChainReport>> {
        let report = self.0.platform.db().call(|conn| audit::verify(conn)).await?;
        let (broken_at, reason) = match report.broken {
            Some((seq, why)) => (Some(seq), Some(why)),
            None => (None, None),
        };
        Ok(Json(ChainReport {
            intact: broken_at.is_none(),
            checked: report.checked,
            broken_at,
            reason,
        }))
    }
}

/// Buffers export bytes and hands them to the response stream in chunks; a
/// closed channel (the client went away) becomes a write error that stops the
/// export.
struct ChunkSender {
    buf: Vec<u8>,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl ChunkSender {
    fn new(tx: mpsc::Sender<std::io::Result<Bytes>>) -> Self {
        ChunkSender {
            buf: Vec::with_capacity(CHUNK * 2),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK * 2)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "export cancelled"))
    }

    fn finish(mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.send().map_err(Error::internal)?;
        }
        Ok(())
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An export that stops early (client gone, database error) ends its stream; the
/// reason only matters to the log.
fn tracing_stop(e: &Error) {
    tracing::warn!(error = %e, "audit export stopped early");
}
