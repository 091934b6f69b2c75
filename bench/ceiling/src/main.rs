//! The ceiling server of `bench/run.sh`: poem answering Plinth's benchmarked paths
//! with the very bodies Plinth returned (read from a JSON file), with no auth, no
//! tenant context and no database. Plinth's throughput divided by this one's is
//! the share of the framework's ceiling Plinth reaches on this machine.
//!
//! Usage: `ceiling ADDR BODIES.json`, where the file maps `me`, `members`, `flags`
//! and `usage` to response bodies.

use std::collections::HashMap;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::{Data, Path};
use poem::{Body, EndpointExt, Response, Route, Server, get, handler, post};

type Bodies = Arc<HashMap<String, String>>;

fn json(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

fn body_of(bodies: &Bodies, key: &str) -> String {
    bodies.get(key).cloned().unwrap_or_else(|| "{}".into())
}

#[handler]
fn me(bodies: Data<&Bodies>) -> Response {
    json(StatusCode::OK, &body_of(bodies.0, "me"))
}

#[handler]
fn members(_org: Path<String>, bodies: Data<&Bodies>) -> Response {
    json(StatusCode::OK, &body_of(bodies.0, "members"))
}

#[handler]
fn flags(_org: Path<String>, bodies: Data<&Bodies>) -> Response {
    json(StatusCode::OK, &body_of(bodies.0, "flags"))
}

#[handler]
async fn usage(_org: Path<String>, body: Body, bodies: Data<&Bodies>) -> Response {
    // Read the request as Plinth must.
    let _ = body.into_bytes().await;
    json(StatusCode::CREATED, &body_of(bodies.0, "usage"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: ceiling ADDR BODIES.json");
        std::process::exit(2);
    };
    let bodies: HashMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(file)?).map_err(std::io::Error::other)?;
    let app = Route::new()
        .at("/api/auth/me", get(me))
        .at("/api/orgs/:org/members", get(members))
        .at("/api/orgs/:org/flags", get(flags))
        .at("/api/orgs/:org/usage", post(usage))
        .data(Arc::new(bodies));
    Server::new(TcpListener::bind(addr)).run(app).await
}
