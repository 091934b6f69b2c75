//! /api/orgs/{org_id}/api-keys: the org's API keys (service accounts).
//!
//! A key carries a subset of its creator's permissions (never an owner power), is
//! shown once, and belongs to the org: it outlives its creator's membership.
//! Creation and revocation are audited; so is every request a key makes that may
//! change something (core's org access, actor `api_key:<id>`).

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::http::pagination::Page;
use plinth_core::storage::db::now_millis;
use plinth_core::tenancy::api_keys::{self, ApiKey, NewKey};
use plinth_core::{Error, FieldError, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::access::ManageApiKeys;
use crate::api::{NoContent, TeamsApi, TeamsTag, parse_time};

#[derive(Clone)]
pub(crate) struct ApiKeysApi(pub TeamsApi);

/// An API key as its org lists it (never its secret).
#[derive(Object)]
struct ApiKeyView {
    id: Uuid,
    name: String,
    /// Identifies the key (`plk_<prefix>_...`) in logs and lists.
    prefix: String,
    permissions: Vec<String>,
    /// Who created it: a user's id, or `api_key:<id>`.
    created_by: String,
    expires_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    /// Within a minute or so: uses are recorded in batches, not per request.
    last_used_at: Option<OffsetDateTime>,
}

#[derive(Object)]
struct ApiKeyPage {
    items: Vec<ApiKeyView>,
    next_cursor: Option<String>,
}

/// A new key: the only time its secret is shown.
#[derive(Object)]
struct CreatedKeyView {
    id: Uuid,
    name: String,
    prefix: String,
    /// `plk_<prefix>_<secret>`: use it as `Authorization: Bearer <key>`. Shown once.
    key: String,
    permissions: Vec<String>,
    expires_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

#[derive(Object)]
#[oai(example)]
struct CreateKeyRequest {
    name: String,
    /// Permission keys, each held by the caller; owner powers are refused.
    permissions: Vec<String>,
    /// When it stops working; never when absent.
    expires_at: Option<OffsetDateTime>,
}

impl Example for CreateKeyRequest {
    fn example() -> Self {
        CreateKeyRequest {
            name: "usage reporter".into(),
            permissions: vec!["usage:record".into()],
            expires_at: None,
        }
    }
}

#[derive(ApiResponse)]
enum CreatedKey {
    /// Created; `key` is shown this once.
    #[oai(status = 201)]
    Key(Json<CreatedKeyView>),
}

const MAX_NAME: usize = 100;

fn time_of(text: Option<&str>) -> Result<Option<OffsetDateTime>> {
    text.map(parse_time).transpose()
}

impl ApiKeysApi {
    fn view(&self, key: ApiKey) -> Result<ApiKeyView> {
        // This node's uses since its last flush are newer than the stored time.
        let last_used = self
            .0
            .platform
            .tenancy()
            .api_keys()
            .used_since_flush(key.id)
            .or(key.last_used_at);
        Ok(ApiKeyView {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            permissions: key.permissions.to_vec(),
            created_by: key.created_by,
            expires_at: time_of(key.expires_at.as_deref())?,
            created_at: parse_time(&key.created_at)?,
            last_used_at: time_of(last_used.as_deref())?,
        })
    }
}

#[OpenApi(tag = "TeamsTag::ApiKeys")]
impl ApiKeysApi {
    /// List API keys
    ///
    /// Oldest first, without their secrets.
    #[oai(
        path = "/api/orgs/:org_id/api-keys",
        method = "get",
        operation_id = "listApiKeys"
    )]
    async fn list(
        &self,
        access: ManageApiKeys,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<ApiKeyPage>> {
        let page = Page::parse(limit.0, cursor.0)?;
        let rows = access
            .0
            .db()
            .call(move |conn| api_keys::list(conn, page.fetch(), page.after))
            .await?;
        let (rows, next_cursor) = page.finish(rows, |k| k.id);
        let items = rows.into_iter().map(|k| self.view(k)).collect::<Result<_>>()?;
        Ok(Json(ApiKeyPage { items, next_cursor }))
    }

    /// Create an API key
    ///
    /// With a subset of the caller's permissions. The whole key is in this answer
    /// only; it is stored as a keyed hash.
    #[oai(
        path = "/api/orgs/:org_id/api-keys",
        method = "post",
        operation_id = "createApiKey"
    )]
    async fn create(
        &self,
        access: ManageApiKeys,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        body: Json<CreateKeyRequest>,
    ) -> Result<CreatedKey> {
        let tenant = access.0;
        let CreateKeyRequest {
            name,
            permissions,
            expires_at,
        } = body.0;
        let name = name.trim().to_string();
        let mut errors = Vec::new();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            errors.push(FieldError {
                field: "name".into(),
                message: format!("must be 1 to {MAX_NAME} characters"),
            });
        }
        if permissions.is_empty() {
            errors.push(FieldError {
                field: "permissions".into(),
                message: "name at least one permission".into(),
            });
        }
        let expires = match expires_at {
            Some(at) => {
                let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                if ms <= now_millis() {
                    errors.push(FieldError {
                        field: "expires_at".into(),
                        message: "must be in the future".into(),
                    });
                }
                Some((at.format(&Rfc3339).map_err(Error::internal)?, ms))
            }
            None => None,
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let wanted = self.0.platform.tenancy().catalog().grantable(
            "permissions",
            &permissions,
            &tenant.permissions,
            "the key",
        )?;
        let (org, actor) = (tenant.org_id, tenant.actor_id());
        let created_by = match tenant.user_id() {
            Some(user) => user.to_string(),
            None => actor.clone(),
        };
        let keys = self.0.platform.tenancy().api_keys().clone();
        let (key, secret) = tenant
            .db()
            .write(move |tx| {
                let new = NewKey {
                    name: &name,
                    permissions: &wanted,
                    created_by: &created_by,
                    expires: expires.as_ref().map(|(text, ms)| (text.as_str(), *ms)),
                };
                let (key, secret) = keys.create(tx, org, &new)?;
                record(
                    tx,
                    &AuditEntry::new("api_key.created")
                        .actor(&actor)
                        .org(org)
                        .target("api_key", key.id)
                        .client(&client)
                        .details(json!({
                            "name": key.name,
                            "prefix": key.prefix,
                            "permissions": key.permissions.to_vec(),
                            "expires_at": key.expires_at,
                        })),
                )?;
                Ok((key, secret))
            })
            .await?;
        Ok(CreatedKey::Key(Json(CreatedKeyView {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            key: secret,
            permissions: key.permissions.to_vec(),
            expires_at: time_of(key.expires_at.as_deref())?,
            created_at: parse_time(&key.created_at)?,
        })))
    }

    /// Revoke an API key
    ///
    /// Takes effect at once, on every node.
    #[oai(
        path = "/api/orgs/:org_id/api-keys/:id",
        method = "delete",
        operation_id = "revokeApiKey"
    )]
    async fn revoke(
        &self,
        access: ManageApiKeys,
        client: ClientInfo,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        id: Path<Uuid>,
    ) -> Result<NoContent> {
        let tenant = access.0;
        let (org, actor, id) = (tenant.org_id, tenant.actor_id(), id.0);
        let prefix = tenant
            .db()
            .write(move |tx| {
                let key = api_keys::get(tx, id)?.ok_or_else(|| Error::NotFound("no such API key".into()))?;
                api_keys::delete(tx, id)?;
                record(
                    tx,
                    &AuditEntry::new("api_key.revoked")
                        .actor(&actor)
                        .org(org)
                        .target("api_key", id)
                        .client(&client)
                        .details(json!({ "name": key.name, "prefix": key.prefix })),
                )?;
                Ok(key.prefix)
            })
            .await?;
        self.0.platform.tenancy().api_keys().forget(&prefix).await;
        Ok(NoContent::Done)
    }
}
