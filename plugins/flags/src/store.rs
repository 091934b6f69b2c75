//! Flags in the database and in memory. Evaluation reads only caches: the flag
//! definitions (one entry, dropped on every flag change), each org's overrides and
//! attributes, and each user's email; misses are the only database queries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use plinth_core::http::rendered::Rendered;
use plinth_core::identity::users;
use plinth_core::params;
use plinth_core::platform::flags::FlagContext;
use plinth_core::runtime::cache::Cache;
use plinth_core::storage::db::now_rfc3339;
use plinth_core::storage::sql::{Row, Sql, is_unique_violation};
use plinth_core::tenancy::{RoleName, bound};
use plinth_core::{Error, Platform, Result};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{Flag, Reason, Subjects, ValueType, evaluate};

/// Cached org data is dropped when the tables it is read from change (see
/// [`Store::watch`]); an effective plan also changes with time (a grace period
/// running out), so org data and evaluations live this long at most.
const ORG_TTL: Duration = Duration::from_secs(60);
/// Emails are dropped when `users` changes; this bounds changes made by the CLI.
const USER_TTL: Duration = Duration::from_secs(300);
/// Flag definitions are dropped when `flags` changes.
const DEFINITIONS_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
pub struct OrgData {
    pub slug: String,
    pub name: String,
    pub plan: Option<String>,
    /// Override values by flag id.
    pub overrides: HashMap<Uuid, Value>,
}

pub type Definitions = Arc<BTreeMap<String, Arc<Flag>>>;

/// Every flag for one caller (org, user, role; an API key has neither), rendered.
pub type Evaluations = Rendered<BTreeMap<String, Value>>;

pub struct Store {
    pub definitions: Cache<(), Definitions>,
    pub orgs: Cache<Uuid, Arc<OrgData>>,
    pub users: Cache<Uuid, Option<String>>,
    /// `GET /api/orgs/{org}/flags` answers (a few hundred bytes each).
    pub evaluations: Cache<(Uuid, Option<Uuid>, Option<RoleName>), Evaluations>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            definitions: Cache::new("flags.definitions", 1, Some(DEFINITIONS_TTL)),
            orgs: Cache::new("flags.orgs", 100_000, Some(ORG_TTL)),
            users: Cache::new("flags.users", 100_000, Some(USER_TTL)),
            evaluations: Cache::new("flags.evaluations", 10_000, Some(ORG_TTL)),
        }
    }
}

const FLAG_COLUMNS: &str =
    "id, key, description, value_type, default_value, enabled, rules, created_at, updated_at";

fn flag_of(r: &Row<'_>) -> Result<Flag> {
    let value_type: String = r.get(3)?;
    Ok(Flag {
        id: r.get(0)?,
        key: r.get(1)?,
        description: r.get(2)?,
        value_type: ValueType::parse(&value_type).ok_or_else(|| Error::internal("unknown value type"))?,
        default_value: serde_json::from_str(&r.get::<String>(4)?)?,
        enabled: r.get(5)?,
        rules: serde_json::from_str(&r.get::<String>(6)?)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn load_all(sql: &Sql<'_>) -> Result<Vec<Flag>> {
    sql.query_all(
        &format!("SELECT {FLAG_COLUMNS} FROM flags ORDER BY key"),
        params![],
        flag_of,
    )
}

pub fn load_one(sql: &Sql<'_>, key: &str) -> Result<Option<Flag>> {
    sql.query_opt(
        &format!("SELECT {FLAG_COLUMNS} FROM flags WHERE key = ?1"),
        params![key],
        flag_of,
    )
}

pub fn insert(sql: &Sql<'_>, flag: &Flag) -> Result<()> {
    sql.execute(
        "INSERT INTO flags (id, key, description, value_type, default_value, enabled, rules, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            flag.id,
            flag.key,
            flag.description,
            flag.value_type.as_str(),
            flag.default_value.to_string(),
            flag.enabled,
            serde_json::to_string(&flag.rules)?,
            now_rfc3339()
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("a flag with the key `{}` exists", flag.key))
        } else {
            e
        }
    })?;
    Ok(())
}

pub fn update(sql: &Sql<'_>, flag: &Flag) -> Result<()> {
    sql.execute(
        "UPDATE flags SET description = ?2, default_value = ?3, enabled = ?4, rules = ?5, updated_at = ?6 WHERE id = ?1",
        params![
            flag.id,
            flag.description,
            flag.default_value.to_string(),
            flag.enabled,
            serde_json::to_string(&flag.rules)?,
            now_rfc3339()
        ],
    )?;
    Ok(())
}

pub fn delete(sql: &Sql<'_>, id: Uuid) -> Result<()> {
    sql.execute("DELETE FROM flags WHERE id = ?1", params![id])?;
    Ok(())
}

/// The bound org's override of a flag.
pub fn override_of(sql: &Sql<'_>, flag: Uuid) -> Result<Option<Value>> {
    let raw: Option<String> = sql.query_opt(
        "SELECT value FROM flag_overrides WHERE flag_id = ?1",
        params![flag],
        |r| r.get(0),
    )?;
    raw.map(|r| serde_json::from_str(&r).map_err(Error::from))
        .transpose()
}

/// Sets the bound org's override (writes through the view: check, then write).
pub fn set_override(sql: &Sql<'_>, org: Uuid, flag: Uuid, value: &Value) -> Result<()> {
    let now = now_rfc3339();
    if override_of(sql, flag)?.is_some() {
        sql.execute(
            "UPDATE flag_overrides SET value = ?2, updated_at = ?3 WHERE flag_id = ?1",
            params![flag, value.to_string(), now],
        )?;
    } else {
        sql.execute(
            "INSERT INTO flag_overrides (flag_id, org_id, value, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![flag, org, value.to_string(), now],
        )?;
    }
    Ok(())
}

pub fn remove_override(sql: &Sql<'_>, flag: Uuid) -> Result<()> {
    sql.execute("DELETE FROM flag_overrides WHERE flag_id = ?1", params![flag])?;
    Ok(())
}

/// One evaluation's outcome.
pub struct Evaluated {
    pub value: Value,
    pub reason: Reason,
}

impl Store {
    /// Registers the caches at /metrics and has each emptied when the tables it is
    /// read from change (flag writes, overrides, org renames, plans through the
    /// entitlements' tables, user emails), whichever code path writes them.
    pub fn watch(&self, platform: &Platform) {
        platform.metrics().register_cache(&self.definitions);
        platform.metrics().register_cache(&self.orgs);
        platform.metrics().register_cache(&self.users);
        platform.metrics().register_cache(&self.evaluations);
        let mut org_tables = vec!["organizations", "tenant_flag_overrides"];
        org_tables.extend(platform.tenancy().entitlements().tables());
        let mut all = org_tables.clone();
        all.extend(["flags", "users"]);
        platform.empty_on_changes(&self.definitions, &["flags"]);
        platform.empty_on_changes(&self.orgs, &org_tables);
        platform.empty_on_changes(&self.users, &["users"]);
        platform.empty_on_changes(&self.evaluations, &all);
    }

    /// Every flag for a member, rendered, from memory on a warm cache.
    pub async fn evaluations(
        &self,
        platform: &Platform,
        org: Uuid,
        user: Option<Uuid>,
        role: Option<RoleName>,
    ) -> Result<Evaluations> {
        self.evaluations
            .get_or_load((org, user, role.clone()), || async move {
                let ctx = FlagContext {
                    org_id: org,
                    user_id: user,
                    role,
                };
                Ok(Rendered::new(&self.evaluate_all(platform, &ctx).await?))
            })
            .await
    }

    pub async fn definitions(&self, platform: &Platform) -> Result<Definitions> {
        let db = platform.db().clone();
        self.definitions
            .get_or_load((), || async move {
                let flags = db.call(load_all).await?;
                Ok(Arc::new(
                    flags.into_iter().map(|f| (f.key.clone(), Arc::new(f))).collect(),
                ))
            })
            .await
    }

    async fn org(&self, platform: &Platform, org: Uuid) -> Result<Arc<OrgData>> {
        let p = platform.clone();
        self.orgs
            .get_or_load(org, || async move {
                let tenancy = p.tenancy().clone();
                p.tenancy()
                    .bind(org)
                    .call(move |conn| {
                        let current = bound::get_org(conn)?
                            .ok_or_else(|| Error::NotFound("no such organization".into()))?;
                        let overrides = conn
                            .query_all("SELECT flag_id, value FROM flag_overrides", params![], |r| {
                                Ok((r.get::<Uuid>(0)?, r.get::<String>(1)?))
                            })?
                            .into_iter()
                            .filter_map(|(id, v)| Some((id, serde_json::from_str(&v).ok()?)))
                            .collect();
                        Ok(Arc::new(OrgData {
                            slug: current.slug,
                            name: current.name,
                            plan: tenancy.entitlements().plan(conn)?,
                            overrides,
                        }))
                    })
                    .await
            })
            .await
    }

    async fn email(&self, platform: &Platform, user: Uuid) -> Result<Option<String>> {
        let db = platform.db().clone();
        self.users
            .get_or_load(user, || async move {
                Ok(db
                    .call(move |conn| users::get(conn, user))
                    .await?
                    .map(|u| u.email))
            })
            .await
    }

    async fn subjects(&self, platform: &Platform, ctx: &FlagContext) -> Result<(Subjects, Arc<OrgData>)> {
        let org = self.org(platform, ctx.org_id).await?;
        let email = match ctx.user_id {
            Some(user) => self.email(platform, user).await?,
            None => None,
        };
        let subjects = Subjects {
            org_id: ctx.org_id,
            org_slug: org.slug.clone(),
            org_name: org.name.clone(),
            plan: org.plan.clone(),
            user_id: ctx.user_id,
            email,
            role: ctx.role.as_ref().map(|r| r.as_str().to_string()),
        };
        Ok((subjects, org))
    }

    /// Every flag for `ctx`, from memory on a warm cache.
    pub async fn evaluate_all(
        &self,
        platform: &Platform,
        ctx: &FlagContext,
    ) -> Result<BTreeMap<String, Value>> {
        let definitions = self.definitions(platform).await?;
        let (subjects, org) = self.subjects(platform, ctx).await?;
        Ok(definitions
            .values()
            .map(|flag| {
                (
                    flag.key.clone(),
                    evaluate(flag, org.overrides.get(&flag.id), &subjects).0,
                )
            })
            .collect())
    }

    /// One flag for `ctx`; `None` when no flag has this key.
    pub async fn evaluate_one(
        &self,
        platform: &Platform,
        ctx: &FlagContext,
        key: &str,
    ) -> Result<Option<Evaluated>> {
        let definitions = self.definitions(platform).await?;
        let Some(flag) = definitions.get(key) else {
            return Ok(None);
        };
        let (subjects, org) = self.subjects(platform, ctx).await?;
        let (value, reason) = evaluate(flag, org.overrides.get(&flag.id), &subjects);
        Ok(Some(Evaluated { value, reason }))
    }
}
