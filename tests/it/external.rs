//! External plugins: the example notes library built and loaded for real, and
//! libraries that must be refused without taking the server down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::acme::Acme;
use crate::harness::{TestApp, eventually};

/// Builds the example plugin and the panicking test fixture once per test run (in
/// their own target folder, so they do not wait on the build lock of the running
/// `cargo test`). Returns the folder holding both libraries.
fn built_libraries() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target").join("ext-plugin-test");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "plinth-ext-notes",
                "-p",
                "plinth-test-panicky",
            ])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(root)
            .status()
            .expect("cargo build");
        assert!(status.success(), "the example plugin and the fixture build");
        target.join("debug")
    })
}

const NOTES: &str = "libplinth_ext_notes.so";
const PANICKY: &str = "libplinth_test_panicky.so";

/// A plugin folder holding the example and the given extra libraries.
fn plugin_dir(extra_c: &[(&str, &str)]) -> tempfile::TempDir {
    plugin_dir_with(&[NOTES], extra_c)
}

/// A plugin folder holding the given built libraries and C sources compiled here.
fn plugin_dir_with(built: &[&str], extra_c: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    for lib in built {
        std::fs::copy(built_libraries().join(lib), dir.path().join(lib)).expect("copy");
    }
    for (name, source) in extra_c {
        let c = dir.path().join(format!("{name}.c"));
        std::fs::write(&c, source).expect("write c");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.path().join(format!("lib{name}.so")))
            .arg(&c)
            .status()
            .expect("cc");
        assert!(status.success(), "{name} compiles");
    }
    dir
}

/// A library declaring a future ABI version.
const WRONG_ABI: &str = "#include <stdint.h>
struct decl { uint32_t abi_version; void *manifest, *handle, *free; };
struct decl plinth_plugin_declaration = { 999, 0, 0, 0 };";

/// A library that is not a Plinth plugin at all.
const NO_SYMBOL: &str = "int something_else = 1;";

async fn with_notes(extra: &[(&str, &str)], vars: &[(&str, &str)]) -> (Acme, tempfile::TempDir) {
    let dir = plugin_dir(extra);
    let mut builder = TestApp::builder().var("PLINTH_PLUGIN_DIR", dir.path().to_str().expect("path"));
    for (k, v) in vars {
        builder = builder.var(k, v);
    }
    (Acme::start_with(builder).await, dir)
}

/// An external plugin's permissions join the catalog through its manifest: its
/// routes check them for members' roles (presets and custom) and for API keys,
/// and the document names them.
#[tokio::test]
async fn an_external_plugins_permissions_serve_custom_roles_and_api_keys() {
    let (acme, _dir) = with_notes(&[], &[]).await;
    let notes = acme.path("/ext/notes/notes");
    let (_, catalog) = acme.send("GET", "viewer", "/api/permissions", None).await;
    let keys: Vec<&str> = catalog["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["key"].as_str())
        .filter(|k| k.starts_with("notes:"))
        .collect();
    assert_eq!(keys, ["notes:delete", "notes:read", "notes:write"]);
    let spec: Value = acme.app.served_spec().await;
    let create = &spec["paths"]["/api/orgs/{org_id}/ext/notes/notes"]["post"];
    assert_eq!(create["x-permission"], "notes:write");

    // A custom role with `notes:write` writes; the viewer preset does not.
    acme.create_role("scribe", &["org:read", "notes:read", "notes:write"])
        .await;
    acme.set_role(acme.id("viewer"), "scribe").await;
    let (status, body) = acme
        .send("POST", "viewer", &notes, Some(json!({"title": "by a scribe"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = acme.send("DELETE", "viewer", &format!("{notes}/x"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no notes:delete");

    // A key reads with `notes:read` and is refused without it.
    for (permissions, expect) in [
        (["org:read", "notes:read"], StatusCode::OK),
        (["org:read", "notes:write"], StatusCode::FORBIDDEN),
    ] {
        let (key, _) = acme.api_key("owner", &permissions).await;
        let resp = acme
            .app
            .client
            .get(acme.app.url(&notes))
            .bearer_auth(key)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), expect);
    }
}

#[tokio::test]
async fn the_example_plugin_serves_both_orgs_in_isolation_with_every_host_service() {
    let (acme, _dir) = with_notes(&[], &[]).await;
    let acme_notes = acme.path("/ext/notes/notes");
    let globex_notes = format!("/api/orgs/{}/ext/notes/notes", acme.globex);
    let (status, mine) = acme
        .send(
            "POST",
            "member",
            &acme_notes,
            Some(json!({"title": "Acme plan", "body": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let (status, theirs) = acme
        .send(
            "POST",
            "outsider",
            &globex_notes,
            Some(json!({"title": "Globex plan"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");

    let (_, list) = acme.send("GET", "viewer", &acme_notes, None).await;
    let titles: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        ["Acme plan"],
        "the plugin's unfiltered query sees one org"
    );
    assert_eq!(list["new_dashboard"], true, "flag evaluation through the host");
    let (_, globex_list) = acme.send("GET", "outsider", &globex_notes, None).await;
    assert_eq!(globex_list["items"].as_array().map(Vec::len), Some(1));

    let theirs_id = theirs["id"].as_str().expect("id");
    let (status, _) = acme
        .send("GET", "member", &format!("{acme_notes}/{theirs_id}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another org's note id leads nowhere"
    );
    assert_eq!(
        acme.send("POST", "viewer", &acme_notes, Some(json!({"title": "no"})))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        acme.send("GET", "outsider", &acme_notes, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, problem) = acme
        .send("POST", "member", &acme_notes, Some(json!({"title": ""})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "title");
    let anonymous = acme
        .app
        .client
        .get(acme.app.url(&acme_notes))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let mine_id = mine["id"].as_str().expect("id").to_string();
    eventually("the plugin's job indexed the note", || async {
        acme.send("GET", "member", &format!("{acme_notes}/{mine_id}"), None)
            .await
            .1["indexed_at"]
            .is_string()
    })
    .await;
    let feed = acme.send("GET", "viewer", &acme.path("/activity"), None).await.1;
    assert!(
        feed["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["action"] == "notes.created")
    );
    let audit = acme
        .send(
            "GET",
            "owner",
            &acme.path("/audit-logs?action=ext.notes.note.created"),
            None,
        )
        .await
        .1;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        acme.send("DELETE", "member", &format!("{acme_notes}/{mine_id}"), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        acme.send("DELETE", "admin", &format!("{acme_notes}/{mine_id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    let spec: Value = acme.app.served_spec().await;
    assert!(
        spec.pointer("/paths/~1api~1orgs~1{org_id}~1ext~1notes~1notes/post")
            .is_some()
    );
    assert!(spec.pointer("/components/schemas/ExtNote").is_some());
    let plugins = acme.app.platform.plugins();
    let notes = plugins.iter().find(|p| p.name == "notes").expect("listed");
    assert!(notes.external && notes.enabled);
    assert_eq!(notes.version, "0.1.0");
}

#[tokio::test]
async fn a_panicking_plugin_fails_that_request_only() {
    let dir = plugin_dir_with(&[NOTES, PANICKY], &[]);
    let acme =
        Acme::start_with(TestApp::builder().var("PLINTH_PLUGIN_DIR", dir.path().to_str().expect("path")))
            .await;
    assert_eq!(
        acme.send("GET", "member", "/api/ext/notes/panic", None).await.0,
        StatusCode::NOT_FOUND,
        "the shipped example has no route that fails on purpose"
    );
    let (status, problem) = acme.send("GET", "member", "/api/ext/panicky/boom", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(problem["type"], "/problems/internal-error");
    let (status, hello) = acme.send("GET", "member", "/api/ext/notes/hello", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hello["hello"], acme.id("member").to_string());
}

#[tokio::test]
async fn libraries_with_another_abi_or_no_declaration_are_skipped_and_the_server_serves() {
    let (acme, _dir) = with_notes(&[("future", WRONG_ABI), ("stranger", NO_SYMBOL)], &[]).await;
    let names: Vec<String> = acme
        .app
        .platform
        .plugins()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, ["teams", "admin", "billing", "flags", "notes"]);
    assert_eq!(acme.app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(
        acme.send("GET", "member", "/api/ext/notes/hello", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_disabled_external_plugin_vanishes_from_routes_and_spec() {
    let (acme, _dir) = with_notes(&[], &[("PLINTH_DISABLED_PLUGINS", "notes")]).await;
    assert_eq!(
        acme.send("GET", "member", "/api/ext/notes/hello", None).await.0,
        StatusCode::NOT_FOUND
    );
    let spec = acme
        .app
        .get("/api/openapi.json")
        .await
        .text()
        .await
        .expect("spec");
    assert!(!spec.contains("/ext/notes"));
    let notes = acme
        .app
        .platform
        .plugins()
        .iter()
        .find(|p| p.name == "notes")
        .cloned()
        .expect("listed");
    assert!(!notes.enabled);
}
