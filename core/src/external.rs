//! External plugins: feature areas loaded at start from shared libraries in
//! PLINTH_PLUGIN_DIR through the C ABI of `plinth-abi`.
//!
//! A library with another ABI version, a missing symbol or a bad manifest is
//! skipped with a log line; the server starts without it. Requests reach the
//! plugin already authenticated (and, for org routes, tenant-checked), on the
//! blocking pool, inside one transaction on the org-bound connection that commits
//! when the plugin answers below 400. The plugin reaches data only through host
//! callbacks on that connection, so row isolation applies to it as to built-ins.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;
use plinth_abi::{ABI_VERSION, Buf, DECLARATION_SYMBOL, Host, PluginDecl};
use poem::http::{Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::audit::{AuditEntry, record};
use crate::error::{Error, Result};
use crate::http::RequestId;
use crate::identity::auth::org_access;
use crate::platform::JobHandler;
use crate::platform::Platform;
use crate::platform::flags::FlagContext;
use crate::plugin::RouteTable;
use crate::runtime::events::Event;
use crate::storage::isolation::TenantTable;
use crate::storage::migrations::Migration;
use crate::storage::sql::{Sql, ToSql, Value as SqlValue};
use crate::tenancy::{Actor, Permission, Role, RoleName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Scope {
    /// `/api/orgs/{org_id}/ext/{name}/...`: a member of the org, bound connection.
    Org,
    /// `/api/ext/{name}/...`: any authenticated user, no tenant data.
    User,
}

#[derive(Debug, Clone, Deserialize)]
struct RouteDecl {
    method: String,
    /// Relative to the plugin's prefix, OpenAPI style: `/notes/{id}`.
    path: String,
    scope: Scope,
    /// For org routes: the permission the caller's role or API key must carry
    /// (declared in `permissions`, by this plugin or another).
    #[serde(default)]
    permission: Option<String>,
    /// For org routes without a `permission`: `owner`, `admin`, `member` or
    /// `viewer` (default), meaning every permission that preset holds.
    #[serde(default)]
    min_role: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PermissionDecl {
    key: String,
    description: String,
    /// The lowest preset that holds it: `owner`, `admin`, `member` or `viewer`.
    preset: String,
}

#[derive(Debug, Clone, Deserialize)]
struct MigrationDecl {
    version: u32,
    name: String,
    sql: String,
    /// PostgreSQL's text where it must differ.
    #[serde(default)]
    postgres: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Manifest {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    routes: Vec<RouteDecl>,
    #[serde(default)]
    openapi: Value,
    #[serde(default)]
    migrations: Vec<MigrationDecl>,
    /// Names of its tenant tables (core generates their isolation).
    #[serde(default)]
    tenant_tables: Vec<String>,
    #[serde(default)]
    jobs: Vec<String>,
    /// The permissions its routes check (see core's permission catalog).
    #[serde(default)]
    permissions: Vec<PermissionDecl>,
}

/// A loaded library and its manifest. The library stays loaded while this lives.
pub struct ExternalPlugin {
    pub path: PathBuf,
    manifest: Manifest,
    decl: *const PluginDecl,
    _lib: Library,
}

// SAFETY: the declaration is an immutable static of the loaded library, which is
// kept alive with it; its functions are required to be thread-safe (see plinth-abi).
unsafe impl Send for ExternalPlugin {}
// SAFETY: as above.
unsafe impl Sync for ExternalPlugin {}

impl ExternalPlugin {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    pub fn description(&self) -> &str {
        &self.manifest.description
    }

    fn decl(&self) -> &PluginDecl {
        // SAFETY: points into the library we keep loaded.
        unsafe { &*self.decl }
    }

    /// One call into the plugin; the answer is copied and its buffer given back.
    fn call(&self, host: &Host, request: &[u8]) -> Vec<u8> {
        let decl = self.decl();
        let out = (decl.handle)(host, request.as_ptr(), request.len());
        // SAFETY: the plugin's buffer is valid until we free it with its `free`.
        let bytes = unsafe { out.as_slice() }.to_vec();
        (decl.free)(out);
        bytes
    }

    /// Its tenant tables. Declarations are `'static`: the names are leaked once per
    /// load, like the library itself, which stays loaded for the process.
    pub fn tenant_tables(&self) -> Vec<TenantTable> {
        self.manifest
            .tenant_tables
            .iter()
            .map(|name| TenantTable::new(Box::leak(name.clone().into_boxed_str())))
            .collect()
    }

    /// Its permissions for the catalog (validated when it was loaded).
    pub fn permissions(&self) -> Vec<Permission> {
        self.manifest
            .permissions
            .iter()
            .filter_map(|p| {
                Some(Permission {
                    key: p.key.clone().into(),
                    description: p.description.clone().into(),
                    preset: Role::parse(&p.preset)?,
                })
            })
            .collect()
    }

    /// The permissions its routes check, to be found in the catalog.
    pub fn checked_permissions(&self) -> impl Iterator<Item = &str> {
        self.manifest
            .routes
            .iter()
            .filter_map(|r| r.permission.as_deref())
    }

    pub fn migrations(&self) -> Vec<Migration> {
        self.manifest
            .migrations
            .iter()
            .map(|m| Migration {
                owner: self.manifest.name.clone().into(),
                version: m.version,
                name: m.name.clone().into(),
                sql: m.sql.clone().into(),
                postgres: m.postgres.clone().map(Into::into),
            })
            .collect()
    }

    /// The prefix of its routes of `scope`, in OpenAPI style.
    fn prefix(&self, scope: Scope) -> String {
        match scope {
            Scope::Org => format!("/api/orgs/{{org_id}}/ext/{}", self.manifest.name),
            Scope::User => format!("/api/ext/{}", self.manifest.name),
        }
    }
}

/// Loads every shared library of `dir`, skipping (and logging) the ones that fail.
pub fn load_dir(dir: &Path) -> Vec<Arc<ExternalPlugin>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("so" | "dylib" | "dll")
            )
        })
        .collect();
    paths.sort();
    let mut loaded: Vec<Arc<ExternalPlugin>> = Vec::new();
    for path in paths {
        match load_one(&path) {
            Ok(plugin) if loaded.iter().any(|p| p.name() == plugin.name()) => {
                tracing::error!(path = %path.display(), name = plugin.name(), "external plugin skipped: another has its name");
            }
            Ok(plugin) => {
                tracing::info!(path = %path.display(), name = plugin.name(), version = plugin.version(), "external plugin loaded");
                loaded.push(Arc::new(plugin));
            }
            Err(why) => tracing::error!(path = %path.display(), error = %why, "external plugin skipped"),
        }
    }
    loaded
}

fn load_one(path: &Path) -> std::result::Result<ExternalPlugin, String> {
    // SAFETY: loading runs the library's initialisers; the operator chose to put
    // this library in the plugin folder.
    let lib = unsafe { Library::new(path) }.map_err(|e| format!("cannot load: {e}"))?;
    // SAFETY: the symbol, if present, is a `PluginDecl` static (checked by version next).
    let decl: *const PluginDecl = unsafe {
        let symbol = lib
            .get::<*const PluginDecl>(DECLARATION_SYMBOL)
            .map_err(|_| "no plinth_plugin_declaration symbol: not a Plinth plugin".to_string())?;
        *symbol
    };
    // SAFETY: reading the first field, which every ABI version keeps in place.
    let version = unsafe { (*decl).abi_version };
    if version != ABI_VERSION {
        return Err(format!(
            "plugin ABI version {version}, this server speaks {ABI_VERSION}"
        ));
    }
    // SAFETY: the version matches, so the layout is the one we know.
    let d = unsafe { &*decl };
    let out = (d.manifest)();
    // SAFETY: the plugin's buffer is valid until we give it back.
    let bytes = unsafe { out.as_slice() }.to_vec();
    (d.free)(out);
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| format!("bad manifest: {e}"))?;
    let valid_name = !manifest.name.is_empty()
        && manifest
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_name {
        return Err(format!("bad plugin name `{}`", manifest.name));
    }
    let plugin = ExternalPlugin {
        path: path.to_path_buf(),
        manifest,
        decl,
        _lib: lib,
    };
    for route in &plugin.manifest.routes {
        if !route.path.starts_with('/') || Method::from_bytes(route.method.as_bytes()).is_err() {
            return Err(format!("bad route {} {}", route.method, route.path));
        }
        if route
            .min_role
            .as_deref()
            .is_some_and(|r| Role::parse(r).is_none())
        {
            return Err(format!("bad min_role on {} {}", route.method, route.path));
        }
        if route
            .permission
            .as_deref()
            .is_some_and(|p| !crate::tenancy::permissions::well_formed(p))
        {
            return Err(format!("bad permission on {} {}", route.method, route.path));
        }
    }
    if let Some(p) = plugin
        .manifest
        .permissions
        .iter()
        .find(|p| !crate::tenancy::permissions::well_formed(&p.key) || Role::parse(&p.preset).is_none())
    {
        return Err(format!(
            "bad permission declaration `{}` (preset `{}`)",
            p.key, p.preset
        ));
    }
    if let Some(paths) = plugin.manifest.openapi.get("paths").and_then(Value::as_object) {
        let (org, user) = (plugin.prefix(Scope::Org), plugin.prefix(Scope::User));
        if let Some(outside) = paths
            .keys()
            .find(|p| !(p.starts_with(&org) || p.starts_with(&user)))
        {
            return Err(format!(
                "its OpenAPI fragment documents {outside}, outside its prefixes"
            ));
        }
    }
    Ok(plugin)
}

/// Its routes (poem paths) and OpenAPI fragment, for core's merge.
pub fn api(plugin: &Arc<ExternalPlugin>, platform: &Platform) -> (Value, RouteTable) {
    let mut routes = RouteTable::new();
    for route in &plugin.manifest.routes {
        let full = format!("{}{}", plugin.prefix(route.scope), route.path);
        let poem_path: String = full
            .split('/')
            .map(
                |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => format!(":{name}"),
                    None => seg.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        let Ok(method) = Method::from_bytes(route.method.to_uppercase().as_bytes()) else {
            continue;
        };
        let endpoint = ExtEndpoint {
            plugin: plugin.clone(),
            route: route.clone(),
            platform: platform.clone(),
        };
        routes
            .entry(poem_path)
            .or_default()
            .insert(method, poem::EndpointExt::boxed(endpoint));
    }
    let mut spec = plugin.manifest.openapi.clone();
    for route in &plugin.manifest.routes {
        let full = format!("{}{}", plugin.prefix(route.scope), route.path);
        let method = route.method.to_lowercase();
        if let (Some(permission), Some(op)) = (
            &route.permission,
            spec.get_mut("paths")
                .and_then(|p| p.get_mut(&full))
                .and_then(|item| item.get_mut(&method)),
        ) {
            crate::http::openapi::document_permission(op, permission);
        }
    }
    (spec, routes)
}

/// Job handlers for its declared job kinds (`ext.<name>.<kind>`).
pub fn jobs(plugin: &Arc<ExternalPlugin>) -> Vec<JobHandler> {
    plugin
        .manifest
        .jobs
        .iter()
        .map(|kind| {
            let plugin = plugin.clone();
            let job = kind.clone();
            JobHandler::new(format!("ext.{}.{kind}", plugin.name()), move |ctx| {
                let plugin = plugin.clone();
                let job = job.clone();
                async move {
                    let org = ctx.payload["org_id"]
                        .as_str()
                        .and_then(|o| Uuid::parse_str(o).ok());
                    let user = ctx.payload["user_id"]
                        .as_str()
                        .and_then(|u| Uuid::parse_str(u).ok());
                    let request = json!({
                        "method": "JOB", "path": job, "route": job, "params": {}, "query": "",
                        "body": ctx.payload["payload"].to_string(),
                        "context": { "user_id": user, "org_id": org, "role": null, "request_id": ctx.id },
                    });
                    let binding = org.map(|o| (o, user, None));
                    let answer = invoke(plugin, ctx.platform.clone(), binding, request, true)
                        .await
                        .map_err(|e| e.to_string())?;
                    if answer.status >= 400 {
                        return Err(format!("plugin answered {}: {}", answer.status, answer.body));
                    }
                    Ok(())
                }
            })
        })
        .collect()
}

struct Answer {
    status: u16,
    headers: Map<String, Value>,
    body: String,
}

struct HostCtx<'a> {
    plugin: &'a str,
    platform: &'a Platform,
    tx: Option<&'a Sql<'a>>,
    org: Option<Uuid>,
    user: Option<Uuid>,
    role: Option<RoleName>,
    runtime: tokio::runtime::Handle,
}

/// Calls the plugin on the blocking pool, inside a transaction on a connection
/// bound to `binding`'s org when there is one.
async fn invoke(
    plugin: Arc<ExternalPlugin>,
    platform: Platform,
    binding: Option<(Uuid, Option<Uuid>, Option<RoleName>)>,
    request: Value,
    write: bool,
) -> Result<Answer> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let bytes = request.to_string().into_bytes();
        let user = request["context"]["user_id"]
            .as_str()
            .and_then(|u| Uuid::parse_str(u).ok());
        let answer_bytes = match binding {
            Some((org, user, role)) => {
                // An error answer rolls back whatever the plugin wrote.
                return platform.tenancy().bind(org).transaction(write, |tx| {
                    let ctx = HostCtx {
                        plugin: plugin.name(),
                        platform: &platform,
                        tx: Some(tx),
                        org: Some(org),
                        user,
                        role,
                        runtime,
                    };
                    let answer = parse_answer(&call_with(&plugin, &ctx, &bytes));
                    let commit = answer.status < 400;
                    Ok((answer, commit))
                });
            }
            None => {
                let ctx = HostCtx {
                    plugin: plugin.name(),
                    platform: &platform,
                    tx: None,
                    org: None,
                    user,
                    role: None,
                    runtime,
                };
                call_with(&plugin, &ctx, &bytes)
            }
        };
        Ok(parse_answer(&answer_bytes))
    })
    .await?
}

fn call_with(plugin: &ExternalPlugin, ctx: &HostCtx<'_>, request: &[u8]) -> Vec<u8> {
    let host = Host {
        ctx: (ctx as *const HostCtx<'_>).cast::<c_void>(),
        call: host_call,
        free: plinth_abi::free_buf,
    };
    plugin.call(&host, request)
}

fn parse_answer(bytes: &[u8]) -> Answer {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let status = parsed
        .as_ref()
        .and_then(|v| v["status"].as_u64())
        .filter(|s| (100..600).contains(s))
        .map(|s| s as u16);
    match (parsed.as_ref(), status) {
        (Some(v), Some(status)) => Answer {
            status,
            headers: v["headers"].as_object().cloned().unwrap_or_default(),
            body: v["body"].as_str().unwrap_or_default().to_string(),
        },
        _ => {
            tracing::error!("an external plugin answered something that is not a response");
            let problem = crate::error::problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the plugin failed; it has been logged",
                None,
            );
            Answer {
                status: 500,
                headers: Map::from_iter([(
                    "content-type".to_string(),
                    json!(crate::error::PROBLEM_CONTENT_TYPE),
                )]),
                body: serde_json::to_string(&problem).unwrap_or_default(),
            }
        }
    }
}

/// The host callback. Never unwinds into the plugin.
extern "C" fn host_call(ctx: *const c_void, request: *const u8, len: usize) -> Buf {
    let answer = std::panic::catch_unwind(|| {
        // SAFETY: `ctx` is the HostCtx we passed for this call, alive until it returns.
        let ctx = unsafe { &*ctx.cast::<HostCtx<'_>>() };
        let bytes = if request.is_null() {
            &[][..]
        } else {
            // SAFETY: the plugin passes `len` readable bytes for the call.
            unsafe { std::slice::from_raw_parts(request, len) }
        };
        match serde_json::from_slice::<Value>(bytes)
            .map_err(|e| Error::BadRequest(e.to_string()))
            .and_then(|r| op(ctx, &r))
        {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "error": e.to_string() }),
        }
    })
    .unwrap_or_else(|_| json!({ "error": "the host failed to answer" }));
    Buf::from_vec(answer.to_string().into_bytes())
}

fn conn<'a>(ctx: &'a HostCtx<'a>) -> Result<&'a Sql<'a>> {
    ctx.tx
        .ok_or_else(|| Error::BadRequest("this route has no org: no database access".into()))
}

fn op(ctx: &HostCtx<'_>, r: &Value) -> Result<Value> {
    match r["op"].as_str().unwrap_or_default() {
        "query" => query(conn(ctx)?, r),
        "execute" => {
            let params = sql_params(&r["params"]);
            let n = conn(ctx)?.execute(r["sql"].as_str().unwrap_or_default(), &as_params(&params))?;
            Ok(json!({ "changes": n }))
        }
        "flag" => {
            let Some(org) = ctx.org else {
                return Err(Error::BadRequest("flags are evaluated for an org".into()));
            };
            let key = r["key"].as_str().unwrap_or_default();
            let flag_ctx = FlagContext {
                org_id: org,
                user_id: ctx.user,
                role: ctx.role.clone(),
            };
            let value = ctx.runtime.block_on(ctx.platform.flag(&flag_ctx, key))?;
            Ok(json!({ "value": value }))
        }
        "audit" => {
            let mut entry = AuditEntry::new(format!(
                "ext.{}.{}",
                ctx.plugin,
                r["action"].as_str().unwrap_or("action")
            ))
            .details(r["details"].clone());
            if let Some(user) = ctx.user {
                entry = entry.actor(user);
            }
            if let Some(org) = ctx.org {
                entry = entry.org(org);
            }
            if let (Some(kind), Some(id)) = (r["target_type"].as_str(), r["target_id"].as_str()) {
                entry = entry.target(kind.to_string(), id);
            }
            let id = record(conn(ctx)?, &entry)?;
            Ok(json!({ "id": id }))
        }
        "event" => {
            let mut event = Event::new(
                format!("{}.{}", ctx.plugin, r["name"].as_str().unwrap_or("event")),
                r["payload"].clone(),
            );
            if let Some(org) = ctx.org {
                event = event.org(org);
            }
            if let Some(user) = ctx.user {
                event = event.actor(user);
            }
            ctx.platform.events().publish(conn(ctx)?, &event)?;
            Ok(Value::Null)
        }
        "enqueue" => {
            let kind = format!("ext.{}.{}", ctx.plugin, r["kind"].as_str().unwrap_or_default());
            let payload = json!({ "org_id": ctx.org, "user_id": ctx.user, "payload": r["payload"] });
            let id = ctx.platform.jobs().enqueue(conn(ctx)?, &kind, &payload)?;
            Ok(json!({ "id": id }))
        }
        other => Err(Error::BadRequest(format!("unknown host operation `{other}`"))),
    }
}

fn sql_params(v: &Value) -> Vec<SqlValue> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| match p {
                    Value::Null => SqlValue::Null,
                    Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
                    Value::Number(n) => n
                        .as_i64()
                        .map(SqlValue::Integer)
                        .unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
                    Value::String(s) => SqlValue::Text(s.clone()),
                    other => SqlValue::Text(other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn as_params(values: &[SqlValue]) -> Vec<&dyn ToSql> {
    values.iter().map(|v| v as &dyn ToSql).collect()
}

fn query(conn: &Sql<'_>, r: &Value) -> Result<Value> {
    let sql = r["sql"].as_str().unwrap_or_default();
    let columns = conn.columns(sql)?;
    let params = sql_params(&r["params"]);
    let rows = conn.query_all(sql, &as_params(&params), |row| {
        (0..columns.len())
            .map(|i| {
                Ok(match row.get::<SqlValue>(i)? {
                    SqlValue::Null => Value::Null,
                    SqlValue::Integer(n) => json!(n),
                    SqlValue::Real(f) => json!(f),
                    SqlValue::Text(t) => json!(t),
                    SqlValue::Blob(b) => json!(hex::encode(b)),
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Value::Array)
    })?;
    Ok(json!({ "columns": columns, "rows": rows }))
}

/// One route of an external plugin.
struct ExtEndpoint {
    plugin: Arc<ExternalPlugin>,
    route: RouteDecl,
    platform: Platform,
}

impl Endpoint for ExtEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Error::Unauthorized("a bearer access token is required".into()))?
            .to_string();
        let mut params: HashMap<String, String> = HashMap::new();
        for seg in self.route.path.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                && let Some(value) = req.raw_path_param(name)
            {
                params.insert(name.to_string(), value.to_string());
            }
        }
        // Who calls: (org binding, user, role, API key).
        let (binding, user, role, api_key) = match self.route.scope {
            Scope::User => {
                let principal = self
                    .platform
                    .identity()
                    .authenticate(self.platform.db(), &token)
                    .await?;
                (None, Some(principal.user_id), None, None)
            }
            Scope::Org => {
                let bearer = poem_openapi::auth::Bearer { token };
                let tenant = match &self.route.permission {
                    Some(permission) => org_access(&req, bearer, Some(permission)).await?,
                    None => {
                        // A minimum role means every permission of that preset.
                        let min = self
                            .route
                            .min_role
                            .as_deref()
                            .and_then(Role::parse)
                            .unwrap_or(Role::Viewer);
                        let tenant = org_access(&req, bearer, Some("org:read")).await?;
                        for permission in self.platform.tenancy().catalog().preset(min).iter() {
                            tenant.require(permission)?;
                        }
                        tenant
                    }
                };
                let key = match &tenant.actor {
                    Actor::ApiKey(id) => Some(*id),
                    Actor::User(_) => None,
                };
                let user = tenant.user_id();
                (
                    Some((tenant.org_id, user, tenant.role.clone())),
                    user,
                    tenant.role,
                    key,
                )
            }
        };
        let body = req
            .take_body()
            .into_string()
            .await
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let prefix = self.plugin.prefix(self.route.scope);
        let relative = {
            let path = req.uri().path();
            let org_prefix = binding
                .as_ref()
                .map(|(o, _, _)| prefix.replace("{org_id}", &o.to_string()))
                .unwrap_or(prefix);
            path.strip_prefix(&org_prefix).unwrap_or(path).to_string()
        };
        let request = json!({
            "method": req.method().as_str(),
            "path": relative,
            "route": self.route.path,
            "params": params,
            "query": req.uri().query().unwrap_or_default(),
            "body": body,
            "context": {
                "user_id": user,
                "api_key_id": api_key,
                "org_id": binding.as_ref().map(|(o, _, _)| *o),
                "role": role.as_ref().map(RoleName::as_str),
                "request_id": req.data::<RequestId>().map(|r| r.0.to_string()),
            },
        });
        let write = req.method() != Method::GET && req.method() != Method::HEAD;
        let answer = invoke(
            self.plugin.clone(),
            self.platform.clone(),
            binding,
            request,
            write,
        )
        .await?;
        let mut resp = Response::builder()
            .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        let mut has_type = false;
        for (name, value) in &answer.headers {
            if let Some(value) = value.as_str() {
                has_type |= name.eq_ignore_ascii_case("content-type");
                resp = resp.header(name.as_str(), value);
            }
        }
        if !has_type {
            resp = resp.content_type("application/json");
        }
        Ok(resp.body(Body::from_string(answer.body)).into_response())
    }
}
