//! Operations endpoints: liveness, readiness, metrics, docs.

use serde_json::Value;

use crate::harness::TestApp;
use crate::widgets::Widgets;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::builder().spawn().await;
    let body: Value = app.get("/healthz").await.json().await.expect("json");
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_status() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    for _ in 0..3 {
        app.get("/api/widgets").await;
    }
    app.get("/api/missing").await;
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.expect("text");
    assert!(
        text.contains(r#"plinth_http_requests_total{method="GET",route="/api/widgets",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404"} 1"#), "{text}");
    assert!(
        text.contains("plinth_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"plinth_db_pool_connections{state="max"} 8"#),
        "{text}"
    );
    assert!(text.contains(r#"plinth_jobs{state="queued"} 0"#), "{text}");
    assert!(text.contains(r#"plinth_platform{name="users"} 0"#), "{text}");
    assert!(text.contains(r#"plinth_platform{name="orgs"} 0"#), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
}

/// The figure named `name` in an OpenMetrics text.
fn figure(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn metrics_count_group_committed_writes() {
    if crate::harness::on_postgres() {
        return; // SQLite's group commit: nothing to check on PostgreSQL
    }
    let app = TestApp::builder().spawn().await;
    let text = app.get("/metrics").await.text().await.expect("text");
    let batches = figure(&text, r#"plinth_db_group_commits{state="batches"}"#);
    let writers = figure(&text, r#"plinth_db_group_commits{state="writers"}"#);
    // Registration and login write (user, session, audit) through Db::write.
    crate::auth::register(&app, "counted@example.test").await;
    let text = app.get("/metrics").await.text().await.expect("text");
    let (batches_after, writers_after) = (
        figure(&text, r#"plinth_db_group_commits{state="batches"}"#),
        figure(&text, r#"plinth_db_group_commits{state="writers"}"#),
    );
    assert!(batches_after > batches, "{text}");
    assert!(writers_after - writers >= batches_after - batches, "{text}");
}

#[tokio::test]
async fn metrics_require_the_token_when_one_is_configured() {
    let app = TestApp::builder()
        .var("PLINTH_METRICS_TOKEN", "scrape-me")
        .spawn()
        .await;
    assert_eq!(app.get("/metrics").await.status().as_u16(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 401);
    let right = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .expect("request");
    assert_eq!(right.status().as_u16(), 200);
}

#[tokio::test]
async fn swagger_ui_renders_the_merged_document() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let resp = app.get("/docs").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/html")
    );
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("script-src 'self' 'unsafe-inline'")
    );
    let html = resp.text().await.expect("html");
    assert!(html.contains("SwaggerUIBundle"));
    assert!(
        html.contains("/api/widgets"),
        "the plugin's routes are in the embedded document"
    );
}
