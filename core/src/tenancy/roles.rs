//! Roles a member can hold: the four presets or an org's custom roles, stored in
//! `tenant_roles` with the permissions they carry.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::params;
use crate::storage::db::now_rfc3339;
use crate::storage::sql::{Handle, Row, Sql, is_unique_violation};
use crate::tenancy::Role;
use crate::tenancy::permissions::{Catalog, Permissions};

/// Lowercase letters, digits, `_` and `-`, 1 to 40 of them.
pub const KEY_PATTERN: &str = "^[a-z0-9_-]{1,40}$";

/// Whether `key` may name a custom role.
pub fn valid_key(key: &str) -> bool {
    (1..=40).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A member's role: a preset's name or a custom role's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleName(pub String);

impl RoleName {
    pub fn preset(&self) -> Option<Role> {
        Role::parse(&self.0)
    }

    pub fn is(&self, role: Role) -> bool {
        self.0 == role.as_str()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Role> for RoleName {
    fn from(role: Role) -> Self {
        RoleName(role.as_str().to_string())
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Type for RoleName {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "RoleName".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference("RoleName".into())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>("RoleName".into(), |registry| {
            <Role as Type>::register(registry);
            let custom = MetaSchema {
                pattern: Some(KEY_PATTERN.into()),
                ..MetaSchema::new("string")
            };
            MetaSchema {
                description: Some("A preset role (Role) or the key of one of the org's custom roles."),
                any_of: vec![
                    <Role as Type>::schema_ref(),
                    MetaSchemaRef::Inline(Box::new(custom)),
                ],
                ..MetaSchema::new("string")
            }
        });
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for RoleName {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(s)) if valid_key(&s) => Ok(RoleName(s)),
            Some(Value::String(_)) => Err(ParseError::custom(
                "a role is a preset or a key of lowercase letters, digits, `_` and `-`",
            )),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl ToJSON for RoleName {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// A custom role of the bound org.
#[derive(Debug, Clone)]
pub struct CustomRole {
    pub key: String,
    pub name: String,
    pub description: String,
    pub permissions: Permissions,
    pub created_at: String,
    pub updated_at: String,
}

const SELECT: &str = "SELECT key, name, description, permissions, created_at, updated_at FROM roles";

fn role_row(r: &Row<'_>) -> Result<CustomRole> {
    Ok(CustomRole {
        key: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        permissions: Permissions::from_json(&r.get::<String>(3)?)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

/// The bound org's custom roles, by key.
pub fn list(conn: &impl Handle) -> Result<Vec<CustomRole>> {
    Sql::from(conn).query_all(&format!("{SELECT} ORDER BY key"), params![], role_row)
}

pub fn get(conn: &impl Handle, key: &str) -> Result<Option<CustomRole>> {
    Sql::from(conn).query_opt(&format!("{SELECT} WHERE key = ?1"), params![key], role_row)
}

/// What a role of the bound org holds: a preset's permissions from the catalog,
/// a custom role's from its row; `None` when the org has no such role.
pub fn permissions_of(conn: &impl Handle, catalog: &Catalog, role: &str) -> Result<Option<Permissions>> {
    match Role::parse(role) {
        Some(preset) => Ok(Some(catalog.preset(preset).clone())),
        None => Ok(get(conn, role)?.map(|r| r.permissions)),
    }
}

/// What `role` carries, for assigning it (to a member or an invitation): 422 on
/// the field `role` when the bound org has no such role.
pub fn assignable(conn: &impl Handle, catalog: &Catalog, role: &RoleName) -> Result<Permissions> {
    permissions_of(conn, catalog, role.as_str())?
        .ok_or_else(|| Error::invalid("role", format!("the org has no role `{role}`")))
}

pub fn create(
    conn: &impl Handle,
    org: Uuid,
    key: &str,
    name: &str,
    description: &str,
    permissions: &Permissions,
) -> Result<CustomRole> {
    let now = now_rfc3339();
    Sql::from(conn)
        .execute(
            "INSERT INTO roles (id, org_id, key, name, description, permissions, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![
                Uuid::now_v7(),
                org,
                key,
                name,
                description,
                permissions.to_json(),
                now
            ],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("the org already has a role `{key}`"))
            } else {
                e
            }
        })?;
    get(conn, key)?.ok_or_else(|| Error::internal("a created role vanished"))
}

pub fn update(
    conn: &impl Handle,
    key: &str,
    name: &str,
    description: &str,
    permissions: &Permissions,
) -> Result<()> {
    Sql::from(conn).execute(
        "UPDATE roles SET name = ?2, description = ?3, permissions = ?4, updated_at = ?5 WHERE key = ?1",
        params![key, name, description, permissions.to_json(), now_rfc3339()],
    )?;
    Ok(())
}

pub fn delete(conn: &impl Handle, key: &str) -> Result<()> {
    Sql::from(conn).execute("DELETE FROM roles WHERE key = ?1", params![key])?;
    Ok(())
}
