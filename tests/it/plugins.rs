//! The plugin registry: registration, disabling, and clash detection.

use serde_json::Value;

use crate::harness::TestApp;
use crate::widgets::Widgets;

#[tokio::test]
async fn an_enabled_plugin_serves_its_routes_and_documents_them() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    assert_eq!(app.get("/api/widgets").await.status().as_u16(), 200);
    let spec: Value = app.served_spec().await;
    assert!(spec.pointer("/paths/~1api~1widgets/get").is_some());
    assert!(
        spec["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t["name"] == "Widgets")
    );
}

#[tokio::test]
async fn a_disabled_plugins_routes_404_and_vanish_from_the_spec() {
    let app = TestApp::builder()
        .var("PLINTH_DISABLED_PLUGINS", "widgets")
        .plugin(Widgets::default())
        .spawn()
        .await;
    let resp = app.get("/api/widgets").await;
    assert_eq!(resp.status().as_u16(), 404);
    let spec: Value = app.served_spec().await;
    let text = spec.to_string();
    assert!(!text.contains("/api/widgets"), "disabled routes documented");
    assert!(!text.contains("NewWidget"), "disabled schemas documented");
    // Its migrations did not run either.
    assert!(!app.conn().has_table("widgets"));
}

fn refusal(builder: crate::harness::TestAppBuilder) -> String {
    builder.try_build().0.expect_err("refused").to_string()
}

#[test]
fn disabling_an_unknown_plugin_is_refused_by_name() {
    let text = refusal(
        TestApp::builder()
            .var("PLINTH_DISABLED_PLUGINS", "widgetz")
            .plugin(Widgets::default()),
    );
    assert!(text.contains("widgetz") && text.contains("widgets"), "{text}");
}

#[test]
fn two_plugins_with_one_route_are_refused() {
    let gadgets = Widgets {
        name: Some("gadgets"),
        ..Widgets::default()
    };
    let text = refusal(TestApp::builder().plugin(Widgets::default()).plugin(gadgets));
    assert!(text.contains("widgets") && text.contains("gadgets"), "{text}");
}

#[test]
fn two_plugins_with_one_name_are_refused() {
    let text = refusal(
        TestApp::builder()
            .plugin(Widgets::default())
            .plugin(Widgets::default()),
    );
    assert!(text.contains("two plugins are named `widgets`"), "{text}");
}

#[test]
fn plugin_listing_reports_state_and_contents() {
    let (app, _dir) = TestApp::builder()
        .var("PLINTH_DISABLED_PLUGINS", "widgets")
        .plugin(Widgets::default())
        .build();
    let info = &app.plugins()[0];
    assert_eq!(info.name, "widgets");
    assert!(!info.enabled);
    assert_eq!(info.migrations, 1);
}

#[tokio::test]
async fn seeding_runs_each_enabled_plugins_part_idempotently() {
    let (app, dir) = TestApp::builder().plugin(Widgets::default()).build();
    app.migrate().expect("migrate");
    let options = plinth_core::seed::SeedOptions {
        demo: true,
        ..Default::default()
    };
    let first = app.seed(&options).expect("seed");
    assert_eq!(first.users_created, 5);
    let second = app.seed(&options).expect("seed again");
    assert_eq!(second.users_created, 0);
    let conn = crate::harness::TestConn::open(dir.path());
    let widgets: i64 = conn
        .query_row("SELECT count(*) FROM widgets", args![], |r| r.get(0))
        .expect("count");
    assert_eq!(widgets, 1);
    let staff: String = conn
        .query_row(
            "SELECT email FROM users WHERE is_platform_admin = 1",
            args![],
            |r| r.get(0),
        )
        .expect("staff");
    assert_eq!(staff, "staff@plinth.test");
}
