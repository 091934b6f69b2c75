//! Graceful shutdown: in-flight requests finish, the process exits cleanly on SIGTERM.

use std::time::Duration;

use crate::cli::{free_port, spawn_plinth};
use crate::harness::TestApp;
use crate::widgets::Widgets;

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let client = app.client.clone();
    let url = app.url("/api/widgets/slow?ms=700");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = app.begin_shutdown();
    let resp = in_flight
        .await
        .expect("join")
        .expect("the in-flight request completes");
    assert_eq!(resp.status().as_u16(), 200);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("clean stop");
    assert!(
        reqwest::Client::new()
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err(),
        "no longer accepting connections"
    );
}

#[test]
fn sigterm_stops_the_binary_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let (mut child, base) = spawn_plinth(dir.path(), port, &[]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            assert!(exit.success(), "exit status {exit}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err());
}
