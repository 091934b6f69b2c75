//! The auth API under /api/auth: registration, login, refresh, logout, the current
//! user, password change and reset, email verification, sessions.
//!
//! Nothing here reveals whether an account exists: registration and reset requests
//! answer the same for known and unknown emails, and a login for an unknown email
//! spends the time of a password check.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::{AuditEntry, record};
use crate::error::{Error, FieldError, Result};
use crate::http::ClientInfo;
use crate::http::pagination::Page;
use crate::http::rendered::Rendered;
use crate::identity::auth::{BearerAuth, TokenType};
use crate::identity::passwords::DEMO_PASSWORD;
use crate::identity::sessions::{self, Rotation, reason};
use crate::identity::tokens::{self, Purpose};
use crate::identity::{passwords, users};
use crate::platform::JobHandler;
use crate::platform::Platform;
use crate::runtime::cache::Cache;
use crate::runtime::mail::Template;

const PASSWORD_RESET_JOB: &str = "auth.password_reset";

#[derive(Tags)]
enum AuthTag {
    /// Accounts, sessions and tokens.
    Auth,
}

#[derive(Object)]
#[oai(example)]
struct RegisterRequest {
    email: String,
    password: String,
    name: String,
}

impl Example for RegisterRequest {
    fn example() -> Self {
        RegisterRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
            name: "Ada Lovelace".into(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
struct LoginRequest {
    email: String,
    password: String,
}

impl Example for LoginRequest {
    fn example() -> Self {
        LoginRequest {
            email: "owner@acme.test".into(),
            password: "demo-password-1".into(),
        }
    }
}

#[derive(Object)]
#[oai(example)]
struct RefreshRequest {
    /// The refresh token from the last login or refresh; each works once.
    refresh_token: String,
}

#[derive(Object)]
#[oai(example)]
struct TokenRequest {
    /// The token from the emailed link.
    token: String,
}

#[derive(Object)]
#[oai(example)]
struct EmailRequest {
    email: String,
}

#[derive(Object)]
#[oai(example)]
struct ResetConfirmRequest {
    /// The token from the emailed link.
    token: String,
    new_password: String,
}

#[derive(Object)]
#[oai(example)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

#[derive(Object)]
#[oai(example)]
struct UpdateMeRequest {
    name: Option<String>,
}

/// Profiles are dropped on every change to `users` (see `changes`); this bounds
/// how long a change made outside the server (the CLI) goes unseen.
const PROFILE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// An account.
#[derive(Object)]
pub struct UserView {
    id: Uuid,
    email: String,
    name: String,
    email_verified: bool,
    is_platform_admin: bool,
    created_at: OffsetDateTime,
}

impl UserView {
    fn from_user(user: users::User) -> Result<Self> {
        Ok(UserView {
            id: user.id,
            email: user.email,
            name: user.name,
            email_verified: user.email_verified,
            is_platform_admin: user.is_platform_admin,
            created_at: parse_time(&user.created_at)?,
        })
    }
}

#[derive(Object)]
struct TokenResponse {
    /// A JWT for `Authorization: Bearer`.
    access_token: String,
    /// Opaque; exchange it at /api/auth/refresh before the session's idle timeout.
    refresh_token: String,
    token_type: TokenType,
    /// Seconds until the access token expires.
    expires_in: u64,
    user: UserView,
}

#[derive(Object)]
struct Accepted {
    detail: String,
}

/// A live session of the caller.
#[derive(Object)]
struct SessionView {
    id: Uuid,
    created_at: OffsetDateTime,
    last_used_at: OffsetDateTime,
    ip: Option<String>,
    user_agent: Option<String>,
    /// When it ends unless refreshed (idle timeout) or at the latest (lifetime).
    expires_at: OffsetDateTime,
    /// True for the session of the token making this request.
    current: bool,
}

#[derive(Object)]
struct SessionPage {
    items: Vec<SessionView>,
    next_cursor: Option<String>,
}

#[derive(ApiResponse)]
enum AcceptedResponse {
    /// Accepted; the outcome arrives by email.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(Error::internal)
}

fn millis_to_time(ms: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(Error::internal)
}

fn invalid_credentials() -> Error {
    Error::Unauthorized("invalid email or password".into())
}

fn bad_token() -> Error {
    Error::invalid("token", "is invalid, expired or already used")
}

fn link(platform: &Platform, page: &str, token: &str) -> String {
    // Always APP_URL: a link built from the request's Host header could be pointed
    // at an attacker's site.
    format!("{}/{page}?token={token}", platform.config().app_url)
}

#[derive(Clone)]
pub(crate) struct AuthApi {
    platform: Platform,
    /// `GET /me` answers, rendered, by user.
    profiles: Cache<Uuid, Rendered<UserView>>,
}

impl AuthApi {
    pub(crate) fn new(platform: Platform) -> Self {
        let profiles = platform.table_cache("profiles", 100_000, PROFILE_TTL, &["users"]);
        AuthApi { platform, profiles }
    }

    async fn user_view(&self, id: Uuid) -> Result<UserView> {
        let user = self
            .platform
            .db()
            .call(move |conn| users::get(conn, id))
            .await?
            .ok_or_else(|| Error::Unauthorized("the account no longer exists".into()))?;
        UserView::from_user(user)
    }

    async fn tokens_for(&self, user: Uuid, session: Uuid, refresh: String) -> Result<Json<TokenResponse>> {
        let (access_token, expires_in) = self.platform.identity().jwt().issue(user, session, None, None)?;
        Ok(Json(TokenResponse {
            access_token,
            refresh_token: refresh,
            token_type: TokenType::Bearer,
            expires_in,
            user: self.user_view(user).await?,
        }))
    }

    async fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.platform
            .db()
            .write(move |tx| record(tx, &entry).map(|_| ()))
            .await
    }

    async fn forget(&self, sessions: &[Uuid]) {
        for s in sessions {
            self.platform.identity().forget_session(*s).await;
        }
    }
}

fn check_new_password(field: &str, password: &str, errors: &mut Vec<FieldError>) {
    if let Some(message) = passwords::policy_violation(password) {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    }
}

#[OpenApi(prefix_path = "/api/auth", tag = "AuthTag::Auth")]
impl AuthApi {
    /// Register an account
    ///
    /// Sends a verification email. The answer is the same whether or not the email
    /// already has an account (its owner is emailed instead), so registration cannot
    /// be used to discover accounts.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(&self, client: ClientInfo, body: Json<RegisterRequest>) -> Result<AcceptedResponse> {
        let RegisterRequest {
            email,
            password,
            name,
        } = body.0;
        let email = users::normalize_email(&email);
        let mut errors = Vec::new();
        if !users::valid_email(&email) {
            errors.push(FieldError {
                field: "email".into(),
                message: "is not a valid email address".into(),
            });
        }
        if let Some(message) = users::name_violation(&name) {
            errors.push(FieldError {
                field: "name".into(),
                message: message.into(),
            });
        }
        check_new_password("password", &password, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let identity = self.platform.identity();
        identity.limit("register", client.ip, Some(&email)).await?;
        let hash = identity.hasher().hash(password).await?;
        let platform = self.platform.clone();
        self.platform
            .db()
            .write(move |tx| {
                let config = platform.config();
                if let Some(existing) = users::credentials_by_email(tx, &email)? {
                    let mail = Template::AccountExists.render(
                        &email,
                        &[
                            ("name", &existing.name),
                            ("link", &format!("{}/forgot-password", config.app_url)),
                        ],
                    );
                    platform.mailer().send(tx, platform.jobs(), &mail)?;
                    return Ok(());
                }
                let id = users::create(
                    tx,
                    &users::NewUser {
                        email: &email,
                        name: &name,
                        password_hash: &hash,
                        is_platform_admin: false,
                        email_verified: false,
                    },
                )?;
                let token = tokens::issue(tx, &config.secret_key, id, Purpose::VerifyEmail)?;
                let mail = Template::VerifyEmail.render(
                    &email,
                    &[
                        ("name", name.trim()),
                        ("link", &link(&platform, "verify-email", &token)),
                    ],
                );
                platform.mailer().send(tx, platform.jobs(), &mail)?;
                record(
                    tx,
                    &AuditEntry::new("auth.register")
                        .actor(id)
                        .target("user", id)
                        .client(&client),
                )?;
                Ok(())
            })
            .await?;
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "check your inbox for a link to confirm your email address".into(),
        })))
    }

    /// Log in
    ///
    /// Opens a session and returns an access token and a refresh token.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(&self, client: ClientInfo, body: Json<LoginRequest>) -> Result<Json<TokenResponse>> {
        let LoginRequest { email, password } = body.0;
        let email = users::normalize_email(&email);
        let identity = self.platform.identity().clone();
        identity.limit("login", client.ip, Some(&email)).await?;
        if self.platform.config().is_production() && password == DEMO_PASSWORD {
            // Demo accounts have public credentials; a database seeded in development
            // must not open them in production.
            return Err(invalid_credentials());
        }
        let lookup = email.clone();
        let creds = self
            .platform
            .db()
            .call(move |conn| users::credentials_by_email(conn, &lookup))
            .await?;
        let Some(creds) = creds else {
            identity.verify_nothing(password).await?;
            self.audit(
                AuditEntry::new("auth.login_failed")
                    .client(&client)
                    .details(json!({ "reason": "unknown_email" }))
                    .personal(json!({ "email": email })),
            )
            .await?;
            return Err(invalid_credentials());
        };
        let ok = identity
            .hasher()
            .verify(password.clone(), creds.password_hash.clone())
            .await?;
        if !ok {
            self.audit(
                AuditEntry::new("auth.login_failed")
                    .actor(creds.id)
                    .target("user", creds.id)
                    .client(&client)
                    .details(json!({ "reason": "wrong_password" })),
            )
            .await?;
            return Err(invalid_credentials());
        }
        if creds.disabled {
            self.audit(
                AuditEntry::new("auth.login_failed")
                    .actor(creds.id)
                    .target("user", creds.id)
                    .client(&client)
                    .details(json!({ "reason": "disabled" })),
            )
            .await?;
            return Err(Error::Forbidden("this account is disabled".into()));
        }
        let rehashed = if passwords::needs_rehash(&creds.password_hash) {
            Some(identity.hasher().hash(password).await?)
        } else {
            None
        };
        let platform = self.platform.clone();
        let user = creds.id;
        let (session, refresh) = self
            .platform
            .db()
            .write(move |tx| {
                if let Some(hash) = &rehashed {
                    users::store_password_hash(tx, user, hash)?;
                }
                let (session, refresh) = sessions::create(tx, platform.config(), user, &client)?;
                record(
                    tx,
                    &AuditEntry::new("auth.login")
                        .actor(user)
                        .target("session", session)
                        .client(&client)
                        .details(json!({ "rehashed": rehashed.is_some() })),
                )?;
                Ok((session, refresh))
            })
            .await?;
        self.tokens_for(user, session, refresh).await
    }

    /// Refresh the tokens
    ///
    /// Exchanges a refresh token for a new access token and a new refresh token.
    /// Each refresh token works once: presenting a used one again revokes its session.
    #[oai(path = "/refresh", method = "post", operation_id = "refreshTokens")]
    async fn refresh(&self, client: ClientInfo, body: Json<RefreshRequest>) -> Result<Json<TokenResponse>> {
        let platform = self.platform.clone();
        let token = body.0.refresh_token;
        let outcome = self
            .platform
            .db()
            .write(move |tx| {
                let outcome = sessions::rotate(tx, platform.config(), &token, &client)?;
                if let Rotation::Reused { session, user } = &outcome {
                    record(
                        tx,
                        &AuditEntry::new("session.revoked")
                            .actor(*user)
                            .target("session", session)
                            .client(&client)
                            .details(json!({ "reason": reason::REFRESH_REUSE })),
                    )?;
                }
                Ok(outcome)
            })
            .await?;
        match outcome {
            Rotation::Rotated {
                session,
                user,
                refresh,
            } => self.tokens_for(user, session, refresh).await,
            Rotation::Reused { session, .. } => {
                self.forget(&[session]).await;
                Err(Error::Unauthorized(
                    "this refresh token was already used; the session has been revoked".into(),
                ))
            }
            Rotation::Invalid => Err(Error::Unauthorized(
                "the refresh token is invalid or expired".into(),
            )),
        }
    }

    /// Log out
    ///
    /// Revokes the current session: its access and refresh tokens stop working at once.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, auth: BearerAuth, client: ClientInfo) -> Result<NoContent> {
        let p = auth.0;
        self.platform
            .db()
            .write(move |tx| {
                sessions::revoke(tx, p.session_id, reason::LOGOUT)?;
                record(
                    tx,
                    &AuditEntry::new("auth.logout")
                        .actor(p.user_id)
                        .target("session", p.session_id)
                        .client(&client),
                )?;
                Ok(())
            })
            .await?;
        self.forget(&[p.session_id]).await;
        Ok(NoContent::Done)
    }

    /// The current user
    #[oai(path = "/me", method = "get", operation_id = "getMe")]
    async fn me(&self, auth: BearerAuth) -> Result<Rendered<UserView>> {
        let user = auth.0.user_id;
        self.profiles
            .get_or_load(
                user,
                || async move { Ok(Rendered::new(&self.user_view(user).await?)) },
            )
            .await
    }

    /// Update the current user
    ///
    /// Only the name can change here.
    #[oai(path = "/me", method = "patch", operation_id = "updateMe")]
    async fn update_me(&self, auth: BearerAuth, body: Json<UpdateMeRequest>) -> Result<Json<UserView>> {
        let user = auth.0.user_id;
        if let Some(name) = body.0.name {
            if let Some(message) = users::name_violation(&name) {
                return Err(Error::invalid("name", message));
            }
            let name = name.trim().to_string();
            self.platform
                .db()
                .write(move |tx| users::set_name(tx, user, &name))
                .await?;
        }
        Ok(Json(self.user_view(user).await?))
    }

    /// Change the password
    ///
    /// Requires the current password; every other session of the user is revoked.
    #[oai(path = "/password/change", method = "post", operation_id = "changePassword")]
    async fn change_password(
        &self,
        auth: BearerAuth,
        client: ClientInfo,
        body: Json<ChangePasswordRequest>,
    ) -> Result<NoContent> {
        let p = auth.0;
        if p.impersonator.is_some() {
            return Err(Error::Forbidden(
                "an impersonation session cannot change the password".into(),
            ));
        }
        let ChangePasswordRequest {
            current_password,
            new_password,
        } = body.0;
        let mut errors = Vec::new();
        check_new_password("new_password", &new_password, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let identity = self.platform.identity().clone();
        identity
            .limit("password_change", client.ip, Some(&p.user_id.to_string()))
            .await?;
        let user = p.user_id;
        let creds = self
            .platform
            .db()
            .call(move |conn| users::credentials_by_id(conn, user))
            .await?
            .ok_or_else(|| Error::Unauthorized("the account no longer exists".into()))?;
        if !identity
            .hasher()
            .verify(current_password, creds.password_hash)
            .await?
        {
            self.audit(
                AuditEntry::new("auth.password_change_failed")
                    .actor(user)
                    .target("user", user)
                    .client(&client),
            )
            .await?;
            return Err(Error::invalid("current_password", "is incorrect"));
        }
        let hash = identity.hasher().hash(new_password).await?;
        let revoked = self
            .platform
            .db()
            .write(move |tx| {
                users::replace_password(tx, user, &hash)?;
                let revoked = sessions::revoke_all(tx, user, Some(p.session_id), reason::PASSWORD_CHANGED)?;
                record(
                    tx,
                    &AuditEntry::new("auth.password_changed")
                        .actor(user)
                        .target("user", user)
                        .client(&client)
                        .details(json!({ "sessions_revoked": revoked.len() })),
                )?;
                Ok(revoked)
            })
            .await?;
        self.forget(&revoked).await;
        Ok(NoContent::Done)
    }

    /// Confirm an email address
    ///
    /// Redeems the token from the verification email (single use, 24 hours).
    #[oai(path = "/verify-email", method = "post", operation_id = "verifyEmail")]
    async fn verify_email(&self, client: ClientInfo, body: Json<TokenRequest>) -> Result<NoContent> {
        self.platform
            .identity()
            .limit("verify_email", client.ip, None)
            .await?;
        let platform = self.platform.clone();
        let token = body.0.token;
        let user = self
            .platform
            .db()
            .write(move |tx| {
                let user = tokens::redeem(tx, &platform.config().secret_key, &token, Purpose::VerifyEmail)?
                    .ok_or_else(bad_token)?;
                users::mark_verified(tx, user)?;
                record(
                    tx,
                    &AuditEntry::new("auth.email_verified")
                        .actor(user)
                        .target("user", user)
                        .client(&client),
                )?;
                Ok(user)
            })
            .await?;
        self.platform.identity().forget_user(user);
        Ok(NoContent::Done)
    }

    /// Send the verification email again
    ///
    /// Earlier links stop working.
    #[oai(
        path = "/verify-email/resend",
        method = "post",
        operation_id = "resendVerificationEmail"
    )]
    async fn resend_verification(&self, auth: BearerAuth, client: ClientInfo) -> Result<AcceptedResponse> {
        let p = auth.0;
        self.platform
            .identity()
            .limit("resend", client.ip, Some(&p.user_id.to_string()))
            .await?;
        let platform = self.platform.clone();
        self.platform
            .db()
            .write(move |tx| {
                let user = users::get(tx, p.user_id)?
                    .ok_or_else(|| Error::Unauthorized("the account no longer exists".into()))?;
                if user.email_verified {
                    return Err(Error::Conflict("this email address is already verified".into()));
                }
                let token = tokens::issue(tx, &platform.config().secret_key, user.id, Purpose::VerifyEmail)?;
                let mail = Template::VerifyEmail.render(
                    &user.email,
                    &[
                        ("name", &user.name),
                        ("link", &link(&platform, "verify-email", &token)),
                    ],
                );
                platform.mailer().send(tx, platform.jobs(), &mail)?;
                record(
                    tx,
                    &AuditEntry::new("auth.verification_resent")
                        .actor(user.id)
                        .target("user", user.id)
                        .client(&client),
                )?;
                Ok(())
            })
            .await?;
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "a new verification email is on its way".into(),
        })))
    }

    /// Ask for a password reset
    ///
    /// Always answers 202 with the same body; when the account exists, a reset link
    /// (single use, 1 hour) is emailed to it.
    #[oai(
        path = "/password-reset",
        method = "post",
        operation_id = "requestPasswordReset"
    )]
    async fn password_reset(&self, client: ClientInfo, body: Json<EmailRequest>) -> Result<AcceptedResponse> {
        let email = users::normalize_email(&body.0.email);
        if !users::valid_email(&email) {
            return Err(Error::invalid("email", "is not a valid email address"));
        }
        self.platform
            .identity()
            .limit("password_reset", client.ip, Some(&email))
            .await?;
        // The same work for known and unknown emails: the lookup happens in a job.
        let platform = self.platform.clone();
        let ip = client.ip.to_string();
        self.platform
            .db()
            .write(move |tx| enqueue_password_reset(tx, platform.jobs(), &email, &ip))
            .await?;
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "if an account exists for this address, a reset link is on its way".into(),
        })))
    }

    /// Set a new password with a reset token
    ///
    /// Every session of the user is revoked.
    #[oai(
        path = "/password-reset/confirm",
        method = "post",
        operation_id = "confirmPasswordReset"
    )]
    async fn password_reset_confirm(
        &self,
        client: ClientInfo,
        body: Json<ResetConfirmRequest>,
    ) -> Result<NoContent> {
        let ResetConfirmRequest { token, new_password } = body.0;
        let mut errors = Vec::new();
        check_new_password("new_password", &new_password, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        self.platform
            .identity()
            .limit("password_reset_confirm", client.ip, None)
            .await?;
        let hash = self.platform.identity().hasher().hash(new_password).await?;
        let platform = self.platform.clone();
        let (user, revoked) = self
            .platform
            .db()
            .write(move |tx| {
                let user = tokens::redeem(tx, &platform.config().secret_key, &token, Purpose::PasswordReset)?
                    .ok_or_else(bad_token)?;
                users::replace_password(tx, user, &hash)?;
                // The reset link proved control of the inbox.
                users::mark_verified(tx, user)?;
                let revoked = sessions::revoke_all(tx, user, None, reason::PASSWORD_RESET)?;
                record(
                    tx,
                    &AuditEntry::new("auth.password_reset")
                        .actor(user)
                        .target("user", user)
                        .client(&client)
                        .details(json!({ "sessions_revoked": revoked.len() })),
                )?;
                Ok((user, revoked))
            })
            .await?;
        self.forget(&revoked).await;
        self.platform.identity().forget_user(user);
        Ok(NoContent::Done)
    }

    /// List my sessions
    ///
    /// Live sessions, newest first; `current` marks the one making this request.
    #[oai(path = "/sessions", method = "get", operation_id = "listSessions")]
    async fn list_sessions(
        &self,
        auth: BearerAuth,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<SessionPage>> {
        let p = auth.0;
        let page = Page::parse(limit.0, cursor.0)?;
        let user = p.user_id;
        let rows = self
            .platform
            .db()
            .call(move |conn| sessions::list(conn, user, page.fetch(), page.after))
            .await?;
        let (rows, next_cursor) = page.finish(rows, |r| r.id);
        let items = rows
            .into_iter()
            .map(|r| {
                Ok(SessionView {
                    current: r.id == p.session_id,
                    id: r.id,
                    created_at: parse_time(&r.created_at)?,
                    last_used_at: parse_time(&r.last_used_at)?,
                    ip: r.ip,
                    user_agent: r.user_agent,
                    expires_at: millis_to_time(r.expires_at)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Json(SessionPage { items, next_cursor }))
    }

    /// Revoke one of my sessions
    #[oai(path = "/sessions/:id", method = "delete", operation_id = "revokeSession")]
    async fn revoke_session(
        &self,
        auth: BearerAuth,
        client: ClientInfo,
        id: Path<Uuid>,
    ) -> Result<NoContent> {
        let p = auth.0;
        let session = id.0;
        self.platform
            .db()
            .write(move |tx| {
                let owned =
                    sessions::status(tx, session)?.is_some_and(|s| s.user_id == p.user_id && !s.revoked);
                if !owned || !sessions::revoke(tx, session, reason::REVOKED_BY_USER)? {
                    return Err(Error::NotFound("no such session".into()));
                }
                record(
                    tx,
                    &AuditEntry::new("session.revoked")
                        .actor(p.user_id)
                        .target("session", session)
                        .client(&client)
                        .details(json!({ "reason": reason::REVOKED_BY_USER })),
                )?;
                Ok(())
            })
            .await?;
        self.forget(&[session]).await;
        Ok(NoContent::Done)
    }
}

/// Asks for a reset link to be emailed to `email` (if it has an account), in the
/// caller's transaction.
pub fn enqueue_password_reset(
    tx: &impl crate::storage::sql::Handle,
    jobs: &crate::runtime::jobs::Jobs,
    email: &str,
    ip: &str,
) -> Result<()> {
    jobs.enqueue(tx, PASSWORD_RESET_JOB, &json!({ "email": email, "ip": ip }))?;
    Ok(())
}

/// The job behind POST /password-reset: emails a reset link when the account exists.
pub(crate) fn password_reset_job() -> JobHandler {
    JobHandler::new(PASSWORD_RESET_JOB, |ctx| async move {
        let email = ctx.payload["email"].as_str().unwrap_or_default().to_string();
        let ip = ctx.payload["ip"].as_str().unwrap_or_default().to_string();
        let platform = ctx.platform.clone();
        ctx.platform
            .db()
            .write(move |tx| {
                let Some(creds) = users::credentials_by_email(tx, &email)? else {
                    return Ok(());
                };
                if creds.disabled {
                    return Ok(());
                }
                let token = tokens::issue(
                    tx,
                    &platform.config().secret_key,
                    creds.id,
                    Purpose::PasswordReset,
                )?;
                let mail = Template::PasswordReset.render(
                    &email,
                    &[
                        ("name", &creds.name),
                        ("link", &link(&platform, "reset-password", &token)),
                    ],
                );
                platform.mailer().send(tx, platform.jobs(), &mail)?;
                record(
                    tx,
                    &AuditEntry::new("auth.password_reset_requested")
                        .actor(creds.id)
                        .target("user", creds.id)
                        .personal(json!({ "ip": ip })),
                )?;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())
    })
}

impl poem_openapi::types::Example for RefreshRequest {
    fn example() -> Self {
        RefreshRequest {
            refresh_token: "3f1c...a9".into(),
        }
    }
}

impl poem_openapi::types::Example for TokenRequest {
    fn example() -> Self {
        TokenRequest {
            token: "5b2e...c7".into(),
        }
    }
}

impl poem_openapi::types::Example for EmailRequest {
    fn example() -> Self {
        EmailRequest {
            email: "ada@example.com".into(),
        }
    }
}

impl poem_openapi::types::Example for ResetConfirmRequest {
    fn example() -> Self {
        ResetConfirmRequest {
            token: "5b2e...c7".into(),
            new_password: "a new long passphrase".into(),
        }
    }
}

impl poem_openapi::types::Example for ChangePasswordRequest {
    fn example() -> Self {
        ChangePasswordRequest {
            current_password: "correct horse battery staple".into(),
            new_password: "a new long passphrase".into(),
        }
    }
}

impl poem_openapi::types::Example for UpdateMeRequest {
    fn example() -> Self {
        UpdateMeRequest {
            name: Some("Ada King".into()),
        }
    }
}
