//! The flags API: staff manage definitions and overrides under /api/admin/flags;
//! members read evaluations under /api/orgs/{org_id}/flags.

use std::sync::Arc;

use plinth_core::audit::{AuditEntry, record};
use plinth_core::flags::FlagContext;
use plinth_core::http::ClientInfo;
use plinth_core::identity::auth::BearerAuth;
use plinth_core::tenancy::{Role, bound};
use plinth_core::{Error, FieldError, Platform, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::model::{self, Flag, Operator, Reason, Rule, Subject, ValueType};
use crate::store::{self, Evaluations, Store};

#[derive(Clone)]
pub(crate) struct FlagsApi {
    pub platform: Platform,
    pub store: Arc<Store>,
}

#[derive(Tags)]
enum FlagsTag {
    /// Feature flag definitions and overrides (platform staff).
    AdminFlags,
    /// Feature flags evaluated for an organization.
    Flags,
}

/// A targeting rule. `kind` decides which other fields apply:
/// `orgs` (org_ids), `users` (user_ids), `plans` (plans),
/// `attribute` (subject `org`|`user`, attribute, operator `one_of`|`not_one_of`|`ends_with`|`contains`, values),
/// `rollout` (percentage 0-100, by `org`|`user`).
#[derive(Object, Clone)]
pub(crate) struct RuleBody {
    kind: String,
    #[oai(skip_serializing_if_is_none)]
    org_ids: Option<Vec<Uuid>>,
    #[oai(skip_serializing_if_is_none)]
    user_ids: Option<Vec<Uuid>>,
    #[oai(skip_serializing_if_is_none)]
    plans: Option<Vec<String>>,
    /// Attribute rules: `org` or `user`.
    #[oai(skip_serializing_if_is_none)]
    subject: Option<String>,
    /// Org: id, slug, name, plan. User: id, email, email_domain, role.
    #[oai(skip_serializing_if_is_none)]
    attribute: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    operator: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    values: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none)]
    percentage: Option<f64>,
    /// Rollouts: bucket by `org` (default) or `user`.
    #[oai(skip_serializing_if_is_none)]
    by: Option<String>,
    /// The flag's value when this rule matches (of the flag's type).
    value: Value,
}

fn subject(s: &str) -> Option<Subject> {
    match s {
        "org" => Some(Subject::Org),
        "user" => Some(Subject::User),
        _ => None,
    }
}

fn operator(s: &str) -> Option<Operator> {
    match s {
        "one_of" => Some(Operator::OneOf),
        "not_one_of" => Some(Operator::NotOneOf),
        "ends_with" => Some(Operator::EndsWith),
        "contains" => Some(Operator::Contains),
        _ => None,
    }
}

impl RuleBody {
    fn into_rule(self, i: usize, errors: &mut Vec<FieldError>) -> Option<Rule> {
        let mut missing = |field: &str, message: &str| {
            errors.push(FieldError {
                field: format!("rules[{i}].{field}"),
                message: message.into(),
            })
        };
        let value = self.value;
        match self.kind.as_str() {
            "orgs" => Some(Rule::Orgs {
                org_ids: self.org_ids.unwrap_or_default(),
                value,
            }),
            "users" => Some(Rule::Users {
                user_ids: self.user_ids.unwrap_or_default(),
                value,
            }),
            "plans" => Some(Rule::Plans {
                plans: self.plans.unwrap_or_default(),
                value,
            }),
            "attribute" => {
                let subj = self.subject.as_deref().and_then(subject);
                let op = self.operator.as_deref().and_then(operator);
                if subj.is_none() {
                    missing("subject", "must be `org` or `user`");
                }
                if op.is_none() {
                    missing("operator", "must be one_of, not_one_of, ends_with or contains");
                }
                Some(Rule::Attribute {
                    subject: subj?,
                    attribute: self.attribute.unwrap_or_default(),
                    operator: op?,
                    values: self.values.unwrap_or_default(),
                    value,
                })
            }
            "rollout" => {
                let by = match self.by.as_deref() {
                    None => Some(Subject::Org),
                    Some(b) => subject(b),
                };
                if by.is_none() {
                    missing("by", "must be `org` or `user`");
                }
                let Some(percentage) = self.percentage else {
                    missing("percentage", "is required");
                    return None;
                };
                Some(Rule::Rollout {
                    percentage,
                    by: by?,
                    value,
                })
            }
            _ => {
                missing("kind", "must be orgs, users, plans, attribute or rollout");
                None
            }
        }
    }

    fn from_rule(rule: &Rule) -> Self {
        let mut body = RuleBody {
            kind: rule.kind().into(),
            org_ids: None,
            user_ids: None,
            plans: None,
            subject: None,
            attribute: None,
            operator: None,
            values: None,
            percentage: None,
            by: None,
            value: rule.value().clone(),
        };
        let name = |s: &Subject| match s {
            Subject::Org => "org".to_string(),
            Subject::User => "user".to_string(),
        };
        match rule {
            Rule::Orgs { org_ids, .. } => body.org_ids = Some(org_ids.clone()),
            Rule::Users { user_ids, .. } => body.user_ids = Some(user_ids.clone()),
            Rule::Plans { plans, .. } => body.plans = Some(plans.clone()),
            Rule::Attribute {
                subject,
                attribute,
                operator,
                values,
                ..
            } => {
                body.subject = Some(name(subject));
                body.attribute = Some(attribute.clone());
                body.operator = Some(
                    match operator {
                        Operator::OneOf => "one_of",
                        Operator::NotOneOf => "not_one_of",
                        Operator::EndsWith => "ends_with",
                        Operator::Contains => "contains",
                    }
                    .into(),
                );
                body.values = Some(values.clone());
            }
            Rule::Rollout { percentage, by, .. } => {
                body.percentage = Some(*percentage);
                body.by = Some(name(by));
            }
        }
        body
    }
}

/// A flag definition.
#[derive(Object)]
struct FlagView {
    key: String,
    description: String,
    value_type: ValueType,
    default_value: Value,
    /// Off: everyone gets the default (a kill switch).
    enabled: bool,
    /// Tried in order; the first match gives the value.
    rules: Vec<RuleBody>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

fn time_of(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(Error::internal)
}

impl FlagView {
    fn new(flag: &Flag) -> Result<Self> {
        Ok(FlagView {
            key: flag.key.clone(),
            description: flag.description.clone(),
            value_type: flag.value_type,
            default_value: flag.default_value.clone(),
            enabled: flag.enabled,
            rules: flag.rules.iter().map(RuleBody::from_rule).collect(),
            created_at: time_of(&flag.created_at)?,
            updated_at: time_of(&flag.updated_at)?,
        })
    }
}

#[derive(Object)]
struct FlagPage {
    items: Vec<FlagView>,
    /// Always null: every flag is in one page.
    next_cursor: Option<String>,
}

#[derive(Object)]
#[oai(example)]
struct CreateFlag {
    /// Stable identifier used in code: lowercase letters, digits, `-`, `_`, `.`.
    key: String,
    #[oai(default)]
    description: String,
    value_type: ValueType,
    default_value: Value,
    #[oai(default = "default_true")]
    enabled: bool,
    #[oai(default)]
    rules: Vec<RuleBody>,
}

fn default_true() -> bool {
    true
}

impl Example for CreateFlag {
    fn example() -> Self {
        CreateFlag {
            key: "new-editor".into(),
            description: "The new editor, for 10 % of orgs".into(),
            value_type: ValueType::Boolean,
            default_value: json!(false),
            enabled: true,
            rules: vec![RuleBody {
                kind: "rollout".into(),
                org_ids: None,
                user_ids: None,
                plans: None,
                subject: None,
                attribute: None,
                operator: None,
                values: None,
                percentage: Some(10.0),
                by: Some("org".into()),
                value: json!(true),
            }],
        }
    }
}

#[derive(Object)]
#[oai(example)]
struct UpdateFlag {
    description: Option<String>,
    default_value: Option<Value>,
    enabled: Option<bool>,
    rules: Option<Vec<RuleBody>>,
}

#[derive(Object)]
#[oai(example)]
struct OverrideBody {
    /// The org's value (of the flag's type); it beats every rule while the flag is on.
    value: Value,
}

/// Why an evaluation gave its value.
#[derive(Object)]
struct EvaluationReason {
    /// `disabled`, `override`, `rule` or `default`.
    kind: String,
    /// For `rule`: the matching rule's position (from 0) and kind.
    rule_index: Option<u32>,
    rule_kind: Option<String>,
}

impl EvaluationReason {
    fn new(reason: &Reason) -> Self {
        let (kind, rule_index, rule_kind) = match reason {
            Reason::Disabled => ("disabled", None, None),
            Reason::Override => ("override", None, None),
            Reason::Rule { index, kind } => ("rule", Some(*index as u32), Some(kind.to_string())),
            Reason::Default => ("default", None, None),
        };
        EvaluationReason {
            kind: kind.into(),
            rule_index,
            rule_kind,
        }
    }
}

/// One flag's value for an org and caller.
#[derive(Object)]
struct FlagValue {
    key: String,
    value: Value,
    /// Only for platform staff, for debugging.
    #[oai(skip_serializing_if_is_none)]
    reason: Option<EvaluationReason>,
}

/// A change to a flag, from the audit log.
#[derive(Object)]
struct HistoryEntry {
    at: OffsetDateTime,
    actor_id: Option<Uuid>,
    action: String,
    org_id: Option<Uuid>,
    /// `before` and `after` values.
    details: Value,
}

#[derive(Object)]
struct HistoryPage {
    items: Vec<HistoryEntry>,
    next_cursor: Option<String>,
}

#[derive(ApiResponse)]
enum Created {
    /// Created.
    #[oai(status = 201)]
    Flag(Json<FlagView>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

fn unknown(key: &str) -> Error {
    Error::NotFound(format!("no flag `{key}`"))
}

fn check_value(field: &str, value_type: ValueType, value: &Value, errors: &mut Vec<FieldError>) {
    if !value_type.accepts(value) {
        errors.push(FieldError {
            field: field.into(),
            message: format!("must be a {}", value_type.as_str()),
        });
    }
}

fn parse_rules(bodies: Vec<RuleBody>, value_type: ValueType, errors: &mut Vec<FieldError>) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        if let Some(rule) = body.into_rule(i, errors) {
            errors.extend(model::check_rule(value_type, i, &rule));
            rules.push(rule);
        }
    }
    rules
}

fn snapshot(flag: &Flag) -> Value {
    json!({
        "description": flag.description,
        "value_type": flag.value_type.as_str(),
        "default_value": flag.default_value,
        "enabled": flag.enabled,
        "rules": flag.rules,
    })
}

impl FlagsApi {
    async fn flag(&self, key: &str) -> Result<Flag> {
        let k = key.to_string();
        self.platform
            .db()
            .call(move |conn| store::load_one(conn, &k))
            .await?
            .ok_or_else(|| unknown(key))
    }
}

#[derive(Clone)]
pub(crate) struct AdminFlagsApi(pub FlagsApi);

#[OpenApi(tag = "FlagsTag::AdminFlags")]
impl AdminFlagsApi {
    /// List flags
    #[oai(path = "/api/admin/flags", method = "get", operation_id = "adminListFlags")]
    async fn list(&self, auth: BearerAuth) -> Result<Json<FlagPage>> {
        auth.0.require_staff()?;
        let flags = self.0.store.definitions(&self.0.platform).await?;
        let items = flags.values().map(|f| FlagView::new(f)).collect::<Result<_>>()?;
        Ok(Json(FlagPage {
            items,
            next_cursor: None,
        }))
    }

    /// Create a flag
    #[oai(path = "/api/admin/flags", method = "post", operation_id = "adminCreateFlag")]
    async fn create(&self, auth: BearerAuth, client: ClientInfo, body: Json<CreateFlag>) -> Result<Created> {
        auth.0.require_staff()?;
        let CreateFlag {
            key,
            description,
            value_type,
            default_value,
            enabled,
            rules,
        } = body.0;
        let mut errors = Vec::new();
        if let Some(message) = model::key_violation(&key) {
            errors.push(FieldError {
                field: "key".into(),
                message: message.into(),
            });
        }
        check_value("default_value", value_type, &default_value, &mut errors);
        let rules = parse_rules(rules, value_type, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let flag = Flag {
            id: Uuid::now_v7(),
            key: key.clone(),
            description,
            value_type,
            default_value,
            enabled,
            rules,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let actor = auth.0.user_id;
        let created = self
            .0
            .platform
            .db()
            .write(move |tx| {
                store::insert(tx, &flag)?;
                record(
                    tx,
                    &AuditEntry::new("flag.created")
                        .actor(actor)
                        .target("flag", &flag.key)
                        .client(&client)
                        .details(json!({ "before": null, "after": snapshot(&flag) })),
                )?;
                store::load_one(tx, &flag.key)?.ok_or_else(|| unknown(&flag.key))
            })
            .await?;
        Ok(Created::Flag(Json(FlagView::new(&created)?)))
    }

    /// Get a flag
    #[oai(path = "/api/admin/flags/:key", method = "get", operation_id = "adminGetFlag")]
    async fn get(&self, auth: BearerAuth, key: Path<String>) -> Result<Json<FlagView>> {
        auth.0.require_staff()?;
        Ok(Json(FlagView::new(&self.0.flag(&key.0).await?)?))
    }

    /// Update a flag
    ///
    /// Switching `enabled` off is a kill switch: from the next request everyone gets
    /// the default.
    #[oai(
        path = "/api/admin/flags/:key",
        method = "patch",
        operation_id = "adminUpdateFlag"
    )]
    async fn update(
        &self,
        auth: BearerAuth,
        client: ClientInfo,
        key: Path<String>,
        body: Json<UpdateFlag>,
    ) -> Result<Json<FlagView>> {
        auth.0.require_staff()?;
        let before = self.0.flag(&key.0).await?;
        let mut after = before.clone();
        let mut errors = Vec::new();
        if let Some(d) = body.0.description {
            after.description = d;
        }
        if let Some(v) = body.0.default_value {
            check_value("default_value", after.value_type, &v, &mut errors);
            after.default_value = v;
        }
        if let Some(e) = body.0.enabled {
            after.enabled = e;
        }
        if let Some(rules) = body.0.rules {
            after.rules = parse_rules(rules, after.value_type, &mut errors);
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let actor = auth.0.user_id;
        let updated = self
            .0
            .platform
            .db()
            .write(move |tx| {
                store::update(tx, &after)?;
                record(
                    tx,
                    &AuditEntry::new("flag.updated")
                        .actor(actor)
                        .target("flag", &after.key)
                        .client(&client)
                        .details(json!({ "before": snapshot(&before), "after": snapshot(&after) })),
                )?;
                store::load_one(tx, &after.key)?.ok_or_else(|| unknown(&after.key))
            })
            .await?;
        Ok(Json(FlagView::new(&updated)?))
    }

    /// Delete a flag
    #[oai(
        path = "/api/admin/flags/:key",
        method = "delete",
        operation_id = "adminDeleteFlag"
    )]
    async fn delete(&self, auth: BearerAuth, client: ClientInfo, key: Path<String>) -> Result<NoContent> {
        auth.0.require_staff()?;
        let flag = self.0.flag(&key.0).await?;
        let actor = auth.0.user_id;
        self.0
            .platform
            .db()
            .write(move |tx| {
                store::delete(tx, flag.id)?;
                record(
                    tx,
                    &AuditEntry::new("flag.deleted")
                        .actor(actor)
                        .target("flag", &flag.key)
                        .client(&client)
                        .details(json!({ "before": snapshot(&flag), "after": null })),
                )?;
                Ok(())
            })
            .await?;
        Ok(NoContent::Done)
    }

    /// Set an org's override
    #[oai(
        path = "/api/admin/flags/:key/overrides/:org_id",
        method = "put",
        operation_id = "adminSetFlagOverride"
    )]
    async fn set_override(
        &self,
        auth: BearerAuth,
        client: ClientInfo,
        key: Path<String>,
        org_id: Path<Uuid>,
        body: Json<OverrideBody>,
    ) -> Result<Json<FlagValue>> {
        auth.0.require_staff()?;
        let flag = self.0.flag(&key.0).await?;
        let value = body.0.value;
        let mut errors = Vec::new();
        check_value("value", flag.value_type, &value, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let (org, actor) = (org_id.0, auth.0.user_id);
        let stored = value.clone();
        self.0
            .platform
            .tenancy()
            .bind(org)
            .write(move |tx| {
                bound::get_org(tx)?.ok_or_else(|| Error::NotFound("no such organization".into()))?;
                let before = store::override_of(tx, flag.id)?;
                store::set_override(tx, org, flag.id, &stored)?;
                record(
                    tx,
                    &AuditEntry::new("flag.override_set")
                        .actor(actor)
                        .org(org)
                        .target("flag", &flag.key)
                        .client(&client)
                        .details(json!({ "before": before, "after": stored })),
                )?;
                Ok(())
            })
            .await?;
        Ok(Json(FlagValue {
            key: key.0,
            value,
            reason: None,
        }))
    }

    /// Remove an org's override
    #[oai(
        path = "/api/admin/flags/:key/overrides/:org_id",
        method = "delete",
        operation_id = "adminRemoveFlagOverride"
    )]
    async fn remove_override(
        &self,
        auth: BearerAuth,
        client: ClientInfo,
        key: Path<String>,
        org_id: Path<Uuid>,
    ) -> Result<NoContent> {
        auth.0.require_staff()?;
        let flag = self.0.flag(&key.0).await?;
        let (org, actor) = (org_id.0, auth.0.user_id);
        self.0
            .platform
            .tenancy()
            .bind(org)
            .write(move |tx| {
                let before = store::override_of(tx, flag.id)?
                    .ok_or_else(|| Error::NotFound("no override for this org".into()))?;
                store::remove_override(tx, flag.id)?;
                record(
                    tx,
                    &AuditEntry::new("flag.override_removed")
                        .actor(actor)
                        .org(org)
                        .target("flag", &flag.key)
                        .client(&client)
                        .details(json!({ "before": before, "after": null })),
                )?;
                Ok(())
            })
            .await?;
        Ok(NoContent::Done)
    }

    /// A flag's change history
    ///
    /// Every change with its before and after values, newest first.
    #[oai(
        path = "/api/admin/flags/:key/history",
        method = "get",
        operation_id = "adminFlagHistory"
    )]
    async fn history(&self, auth: BearerAuth, key: Path<String>) -> Result<Json<HistoryPage>> {
        auth.0.require_staff()?;
        let key = key.0;
        let items = self
            .0
            .platform
            .db()
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT at, actor_id, action, org_id, details FROM audit_log
                     WHERE target_type = 'flag' AND target_id = ?1 ORDER BY id DESC LIMIT 500",
                )?;
                let rows = stmt
                    .query_map([key], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.into_iter()
                    .map(|(at, actor, action, org, details)| {
                        Ok(HistoryEntry {
                            at: time_of(&at)?,
                            actor_id: actor.and_then(|a| Uuid::parse_str(&a).ok()),
                            action,
                            org_id: org.and_then(|o| Uuid::parse_str(&o).ok()),
                            details: serde_json::from_str(&details).unwrap_or(Value::Null),
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        Ok(Json(HistoryPage {
            items,
            next_cursor: None,
        }))
    }

    /// Explain an evaluation
    ///
    /// The value a flag takes for an org (and optionally a user), and which rule gave it.
    #[oai(
        path = "/api/admin/flags/:key/evaluate",
        method = "get",
        operation_id = "adminEvaluateFlag"
    )]
    async fn explain(
        &self,
        auth: BearerAuth,
        key: Path<String>,
        org_id: Query<Uuid>,
        user_id: Query<Option<Uuid>>,
    ) -> Result<Json<FlagValue>> {
        auth.0.require_staff()?;
        let ctx = FlagContext {
            org_id: org_id.0,
            user_id: user_id.0,
            role: None,
        };
        let evaluated = self
            .0
            .store
            .evaluate_one(&self.0.platform, &ctx, &key.0)
            .await?
            .ok_or_else(|| unknown(&key.0))?;
        Ok(Json(FlagValue {
            key: key.0,
            value: evaluated.value,
            reason: Some(EvaluationReason::new(&evaluated.reason)),
        }))
    }
}

#[derive(Clone)]
pub(crate) struct OrgFlagsApi(pub FlagsApi);

#[OpenApi(tag = "FlagsTag::Flags")]
impl OrgFlagsApi {
    /// Evaluate every flag
    ///
    /// `{key: value}` for every flag, for this org and the caller. Served from memory.
    #[oai(
        path = "/api/orgs/:org_id/flags",
        method = "get",
        operation_id = "listOrgFlags"
    )]
    async fn all(&self, auth: BearerAuth, org_id: Path<Uuid>) -> Result<Evaluations> {
        let tenant = self
            .0
            .platform
            .tenancy()
            .resolve(&auth.0, org_id.0, Role::Viewer)
            .await?;
        self.0
            .store
            .evaluations(&self.0.platform, tenant.org_id, tenant.user_id(), tenant.role)
            .await
    }

    /// Evaluate one flag
    ///
    /// Platform staff also get the reason (which rule matched).
    #[oai(
        path = "/api/orgs/:org_id/flags/:key",
        method = "get",
        operation_id = "getOrgFlag"
    )]
    async fn one(&self, auth: BearerAuth, org_id: Path<Uuid>, key: Path<String>) -> Result<Json<FlagValue>> {
        let tenant = self
            .0
            .platform
            .tenancy()
            .resolve(&auth.0, org_id.0, Role::Viewer)
            .await?;
        let ctx = FlagContext {
            org_id: tenant.org_id,
            user_id: Some(tenant.user_id()),
            role: Some(tenant.role),
        };
        let evaluated = self
            .0
            .store
            .evaluate_one(&self.0.platform, &ctx, &key.0)
            .await?
            .ok_or_else(|| unknown(&key.0))?;
        let staff = auth.0.require_staff().is_ok();
        Ok(Json(FlagValue {
            key: key.0,
            value: evaluated.value,
            reason: staff.then(|| EvaluationReason::new(&evaluated.reason)),
        }))
    }
}

impl poem_openapi::types::Example for UpdateFlag {
    fn example() -> Self {
        UpdateFlag {
            description: None,
            default_value: None,
            enabled: Some(false),
            rules: None,
        }
    }
}

impl poem_openapi::types::Example for OverrideBody {
    fn example() -> Self {
        OverrideBody { value: json!(true) }
    }
}
