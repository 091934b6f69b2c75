//! The demo tenant as a fixture: Acme with its owner, admin, member and viewer, an
//! outsider who owns another org (Globex), and a stranger who belongs to none.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{post, register, tokens};
use crate::harness::{TestApp, TestAppBuilder};

pub const DEMO_PASSWORD: &str = "demo-password-1";
pub const PRINCIPALS: [&str; 6] = ["owner", "admin", "member", "viewer", "outsider", "stranger"];

pub struct Acme {
    pub app: TestApp,
    pub org: Uuid,
    pub globex: Uuid,
    tokens: HashMap<&'static str, String>,
    ids: HashMap<&'static str, Uuid>,
}

impl Acme {
    pub async fn start() -> Acme {
        Self::start_with(TestApp::builder()).await
    }

    pub async fn start_with(builder: TestAppBuilder) -> Acme {
        let app = builder.builtins().demo().spawn().await;
        register(&app, "outsider@example.com").await;
        let mut tokens_by = HashMap::new();
        for (who, email, password) in [
            ("owner", "owner@acme.test", DEMO_PASSWORD),
            ("admin", "admin@acme.test", DEMO_PASSWORD),
            ("member", "member@acme.test", DEMO_PASSWORD),
            ("viewer", "viewer@acme.test", DEMO_PASSWORD),
            ("stranger", "staff@plinth.test", DEMO_PASSWORD),
            ("outsider", "outsider@example.com", "a decent passphrase"),
        ] {
            tokens_by.insert(who, tokens(&app, email, password).await.0);
        }
        let mut acme = Acme {
            app,
            org: Uuid::nil(),
            globex: Uuid::nil(),
            tokens: tokens_by,
            ids: HashMap::new(),
        };
        for who in PRINCIPALS {
            let me = acme.send("GET", who, "/api/auth/me", None).await;
            acme.ids.insert(who, uuid_of(&me.1["id"]));
        }
        let orgs = acme.send("GET", "owner", "/api/orgs", None).await.1;
        acme.org = uuid_of(&orgs["items"][0]["id"]);
        let globex = acme
            .send("POST", "outsider", "/api/orgs", Some(json!({"name": "Globex"})))
            .await;
        assert_eq!(globex.0, StatusCode::CREATED);
        acme.globex = uuid_of(&globex.1["id"]);
        acme
    }

    pub fn token(&self, who: &str) -> &str {
        &self.tokens[who]
    }

    pub fn id(&self, who: &str) -> Uuid {
        self.ids[who]
    }

    /// Sends a request as `who` (a principal name); returns status and JSON body.
    pub async fn send(
        &self,
        method: &str,
        who: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("authorization", format!("Bearer {}", self.token(who)));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Creates an API key of Acme as `who` holding `permissions`; its whole text
    /// (`plk_<prefix>_<secret>`) and the answer.
    pub async fn api_key<S: serde::Serialize>(&self, who: &str, permissions: &[S]) -> (String, Value) {
        let (status, created) = self
            .send(
                "POST",
                who,
                &self.path("/api-keys"),
                Some(json!({"name": "test key", "permissions": permissions})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let key = created["key"].as_str().expect("key").to_string();
        (key, created)
    }

    /// Creates Acme's custom role `key` (named after it) as the owner.
    pub async fn create_role(&self, key: &str, permissions: &[&str]) {
        let (status, body) = self
            .send(
                "POST",
                "owner",
                &self.path("/roles"),
                Some(json!({"key": key, "name": key, "permissions": permissions})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Gives Acme's member `user` the role `role`, as the owner.
    pub async fn set_role(&self, user: Uuid, role: &str) {
        let (status, body) = self
            .send(
                "PATCH",
                "owner",
                &self.path(&format!("/members/{user}")),
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub fn path(&self, rest: &str) -> String {
        format!("/api/orgs/{}{rest}", self.org)
    }

    /// Invites `email` to Acme as a member, signs them up (verified) and accepts the
    /// invitation; returns their access token and id.
    pub async fn join(&self, email: &str) -> (String, Uuid) {
        let (status, invite) = self
            .send(
                "POST",
                "owner",
                &self.path("/invitations"),
                Some(json!({"email": email, "role": "member"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invite}");
        let token =
            crate::auth::outbox_token_path(&self.app, email, "invitations/").expect("invitation link");
        let access = verified_user(&self.app, email).await;
        let accepted = self
            .app
            .client
            .post(self.app.url(&format!("/api/invitations/{token}/accept")))
            .bearer_auth(&access)
            .send()
            .await
            .expect("accept");
        assert_eq!(accepted.status(), StatusCode::OK);
        let me = crate::auth::me_json(&self.app, &access).await;
        (access, uuid_of(&me["id"]))
    }
}

pub fn uuid_of(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).expect("uuid")
}

/// Registers, verifies (through the outbox) and logs in a new user.
pub async fn verified_user(app: &TestApp, email: &str) -> String {
    register(app, email).await;
    let token = crate::auth::outbox_token(app, email, "verify-email").expect("verification link");
    let resp = post(app, "/api/auth/verify-email", json!({ "token": token })).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    tokens(app, email, "a decent passphrase").await.0
}
