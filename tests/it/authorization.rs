//! Authorization comes before validation: a caller who may not use an operation
//! hears 401, 403 or 404 whatever its parameters or body, so a refusal reveals
//! nothing about the operation's shape. Every operation of the served document is
//! called with placeholder path parameters, no query and no body.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::acme::Acme;
use crate::attacks::fingerprint;

/// Operations a viewer may call (on their own membership), so their refusal of
/// others is not a rank check made before reading the target.
const VIEWER_MAY_CALL: [&str; 2] = ["removeMember", "leaveOrg"];

struct Operation {
    method: Method,
    template: String,
    id: String,
    public: bool,
}

async fn operations(acme: &Acme) -> Vec<Operation> {
    let spec: Value = acme.app.served_spec().await;
    let mut ops = Vec::new();
    for (template, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            ops.push(Operation {
                method: m,
                template: template.clone(),
                id: op["operationId"].as_str().unwrap_or_default().to_string(),
                public: op["security"].as_array().is_some_and(Vec::is_empty),
            });
        }
    }
    assert!(ops.len() > 60, "the document lists the operations");
    ops
}

/// The template with `org_id` set (when given) and every other parameter "x".
fn fill(template: &str, org: Option<&str>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let name = &rest[open + 1..close];
        out.push_str(match (name, org) {
            ("org_id", Some(org)) => org,
            _ => "x",
        });
        rest = &rest[(close + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

async fn call(acme: &Acme, op: &Operation, path: &str, who: Option<&str>) -> (StatusCode, Value) {
    let mut req = acme.app.client.request(op.method.clone(), acme.app.url(path));
    if let Some(who) = who {
        req = req.bearer_auth(acme.token(who));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn expect(op: &Operation, who: &str, got: (StatusCode, Value), want: StatusCode, failures: &mut Vec<String>) {
    let (status, body) = got;
    let problem = body["type"].as_str().is_some_and(|t| t.starts_with("/problems/"));
    if status != want || !problem {
        failures.push(format!(
            "{} {} ({}) as {who}: {status} {body}, expected {want}",
            op.method, op.template, op.id
        ));
    }
}

#[tokio::test]
async fn refusals_come_before_any_parameter_or_body_is_read() {
    let acme = Acme::start().await;
    let conn = acme.app.conn();
    let before = fingerprint(&conn);
    let org = acme.org.to_string();
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in operations(&acme).await {
        if op.public {
            continue;
        }
        // Nobody: 401, for every protected operation.
        let got = call(&acme, &op, &fill(&op.template, Some(&org)), None).await;
        expect(&op, "nobody", got, StatusCode::UNAUTHORIZED, &mut failures);
        checked += 1;
        if op.template.starts_with("/api/admin/") {
            // Members of orgs are not staff: 403, parameters or not.
            for who in ["owner", "member"] {
                let got = call(&acme, &op, &fill(&op.template, Some(&org)), Some(who)).await;
                expect(&op, who, got, StatusCode::FORBIDDEN, &mut failures);
                checked += 1;
            }
        }
        if op.template.starts_with("/api/orgs/{org_id}") {
            // Not a member (even platform staff): 404, for a real org and for
            // something that is not an org id at all.
            for (who, org) in [
                ("outsider", org.as_str()),
                ("stranger", org.as_str()),
                ("outsider", "x"),
            ] {
                let got = call(&acme, &op, &fill(&op.template, Some(org)), Some(who)).await;
                expect(&op, who, got, StatusCode::NOT_FOUND, &mut failures);
                checked += 1;
            }
            // A viewer changes nothing: 403 before the body is read.
            if op.method != Method::GET && !VIEWER_MAY_CALL.contains(&op.id.as_str()) {
                let got = call(&acme, &op, &fill(&op.template, Some(&org)), Some("viewer")).await;
                expect(&op, "viewer", got, StatusCode::FORBIDDEN, &mut failures);
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} refusals came after validation or not at all:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 150, "{checked} refusals checked");
    assert_eq!(fingerprint(&conn), before, "a refused call changed the database");
}
