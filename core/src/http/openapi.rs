//! Assembly of the one OpenAPI document from core's and every plugin's fragment, and
//! the Swagger UI page that renders it.
//!
//! poem-openapi composes APIs only at compile time, so each part builds its own
//! document and they are merged here as JSON. Clashes that poem-openapi would panic
//! on or silently resolve (two schemas with one name, two handlers for one route, two
//! operations with one id) are refused with an error naming both owners.

use std::collections::HashMap;

use poem_openapi::OpenApiService;
use serde_json::{Map, Value, json};

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The scheme every authenticated operation refers to.
pub const BEARER_SCHEME: &str = "bearerAuth";
/// The security scheme of org API keys, offered on operations that check a permission.
pub const API_KEY_SCHEME: &str = "apiKeyAuth";
/// The operation extension naming the permission an org operation checks.
pub const PERMISSION_EXTENSION: &str = "x-permission";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{method} {path} is defined by both `{first}` and `{second}`")]
    DuplicateRoute {
        method: String,
        path: String,
        first: String,
        second: String,
    },
    #[error("operationId `{id}` is used by both `{first}` and `{second}`")]
    DuplicateOperationId {
        id: String,
        first: String,
        second: String,
    },
    #[error("schema `{name}` is defined differently by `{first}` and `{second}`; rename one")]
    SchemaClash {
        name: String,
        first: String,
        second: String,
    },
}

/// The document's skeleton: info, security schemes, and nothing else yet.
fn base_document() -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {
            "title": "Plinth API",
            "version": crate::VERSION,
            "description": "Accounts, organizations, roles, billing, feature flags and audit for SaaS products. \
    Errors are RFC 9457 problem+json documents. Authenticate with `Authorization: Bearer <access token>`; \
    an org's API key (`Authorization: Bearer plk_...`) works on that org's operations within its permissions. \
    Each org operation names the permission it needs in `x-permission` (GET /api/permissions lists them).",
            "license": { "name": "MIT" }
        },
        "servers": [{ "url": "/", "description": "This server" }],
        "tags": [],
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {
                BEARER_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A short-lived access token from POST /api/auth/login or /api/auth/refresh."
                },
                API_KEY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "plk_<prefix>_<secret>",
                    "description": "An org API key (POST /api/orgs/{org_id}/api-keys), on that org's operations only, within the key's permissions."
                }
            }
        }
    })
}

/// The tag of core's health, readiness and metrics operations.
pub const OPS_TAG: &str = "Ops";
/// Tags of platform-staff areas start with this (`AdminUsers`, `AdminFlags`...).
pub const STAFF_TAG_PREFIX: &str = "Admin";

/// Merges the fragments, in order, into one document.
pub fn merge<'a>(parts: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Result<Value, SpecError> {
    let mut doc = base_document();
    let mut route_owner: HashMap<(String, String), String> = HashMap::new();
    let mut op_owner: HashMap<String, String> = HashMap::new();
    let mut schema_owner: HashMap<String, String> = HashMap::new();
    let mut tags: Vec<Value> = Vec::new();

    for (owner, part) in parts {
        if let Some(paths) = part.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                let Some(item) = item.as_object() else { continue };
                for (method, operation) in item {
                    if !HTTP_METHODS.contains(&method.as_str()) {
                        continue;
                    }
                    let key = (path.clone(), method.clone());
                    if let Some(first) = route_owner.get(&key) {
                        return Err(SpecError::DuplicateRoute {
                            method: method.to_uppercase(),
                            path: path.clone(),
                            first: first.clone(),
                            second: owner.to_string(),
                        });
                    }
                    route_owner.insert(key, owner.to_string());
                    if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                        if let Some(first) = op_owner.get(id) {
                            return Err(SpecError::DuplicateOperationId {
                                id: id.to_string(),
                                first: first.clone(),
                                second: owner.to_string(),
                            });
                        }
                        op_owner.insert(id.to_string(), owner.to_string());
                    }
                    let mut operation = operation.clone();
                    if operation.get("security").is_none() {
                        // Public on purpose (login, registration, health): say so.
                        operation["security"] = json!([]);
                    }
                    object_at(&mut doc, &["paths", path]).insert(method.clone(), operation);
                }
            }
        }
        if let Some(schemas) = part.pointer("/components/schemas").and_then(Value::as_object) {
            for (name, schema) in schemas {
                let target = object_at(&mut doc, &["components", "schemas"]);
                match target.get(name) {
                    Some(existing) if existing != schema => {
                        return Err(SpecError::SchemaClash {
                            name: name.clone(),
                            first: schema_owner.get(name).cloned().unwrap_or_default(),
                            second: owner.to_string(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        target.insert(name.clone(), schema.clone());
                        schema_owner.insert(name.clone(), owner.to_string());
                    }
                }
            }
        }
        if let Some(schemes) = part
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
        {
            let target = object_at(&mut doc, &["components", "securitySchemes"]);
            for (name, scheme) in schemes {
                target.entry(name.clone()).or_insert_with(|| scheme.clone());
            }
        }
        for tag in part.get("tags").and_then(Value::as_array).into_iter().flatten() {
            let name = tag.get("name");
            if !tags.iter().any(|t| t.get("name") == name) {
                tags.push(tag.clone());
            }
        }
    }
    mark_optional_nullable(&mut doc);
    // Parts come in registration order and list their tags in reading order; staff
    // areas follow everything else, and operations come last.
    tags.sort_by_key(
        |t| match t.get("name").and_then(Value::as_str).unwrap_or_default() {
            OPS_TAG => 2,
            name if name.starts_with(STAFF_TAG_PREFIX) => 1,
            _ => 0,
        },
    );
    doc["tags"] = Value::Array(tags);
    Ok(doc)
}

/// Optional fields are serialized as `null` when absent, as the HTTP contract says
/// (`next_cursor: string|null`); poem-openapi documents them only as optional.
/// Every non-required property is therefore marked nullable (a `$ref` is wrapped
/// in `allOf`, since OpenAPI 3.0 ignores siblings of `$ref`, and the wrapper carries
/// the referenced schema's type: an optional enum is a nullable string, not an object).
fn mark_optional_nullable(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let types: HashMap<String, Value> = schemas
        .iter()
        .map(|(name, schema)| {
            let ty = schema.get("type").cloned().unwrap_or_else(|| json!("object"));
            (format!("#/components/schemas/{name}"), ty)
        })
        .collect();
    for schema in schemas.values_mut() {
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, prop) in props.iter_mut() {
            if required.contains(name) {
                continue;
            }
            let described_ref = prop
                .pointer("/allOf/0/$ref")
                .and_then(Value::as_str)
                .filter(|_| prop.get("type").is_none())
                .map(str::to_string);
            if let Some(reference) = described_ref {
                // poem's own wrapper of a described `$ref`: type it and admit null.
                let ty = types.get(&reference).cloned().unwrap_or_else(|| json!("object"));
                prop["type"] = ty;
                prop["nullable"] = Value::Bool(true);
            } else if let Some(reference) = prop.get("$ref").cloned() {
                let ty = reference
                    .as_str()
                    .and_then(|r| types.get(r))
                    .cloned()
                    .unwrap_or_else(|| json!("object"));
                let mut wrapped = json!({ "type": ty, "allOf": [{ "$ref": reference }], "nullable": true });
                if let Some(description) = prop.get("description") {
                    wrapped["description"] = description.clone();
                }
                *prop = wrapped;
            } else if let Some(obj) = prop.as_object_mut().filter(|o| o.contains_key("type")) {
                // Untyped (any JSON) properties already admit null.
                obj.insert("nullable".into(), Value::Bool(true));
            }
        }
    }
}

/// Marks an operation as checking `permission`: `x-permission`, a sentence in its
/// description, and the API-key scheme offered beside the bearer token.
pub(crate) fn document_permission(op: &mut Value, permission: &str) {
    op[PERMISSION_EXTENSION] = Value::String(permission.to_string());
    let sentence = format!("Needs the `{permission}` permission (a member's role or an API key).");
    let description = match op.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{d}\n\n{sentence}"),
        _ => sentence,
    };
    op["description"] = Value::String(description);
    op["security"] = json!([{ BEARER_SCHEME: [] }, { API_KEY_SCHEME: [] }]);
}

/// The object at `path` inside `doc`, created empty where missing.
fn object_at<'a>(doc: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = doc;
    for key in path {
        cur = ensure_object(cur)
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    ensure_object(cur)
}

fn ensure_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut().expect("made an object above")
}

/// The document as committed in openapi/openapi.json: pretty, keys sorted, final newline.
pub fn to_pretty_json(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// The Swagger UI page for `doc`, built on the Swagger UI that poem-openapi embeds.
pub fn swagger_ui_html(doc: &Value) -> String {
    // poem-openapi renders its UI around the document of a service; render it for an
    // empty API and put the merged document in the empty one's place.
    let empty = OpenApiService::new((), "Plinth API", crate::VERSION);
    let placeholder = empty.spec();
    // `</` is escaped so the document cannot close the surrounding <script>.
    let spec = serde_json::to_string(doc)
        .unwrap_or_else(|_| "{}".into())
        .replace("</", "<\\/");
    empty.swagger_ui_html().replacen(&placeholder, &spec, 1).replacen(
        "<title>Swagger UI</title>",
        "<title>Plinth API</title>",
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(path: &str, method: &str, op: &str, schema: Value) -> Value {
        json!({
            "paths": { path: { method: { "operationId": op } } },
            "components": { "schemas": { "Thing": schema } },
            "tags": [{ "name": op }]
        })
    }

    #[test]
    fn parts_merge_into_one_document() {
        let a = part("/a", "get", "getA", json!({"type": "object"}));
        let b = part("/a", "post", "postA", json!({"type": "object"}));
        let doc = merge([("a", &a), ("b", &b)]).expect("merge");
        assert!(doc.pointer("/paths/~1a/get").is_some());
        assert!(doc.pointer("/paths/~1a/post").is_some());
        assert_eq!(doc["tags"].as_array().map(Vec::len), Some(2));
        assert!(doc.pointer("/components/securitySchemes/bearerAuth").is_some());
    }

    #[test]
    fn clashes_are_refused_with_both_owners() {
        let a = part("/a", "get", "getA", json!({"type": "object"}));
        let same_route = part("/a", "get", "other", json!({"type": "object"}));
        assert!(matches!(
            merge([("a", &a), ("b", &same_route)]),
            Err(SpecError::DuplicateRoute { ref first, ref second, .. }) if first == "a" && second == "b"
        ));
        let same_id = part("/b", "get", "getA", json!({"type": "object"}));
        assert!(matches!(
            merge([("a", &a), ("b", &same_id)]),
            Err(SpecError::DuplicateOperationId { .. })
        ));
        let other_schema = part("/c", "get", "getC", json!({"type": "string"}));
        assert!(matches!(
            merge([("a", &a), ("c", &other_schema)]),
            Err(SpecError::SchemaClash { .. })
        ));
    }

    #[test]
    fn an_optional_reference_is_nullable_with_the_type_it_refers_to() {
        let doc = json!({
            "components": { "schemas": {
                "Kind": { "type": "string", "enum": ["a", "b"] },
                "Inner": { "type": "object" },
                "Outer": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {
                        "kind": { "$ref": "#/components/schemas/Kind" },
                        "maybe_kind": { "$ref": "#/components/schemas/Kind" },
                        "maybe_inner": { "$ref": "#/components/schemas/Inner" }
                    }
                }
            }}
        });
        let doc = merge([("a", &doc)]).expect("merge");
        let props = &doc["components"]["schemas"]["Outer"]["properties"];
        assert_eq!(props["kind"], json!({ "$ref": "#/components/schemas/Kind" }));
        assert_eq!(props["maybe_kind"]["type"], "string");
        assert_eq!(props["maybe_kind"]["nullable"], true);
        assert_eq!(props["maybe_inner"]["type"], "object");
    }

    #[test]
    fn swagger_page_embeds_the_merged_document() {
        let doc = merge(std::iter::empty()).expect("merge");
        let html = swagger_ui_html(&doc);
        assert!(html.contains("bearerAuth"));
        assert!(html.contains("SwaggerUIBundle"));
    }
}
