//! An example external plugin: per-org notes, built as a shared library
//! (`cargo build -p plinth-ext-notes --release`, then copy
//! `target/release/libplinth_ext_notes.so` into PLINTH_PLUGIN_DIR).
//!
//! It shows the whole surface of the ABI: a manifest with org and user routes,
//! their OpenAPI fragment, a migration (a tenant table behind its guarded view, so
//! row isolation applies), host callbacks (queries, a flag, audit, an event that
//! becomes an activity item, a job). A panic in a handler becomes a 500 problem
//! for that request only (`declare_plugin!` catches it; the host catches too).

use plinth_abi::{Host, declare_plugin, host_call};
use serde_json::{Value, json};

const NAME: &str = "notes";

const MIGRATION: &str = "
CREATE TABLE tenant_notes (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    author_id TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    indexed_at TEXT
) STRICT;
CREATE INDEX tenant_notes_org ON tenant_notes (org_id, id);
CREATE VIEW notes AS
    SELECT id, org_id, author_id, title, body, created_at, indexed_at FROM tenant_notes WHERE org_id = current_org();
CREATE TRIGGER notes_insert INSTEAD OF INSERT ON notes BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_notes (id, org_id, author_id, title, body, created_at, indexed_at)
    VALUES (NEW.id, NEW.org_id, NEW.author_id, NEW.title, NEW.body,
            coalesce(NEW.created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), NEW.indexed_at);
END;
CREATE TRIGGER notes_update INSTEAD OF UPDATE ON notes BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_notes SET title = NEW.title, body = NEW.body, indexed_at = NEW.indexed_at
    WHERE id = OLD.id AND org_id = current_org();
END;
CREATE TRIGGER notes_delete INSTEAD OF DELETE ON notes BEGIN
    DELETE FROM tenant_notes WHERE id = OLD.id AND org_id = current_org();
END;
";

/// The same table on PostgreSQL: core generates the view and row-level security
/// from `tenant_tables` there, so only the table and its index are written.
const MIGRATION_POSTGRES: &str = "
CREATE TABLE tenant_notes (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    author_id TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')),
    indexed_at TEXT
);
CREATE INDEX tenant_notes_org ON tenant_notes (org_id, id);
";

fn problem(status: u16, detail: &str) -> Value {
    json!({
        "status": status,
        "headers": { "content-type": "application/problem+json" },
        "body": json!({ "type": "/problems/plugin", "title": "Notes", "status": status, "detail": detail }).to_string(),
    })
}

fn ok(status: u16, body: Value) -> Value {
    json!({ "status": status, "headers": { "content-type": "application/json" }, "body": body.to_string() })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn operation(
    id: &str,
    summary: &str,
    ok_status: &str,
    ok_schema: Option<Value>,
    body: Option<Value>,
    org: bool,
) -> Value {
    let mut params = Vec::new();
    if org {
        params.push(json!({ "name": "org_id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }));
    }
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "tags": ["Notes (external plugin)"],
        "security": [{ "bearerAuth": [] }],
        "parameters": params,
        "responses": {
            ok_status: match ok_schema {
                Some(schema) => json!({ "description": "OK", "content": { "application/json": { "schema": schema } } }),
                None => json!({ "description": "Done" }),
            },
            "401": { "description": "Not authenticated" },
            "403": { "description": "Role too low" },
            "404": { "description": "Not found" },
        },
    });
    if let Some(body) = body {
        op["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": body } } });
    }
    op
}

fn manifest() -> Vec<u8> {
    let org = "/api/orgs/{org_id}/ext/notes";
    let mut one = operation(
        "getNote",
        "Get a note",
        "200",
        Some(schema_ref("ExtNote")),
        None,
        true,
    );
    let mut delete = operation("deleteNote", "Delete a note", "204", None, None, true);
    for op in [&mut one, &mut delete] {
        if let Some(params) = op["parameters"].as_array_mut() {
            params.push(
                json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }),
            );
        }
    }
    json!({
        "name": NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Per-org notes (example external plugin)",
        "routes": [
            { "method": "GET", "path": "/notes", "scope": "org", "permission": "notes:read" },
            { "method": "POST", "path": "/notes", "scope": "org", "permission": "notes:write" },
            { "method": "GET", "path": "/notes/{id}", "scope": "org", "min_role": "viewer" },
            { "method": "DELETE", "path": "/notes/{id}", "scope": "org", "permission": "notes:delete" },
            { "method": "GET", "path": "/hello", "scope": "user" }
        ],
        "permissions": [
            { "key": "notes:read", "description": "Read the org's notes.", "preset": "viewer" },
            { "key": "notes:write", "description": "Write notes.", "preset": "member" },
            { "key": "notes:delete", "description": "Delete any note.", "preset": "admin" }
        ],
        "jobs": ["index"],
        "migrations": [{ "version": 1, "name": "create_notes", "sql": MIGRATION, "postgres": MIGRATION_POSTGRES }],
        "tenant_tables": ["notes"],
        "openapi": {
            "paths": {
                format!("{org}/notes"): {
                    "get": operation("listNotes", "List notes", "200", Some(json!({ "type": "object", "properties": {
                        "items": { "type": "array", "items": schema_ref("ExtNote") },
                        "new_dashboard": { "description": "The new-dashboard flag for the caller" }
                    }})), None, true),
                    "post": operation("createNote", "Create a note", "201", Some(schema_ref("ExtNote")), Some(schema_ref("ExtNewNote")), true),
                },
                format!("{org}/notes/{{id}}"): { "get": one, "delete": delete },
                "/api/ext/notes/hello": { "get": operation("notesHello", "Who am I (no org)", "200", Some(json!({ "type": "object" })), None, false) },
            },
            "components": { "schemas": {
                "ExtNote": { "type": "object", "required": ["id", "title", "body", "author_id", "created_at"], "properties": {
                    "id": { "type": "string" }, "title": { "type": "string" }, "body": { "type": "string" },
                    "author_id": { "type": "string", "format": "uuid" }, "created_at": { "type": "string" },
                    "indexed_at": { "type": "string", "nullable": true }
                }},
                "ExtNewNote": { "type": "object", "required": ["title"], "properties": {
                    "title": { "type": "string" }, "body": { "type": "string" }
                }},
            }},
        },
    })
    .to_string()
    .into_bytes()
}

/// Calls the host; `Err` carries its error message.
fn host(h: *const Host, request: Value) -> Result<Value, String> {
    // SAFETY: `h` is the host pointer of the current call.
    let answer: Value = serde_json::from_slice(&unsafe { host_call(h, request.to_string().as_bytes()) })
        .map_err(|e| e.to_string())?;
    match answer.get("error") {
        Some(e) => Err(e.as_str().unwrap_or("host error").to_string()),
        None => Ok(answer["ok"].clone()),
    }
}

fn note_from(row: &Value) -> Value {
    json!({
        "id": row[0], "author_id": row[1], "title": row[2], "body": row[3], "created_at": row[4], "indexed_at": row[5],
    })
}

const SELECT: &str = "SELECT id, author_id, title, body, created_at, indexed_at FROM notes";

fn handle(h: *const Host, request: &[u8]) -> Vec<u8> {
    let req: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let route = (
        req["method"].as_str().unwrap_or(""),
        req["route"].as_str().unwrap_or(""),
    );
    let answer = match route {
        ("GET", "/hello") => Ok(ok(200, json!({ "hello": req["context"]["user_id"] }))),
        ("GET", "/notes") => list(h),
        ("POST", "/notes") => create(h, &req),
        ("GET", "/notes/{id}") => get(h, req["params"]["id"].as_str().unwrap_or_default()),
        ("DELETE", "/notes/{id}") => delete(h, req["params"]["id"].as_str().unwrap_or_default()),
        ("JOB", "index") => index(h, &req),
        _ => Ok(problem(404, "no such route in the notes plugin")),
    };
    answer
        .unwrap_or_else(|e| problem(500, &e))
        .to_string()
        .into_bytes()
}

fn list(h: *const Host) -> Result<Value, String> {
    // Deliberately unfiltered: the bound connection shows this org's notes only.
    let rows = host(
        h,
        json!({ "op": "query", "sql": format!("{SELECT} ORDER BY id"), "params": [] }),
    )?;
    let items: Vec<Value> = rows["rows"]
        .as_array()
        .map(|r| r.iter().map(note_from).collect())
        .unwrap_or_default();
    let flag = host(h, json!({ "op": "flag", "key": "new-dashboard" }))?;
    Ok(ok(200, json!({ "items": items, "new_dashboard": flag["value"] })))
}

fn create(h: *const Host, req: &Value) -> Result<Value, String> {
    let input: Value = serde_json::from_str(req["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    let Some(title) = input["title"].as_str().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(json!({
            "status": 422,
            "headers": { "content-type": "application/problem+json" },
            "body": json!({ "type": "/problems/validation-error", "title": "Validation error", "status": 422,
                "detail": "the request has invalid fields", "errors": [{ "field": "title", "message": "must not be empty" }] }).to_string(),
        }));
    };
    let ctx = &req["context"];
    let id = format!("note-{}", ctx["request_id"].as_str().unwrap_or("x"));
    host(
        h,
        json!({
            "op": "execute",
            "sql": "INSERT INTO notes (id, org_id, author_id, title, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            "params": [id, ctx["org_id"], ctx["user_id"], title, input["body"].as_str().unwrap_or("")],
        }),
    )?;
    host(
        h,
        json!({ "op": "audit", "action": "note.created", "target_type": "note", "target_id": id, "details": { "title": title } }),
    )?;
    host(
        h,
        json!({ "op": "event", "name": "created", "payload": { "summary": format!("wrote the note {title}"), "note_id": id } }),
    )?;
    host(
        h,
        json!({ "op": "enqueue", "kind": "index", "payload": { "note_id": id } }),
    )?;
    let note = get_row(h, &id)?.ok_or("the new note vanished")?;
    Ok(ok(201, note))
}

fn get_row(h: *const Host, id: &str) -> Result<Option<Value>, String> {
    let rows = host(
        h,
        json!({ "op": "query", "sql": format!("{SELECT} WHERE id = ?1"), "params": [id] }),
    )?;
    Ok(rows["rows"].as_array().and_then(|r| r.first()).map(note_from))
}

fn get(h: *const Host, id: &str) -> Result<Value, String> {
    Ok(match get_row(h, id)? {
        Some(note) => ok(200, note),
        None => problem(404, "no such note"),
    })
}

fn delete(h: *const Host, id: &str) -> Result<Value, String> {
    if get_row(h, id)?.is_none() {
        return Ok(problem(404, "no such note"));
    }
    host(
        h,
        json!({ "op": "execute", "sql": "DELETE FROM notes WHERE id = ?1", "params": [id] }),
    )?;
    host(
        h,
        json!({ "op": "audit", "action": "note.deleted", "target_type": "note", "target_id": id }),
    )?;
    Ok(json!({ "status": 204, "headers": {}, "body": "" }))
}

/// The `index` job: marks the note as indexed (runs bound to the note's org).
fn index(h: *const Host, req: &Value) -> Result<Value, String> {
    let input: Value = serde_json::from_str(req["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    let id = input["note_id"].as_str().unwrap_or_default();
    host(
        h,
        json!({
            "op": "execute",
            "sql": "UPDATE notes SET indexed_at = CURRENT_TIMESTAMP WHERE id = ?1",
            "params": [id],
        }),
    )?;
    Ok(ok(200, json!({})))
}

declare_plugin!(manifest, handle);
