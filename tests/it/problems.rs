//! Every failure is RFC 9457 problem+json with the right status, and nothing leaks.

use serde_json::{Value, json};

use crate::harness::TestApp;
use crate::widgets::Widgets;

async fn problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = resp.json().await.expect("problem body");
    assert_eq!(body["status"], status);
    for key in ["type", "title", "detail"] {
        assert!(body[key].is_string(), "problem lacks {key}: {body}");
    }
    body
}

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let app = TestApp::builder().spawn().await;
    let body = problem(app.get("/api/nothing-here").await, 404).await;
    assert_eq!(body["type"], "/problems/not-found");
}

#[tokio::test]
async fn wrong_method_is_a_405_problem() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let resp = app
        .client
        .delete(app.url("/api/widgets"))
        .send()
        .await
        .expect("request");
    problem(resp, 405).await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_and_writes_nothing() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let resp = app
        .client
        .post(app.url("/api/widgets"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("request");
    problem(resp, 400).await;
    let n: i64 = app
        .conn()
        .query_row("SELECT count(*) FROM widgets", args![], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn invalid_fields_are_a_422_problem_naming_each_field() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let resp = app
        .client
        .post(app.url("/api/widgets"))
        .json(&json!({"name": "   "}))
        .send()
        .await
        .expect("request");
    let body = problem(resp, 422).await;
    assert_eq!(body["type"], "/problems/validation-error");
    assert_eq!(body["errors"][0]["field"], "name");
    assert!(body["errors"][0]["message"].is_string());
}

#[tokio::test]
async fn a_conflict_rolls_back_the_whole_transaction() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let create = |name: &'static str| {
        app.client
            .post(app.url("/api/widgets"))
            .json(&json!({ "name": name }))
            .send()
    };
    assert_eq!(create("one").await.expect("request").status().as_u16(), 200);
    problem(create("one").await.expect("request"), 409).await;
    // The event published inside the refused transaction enqueued nothing.
    let jobs: i64 = app
        .conn()
        .query_row("SELECT count(*) FROM jobs", args![], |r| r.get(0))
        .expect("count");
    assert_eq!(jobs, 1, "only the first widget's job exists");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = TestApp::builder()
        .var("PLINTH_BODY_LIMIT", "2048")
        .plugin(Widgets::default())
        .spawn()
        .await;
    let big = json!({ "name": "x".repeat(4096) });
    let resp = app
        .client
        .post(app.url("/api/widgets"))
        .json(&big)
        .send()
        .await
        .expect("request");
    problem(resp, 413).await;

    // Chunked bodies without Content-Length are limited while reading.
    let status = raw_chunked_post(&app, "/api/widgets", &[b"{\"name\":\"", &[b'y'; 4096], b"\"}"]).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    let small = app
        .client
        .post(app.url("/api/widgets"))
        .json(&json!({"name": "small"}))
        .send()
        .await
        .expect("request");
    assert_eq!(small.status().as_u16(), 200);
}

/// Sends a chunked POST over a raw socket; returns the status line.
async fn raw_chunked_post(app: &TestApp, path: &str, chunks: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    for chunk in chunks {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .expect("write");
        stream.write_all(chunk).await.expect("write");
        stream.write_all(b"\r\n").await.expect("write");
    }
    stream.write_all(b"0\r\n\r\n").await.expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_that_reveals_nothing() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    let resp = app.get("/api/widgets/panic").await;
    let body = problem(resp, 500).await;
    assert!(!body.to_string().contains("secret"), "{body}");
    // The server keeps serving.
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
}

#[tokio::test]
async fn bad_query_parameters_are_a_400_problem() {
    let app = TestApp::builder().plugin(Widgets::default()).spawn().await;
    problem(app.get("/api/widgets/slow?ms=soon").await, 400).await;
}

#[tokio::test]
async fn responses_carry_security_headers_and_a_request_id() {
    let app = TestApp::builder().spawn().await;
    let resp = app.get("/healthz").await;
    let h = resp.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'none'")
    );
    assert!(
        !h.contains_key("strict-transport-security"),
        "HSTS only in production"
    );
    let generated = h["x-request-id"].to_str().expect("id").to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.headers()["x-request-id"], "trace-abc.123");
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "has spaces")
        .send()
        .await
        .expect("request");
    assert_ne!(resp.headers()["x-request-id"], "has spaces");
}

#[tokio::test]
async fn cors_allows_the_app_url_only() {
    let app = TestApp::builder()
        .var("APP_URL", "https://app.example.com")
        .plugin(Widgets::default())
        .spawn()
        .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/widgets"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .expect("request");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    let allowed = app
        .client
        .get(app.url("/api/widgets"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    let evil = app
        .client
        .get(app.url("/api/widgets"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .expect("request");
    assert!(!evil.headers().contains_key("access-control-allow-origin"));
    problem(evil, 403).await;

    // Swagger UI calls the API from the server's own origin.
    let same_origin = app
        .client
        .post(app.url("/api/widgets"))
        .header("origin", format!("http://{}", app.addr))
        .json(&json!({"name": "from-docs"}))
        .send()
        .await
        .expect("request");
    assert_eq!(same_origin.status().as_u16(), 200);
}

/// True when the answer's Vary names Origin (once).
fn varies_on_origin(resp: &reqwest::Response) -> bool {
    let names: Vec<String> = resp
        .headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
        .collect();
    names.iter().filter(|n| *n == "origin").count() == 1
}

#[tokio::test]
async fn every_answer_that_depends_on_origin_says_vary_origin() {
    let app = TestApp::builder()
        .var("APP_URL", "https://app.example.com")
        .plugin(Widgets::default())
        .spawn()
        .await;
    let send = |method: reqwest::Method, path: &str, origin: Option<&str>| {
        let mut req = app.client.request(method, app.url(path));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let cases = [
        (
            reqwest::Method::GET,
            "/api/widgets",
            Some("https://app.example.com"),
        ),
        (
            reqwest::Method::GET,
            "/api/widgets",
            Some("https://evil.example.net"),
        ),
        (reqwest::Method::GET, "/api/widgets", None),
        (
            reqwest::Method::GET,
            "/api/auth/me",
            Some("https://app.example.com"),
        ),
        (reqwest::Method::GET, "/api/no-such-route", None),
        (reqwest::Method::GET, "/healthz", None),
        (reqwest::Method::GET, "/api/openapi.json", None),
        (reqwest::Method::GET, "/docs", None),
    ];
    for (method, path, origin) in cases {
        let resp = send(method.clone(), path, origin).await.expect("request");
        assert!(
            varies_on_origin(&resp),
            "{method} {path} from {origin:?}: {} {:?}",
            resp.status(),
            resp.headers().get_all("vary")
        );
    }
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/widgets"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("request");
    assert!(preflight.status().is_success());
    assert!(varies_on_origin(&preflight), "{:?}", preflight.headers());
}

#[tokio::test]
async fn production_sends_hsts() {
    let app = TestApp::builder()
        .var("PLINTH_ENV", "production")
        .var("SECRET_KEY", "0123456789abcdef0123456789abcdef-secret")
        .var("JWT_SECRET", "fedcba9876543210fedcba9876543210-jwt")
        .var("SMTP_URL", "smtp://127.0.0.1:2525")
        .var("APP_URL", "https://app.example.com")
        .spawn()
        .await;
    let resp = app.get("/healthz").await;
    assert!(
        resp.headers()["strict-transport-security"]
            .to_str()
            .expect("hsts")
            .contains("max-age=")
    );
}
