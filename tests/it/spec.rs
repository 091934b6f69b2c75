//! The committed OpenAPI document is what the binary generates, and it is well formed.

use serde_json::Value;

use crate::cli::plinth;
use crate::harness::TestApp;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn committed_openapi_json_matches_plinth_openapi() {
    let out = plinth(&["openapi"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        generated == COMMITTED,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

#[test]
fn the_document_is_openapi_3_with_bearer_security_and_problem_schema() {
    let doc: Value = serde_json::from_str(COMMITTED).expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    assert_eq!(doc["info"]["title"], "Plinth API");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert!(
        doc.pointer("/components/schemas/Problem/properties/type")
            .is_some()
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str();
            assert!(
                id.is_some_and(|id| !id.is_empty()),
                "{method} {path} has no operationId"
            );
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
        }
    }
}

/// A nullable wrapper around a `$ref` must say the referenced type: schemathesis found
/// `rule_kind: "attribute"` rejected because an optional enum was typed `object`.
#[test]
fn every_optional_reference_keeps_the_type_it_refers_to() {
    let doc: Value = serde_json::from_str(COMMITTED).expect("json");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut checked = 0;
    for (name, schema) in schemas {
        for (prop, value) in schema["properties"].as_object().into_iter().flatten() {
            let Some(target) = value.pointer("/allOf/0/$ref").and_then(Value::as_str) else {
                continue;
            };
            if value["nullable"] != true {
                continue;
            }
            let referred = &schemas[target.trim_start_matches("#/components/schemas/")];
            let referred_type = referred.get("type").cloned().unwrap_or("object".into());
            assert_eq!(value["type"], referred_type, "{name}.{prop} refers to {target}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} optional references");
}

/// Every protected operation documents the 401 it answers without credentials
/// (schemathesis found GET /api/permissions answering an undocumented 401).
#[test]
fn every_protected_operation_documents_401() {
    let doc: Value = serde_json::from_str(COMMITTED).expect("json");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {path} does not document 401"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_served_document_is_the_assembled_one() {
    let (app, _dir) = TestApp::builder().build();
    let expected = app.spec().clone();
    let running = TestApp::builder().spawn().await;
    let served: Value = running.served_spec().await;
    assert_eq!(served, expected);
}

#[test]
fn the_document_carries_the_product_version() {
    let doc: Value = serde_json::from_str(COMMITTED).expect("json");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(plinth_core::VERSION, env!("CARGO_PKG_VERSION"));
    assert_ne!(plinth_core::VERSION, "0.0.0");
    let out = plinth(&["--version"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
        "plinth --version: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn tags_come_in_a_newcomers_order() {
    let doc: Value = serde_json::from_str(COMMITTED).expect("json");
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        tags,
        [
            "Auth",
            "Orgs",
            "Members",
            "Invitations",
            "Activity",
            "Roles",
            "ApiKeys",
            "Billing",
            "Usage",
            "Flags",
            "AdminUsers",
            "AdminOrgs",
            "AdminAudit",
            "AdminSystem",
            "AdminBilling",
            "AdminFlags",
            "Ops",
        ]
    );
}

/// Why a string schema's description documents a closed set of values, if it does:
/// "Always `x`", two or more backticked plain words offered as alternatives, or a
/// bare list of three or more such words.
fn documented_values(description: &str) -> Option<String> {
    let plain = |w: &str| {
        !w.is_empty()
            && w.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_uppercase())
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let ticked: Vec<&str> = description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| plain(w))
        .collect();
    if description.contains("Always `") && !ticked.is_empty() {
        return Some(format!("always {:?}", ticked[0]));
    }
    if ticked.len() >= 2 && (description.contains(" or ") || description.contains(", ")) {
        return Some(format!("one of {ticked:?}"));
    }
    for sentence in description.split(['.', ':', ';', '(', ')']) {
        let words: Vec<&str> = sentence.split(',').map(str::trim).collect();
        if words.len() >= 3 && words.iter().all(|w| plain(w) && *w == w.to_ascii_lowercase()) {
            return Some(format!("a list {words:?}"));
        }
    }
    None
}

/// Every string schema in `node` (with the description that applies to it) that
/// documents a closed set without declaring it as an enum.
fn undeclared_sets(node: &Value, path: &str, inherited: Option<&str>, found: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            let description = map.get("description").and_then(Value::as_str).or(inherited);
            let is_string = map.get("type").and_then(Value::as_str) == Some("string");
            // A wrapper around a `$ref` (`allOf`) takes its values from the target.
            if is_string
                && !map.contains_key("enum")
                && !map.contains_key("allOf")
                && let Some(why) = description.and_then(documented_values)
            {
                found.push(format!("{path}: {why}"));
            }
            for (key, child) in map {
                // A parameter's description documents its schema.
                let pass = (key == "schema").then_some(description).flatten();
                undeclared_sets(child, &format!("{path}/{key}"), pass, found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                undeclared_sets(child, &format!("{path}/{i}"), None, found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_closed_set_detector_catches_what_it_must() {
    for documented in [
        "`month` or `year`.",
        "`block`, `bill`, or null without a quota.",
        "draft, open, paid, void, uncollectible.",
        "Org: id, slug, name, plan. User: id, email, email_domain, role.",
        "Always `Bearer`.",
    ] {
        assert!(documented_values(documented).is_some(), "{documented}");
    }
    for free in [
        "`next_cursor` of the previous page.",
        "Lowercase letters, digits, `-` and `_`; immutable once created.",
        "The field's name, in the request's own spelling (`email`, `members[2].role`).",
        "A stable identifier of the kind of problem, e.g. `/problems/not-found`.",
        "Only this action (e.g. `member.role_changed`).",
    ] {
        assert!(documented_values(free).is_none(), "{free}");
    }
}

#[test]
fn every_closed_set_of_values_is_an_enum() {
    let doc: Value = serde_json::from_str(COMMITTED).expect("json");
    let mut found = Vec::new();
    undeclared_sets(&doc, "", None, &mut found);
    assert!(
        found.is_empty(),
        "string fields that document fixed values without an enum:\n{}",
        found.join("\n")
    );
    // The sets the frontend asked for by name.
    let enum_of = |pointer: &str| -> Vec<String> {
        let mut schema = doc.pointer(pointer).unwrap_or_else(|| panic!("{pointer}"));
        if let Some(all_of) = schema.get("allOf") {
            schema = &all_of[0];
        }
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            schema = doc
                .pointer(&r.replace("#/", "/"))
                .unwrap_or_else(|| panic!("{r}"));
        }
        schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{pointer} is not an enum: {schema}"))
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let s = "/components/schemas";
    assert_eq!(
        enum_of(&format!("{s}/SubscriptionView/properties/status")),
        [
            "trialing",
            "active",
            "past_due",
            "canceled",
            "unpaid",
            "incomplete",
            "incomplete_expired",
            "paused"
        ]
    );
    assert_eq!(
        enum_of(&format!("{s}/InvoiceView/properties/status")),
        ["draft", "open", "paid", "void", "uncollectible"]
    );
    assert_eq!(
        enum_of(&format!("{s}/InvoiceView/properties/source")),
        ["stripe", "local"]
    );
    assert_eq!(
        enum_of(&format!("{s}/PlanView/properties/interval")),
        ["month", "year"]
    );
    assert_eq!(
        enum_of(&format!("{s}/QuotaView/properties/over")),
        ["block", "bill"]
    );
    assert_eq!(
        enum_of(&format!("{s}/MetricUsage/properties/over")),
        ["block", "bill"]
    );
    assert_eq!(
        enum_of(&format!("{s}/SubscriptionView/properties/mode")),
        ["stripe", "local"]
    );
    assert_eq!(
        enum_of(&format!("{s}/EvaluationReason/properties/kind")),
        ["disabled", "override", "rule", "default"]
    );
    assert_eq!(
        enum_of(&format!("{s}/JobCount/properties/status")),
        ["queued", "running", "done", "dead"]
    );
    assert_eq!(
        enum_of(&format!("{s}/WebhookEventView/properties/outcome")),
        ["pending", "applied", "ignored", "stale", "failed"]
    );
    assert_eq!(
        enum_of(&format!("{s}/AttributeRule/properties/operator")),
        ["one_of", "not_one_of", "ends_with", "contains"]
    );
    assert_eq!(
        enum_of(&format!("{s}/AttributeRule/properties/subject")),
        ["org", "user"]
    );
    assert_eq!(
        enum_of(&format!("{s}/RolloutRule/properties/by")),
        ["org", "user"]
    );
}

#[test]
fn a_flag_rule_is_one_of_its_kinds_discriminated_by_kind() {
    let doc: Value = serde_json::from_str(COMMITTED).expect("json");
    let rule = &doc["components"]["schemas"]["RuleBody"];
    assert_eq!(rule["discriminator"]["propertyName"], "kind", "{rule}");
    let mapping = rule["discriminator"]["mapping"].as_object().expect("mapping");
    let mut kinds: Vec<&str> = mapping.keys().map(String::as_str).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["attribute", "orgs", "plans", "rollout", "users"]);
    let one_of = rule["oneOf"].as_array().expect("oneOf");
    assert_eq!(one_of.len(), 5);
    for (kind, target) in mapping {
        let schema = doc
            .pointer(&target.as_str().expect("ref").replace("#/", "/"))
            .expect("mapped schema");
        let text = schema.to_string();
        assert!(
            text.contains(&format!("\"enum\":[\"{kind}\"]")),
            "{kind}: its schema pins kind: {text}"
        );
    }
}
