//! Durable background jobs: retries with backoff, dead jobs, recovery after restart.

use serde_json::json;

use crate::harness::{TestApp, eventually};
use crate::widgets::Widgets;

fn job_state(app: &TestApp) -> (String, i64, Option<String>) {
    app.conn()
        .query_row("SELECT status, attempts, last_error FROM jobs", args![], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("one job")
}

/// How many `widgets.tick` jobs were enqueued by the widgets' schedule.
pub fn ticks(app: &TestApp) -> i64 {
    app.conn()
        .query_row(
            "SELECT count(*) FROM jobs WHERE kind = 'widgets.tick'",
            args![],
            |r| r.get(0),
        )
        .expect("count")
}

async fn create_widget(app: &TestApp, body: serde_json::Value) {
    let resp = app
        .client
        .post(app.url("/api/widgets"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn an_event_enqueues_a_job_that_runs() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    create_widget(&app, json!({"name": "a"})).await;
    eventually("the job is done", || async { job_state(&app).0 == "done" }).await;
    let processed: i64 = app
        .conn()
        .query_row("SELECT processed FROM widgets", args![], |r| r.get(0))
        .expect("row");
    assert_eq!(processed, 1);
}

/// A schedule's first run comes one period after it is first recorded, then one
/// each period; its next due time is kept in the database, so a restart keeps it.
#[tokio::test]
async fn a_schedule_enqueues_its_job_once_a_period() {
    let app = TestApp::builder()
        .plugin(Widgets {
            tick_every: Some(std::time::Duration::from_millis(400)),
            ..Default::default()
        })
        .var("PLINTH_JOB_POLL_MS", "20")
        .spawn()
        .await;
    assert_eq!(ticks(&app), 0, "nothing before one period");
    eventually("two runs", || async { ticks(&app) >= 2 }).await;
    let done: i64 = app
        .conn()
        .query_row(
            "SELECT count(*) FROM jobs WHERE kind = 'widgets.tick' AND status = 'done'",
            args![],
            |r| r.get(0),
        )
        .expect("count");
    assert!(done >= 1, "the scheduled job runs");
    let due: i64 = app
        .conn()
        .query_row(
            "SELECT due_at FROM schedules WHERE kind = 'widgets.tick'",
            args![],
            |r| r.get(0),
        )
        .expect("the next due time is recorded");
    assert!(due > 0);
}

#[tokio::test]
async fn a_failing_job_is_retried_until_it_succeeds() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    create_widget(&app, json!({"name": "b", "fail_times": 2})).await;
    eventually("the job is done", || async { job_state(&app).0 == "done" }).await;
    let (_, attempts, last_error) = job_state(&app);
    assert_eq!(attempts, 3);
    assert_eq!(last_error, None);
}

#[tokio::test]
async fn a_job_that_keeps_failing_ends_dead_with_its_error() {
    let app = TestApp::builder()
        .var("PLINTH_JOB_MAX_ATTEMPTS", "3")
        .plugin(Widgets::default())
        .spawn()
        .await;
    create_widget(&app, json!({"name": "c", "fail_times": 100})).await;
    eventually("the job is dead", || async { job_state(&app).0 == "dead" }).await;
    let (_, attempts, last_error) = job_state(&app);
    assert_eq!(attempts, 3);
    assert_eq!(last_error.as_deref(), Some("planned failure 3"));
}

#[tokio::test]
async fn a_panicking_job_fails_without_killing_its_worker() {
    let app = TestApp::builder()
        .var("PLINTH_JOB_MAX_ATTEMPTS", "2")
        .var("PLINTH_JOB_WORKERS", "1")
        .plugin(Widgets::default())
        .spawn()
        .await;
    create_widget(&app, json!({"name": "p", "panic": true})).await;
    eventually("the job is dead", || async { job_state(&app).0 == "dead" }).await;
    assert_eq!(job_state(&app).2.as_deref(), Some("handler panicked"));
    create_widget(&app, json!({"name": "after"})).await;
    eventually("the single worker still runs jobs", || async {
        app.conn()
            .query_row(
                "SELECT processed FROM widgets WHERE name = 'after'",
                args![],
                |r| r.get::<i64>(0),
            )
            .unwrap_or(0)
            == 1
    })
    .await;
}

#[tokio::test]
async fn jobs_interrupted_by_a_crash_run_after_restart() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let dir = app.stop().await;

    // What a process killed mid-job leaves behind: a row that says running.
    let conn = crate::harness::TestConn::open(dir.path());
    conn.execute(
        "INSERT INTO widgets (id, name) VALUES ('w-crash', 'crash')",
        args![],
    )
    .expect("widget");
    conn.execute(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ('01900000-0000-7000-8000-000000000001', 'widgets.process', '{\"id\":\"w-crash\"}', 'running', 1, 5, 0, 'x', 'x')",
        args![],
    )
    .expect("job");
    drop(conn);

    let restarted = TestApp::builder()
        .in_dir(dir)
        .plugin(Widgets::default())
        .spawn()
        .await;
    eventually("the interrupted job is done", || async {
        job_state(&restarted).0 == "done"
    })
    .await;
    assert_eq!(job_state(&restarted).1, 2, "the interrupted attempt counts");
    let processed: i64 = restarted
        .conn()
        .query_row(
            "SELECT processed FROM widgets WHERE id = 'w-crash'",
            args![],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(processed, 1);
}

/// Jobs of a disabled plugin wait instead of failing.
#[tokio::test]
async fn jobs_of_a_disabled_plugin_stay_queued() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let dir = app.stop().await;
    let conn = crate::harness::TestConn::open(dir.path());
    conn.execute(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ('j2', 'widgets.process', '{}', 'queued', 0, 5, 0, 'x', 'x')",
        args![],
    )
    .expect("job");
    let app = TestApp::builder()
        .in_dir(dir)
        .var("PLINTH_DISABLED_PLUGINS", "widgets")
        .plugin(Widgets::default())
        .spawn()
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(job_state(&app).0, "queued");
}
