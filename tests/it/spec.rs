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

#[tokio::test]
async fn the_served_document_is_the_assembled_one() {
    let (app, _dir) = TestApp::builder().build();
    let expected = app.spec().clone();
    let running = TestApp::builder().spawn().await;
    let served: Value = running.get("/api/openapi.json").await.json().await.expect("json");
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
