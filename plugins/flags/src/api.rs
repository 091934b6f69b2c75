//! The flags API: staff manage definitions and overrides under /api/admin/flags;
//! members read evaluations under /api/orgs/{org_id}/flags.

use std::sync::Arc;

use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::identity::auth::StaffAuth;
use plinth_core::params;
use plinth_core::platform::flags::FlagContext;
use plinth_core::tenancy::bound;
use plinth_core::{Error, FieldError, Platform, Result};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags, Union};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::ReadFlags;
use crate::model::{self, Flag, Operator, Reason, Rule, RuleKind, Subject, ValueType};
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

/// A targeting rule, tried in order: the first that matches gives `value`.
#[derive(Union, Clone)]
#[oai(discriminator_name = "kind", one_of)]
pub(crate) enum RuleBody {
    /// Matches the listed orgs.
    #[oai(mapping = "orgs")]
    Orgs(OrgsRule),
    /// Matches the listed users.
    #[oai(mapping = "users")]
    Users(UsersRule),
    /// Matches orgs on the listed plans.
    #[oai(mapping = "plans")]
    Plans(PlansRule),
    /// Compares an attribute of the org or the user with `values`.
    #[oai(mapping = "attribute")]
    Attribute(AttributeRule),
    /// Matches a stable share of orgs or users.
    #[oai(mapping = "rollout")]
    Rollout(RolloutRule),
}

#[derive(Object, Clone)]
pub(crate) struct OrgsRule {
    org_ids: Vec<Uuid>,
    /// The flag's value when this rule matches (of the flag's type).
    value: Value,
}

#[derive(Object, Clone)]
pub(crate) struct UsersRule {
    user_ids: Vec<Uuid>,
    /// The flag's value when this rule matches (of the flag's type).
    value: Value,
}

#[derive(Object, Clone)]
pub(crate) struct PlansRule {
    /// Plan ids.
    plans: Vec<String>,
    /// The flag's value when this rule matches (of the flag's type).
    value: Value,
}

#[derive(Object, Clone)]
pub(crate) struct AttributeRule {
    subject: RuleSubject,
    /// Orgs have `id`, `slug`, `name` and `plan`; users have `id`, `email`,
    /// `email_domain` and `role`.
    attribute: RuleAttribute,
    operator: RuleOperator,
    values: Vec<String>,
    /// The flag's value when this rule matches (of the flag's type).
    value: Value,
}

#[derive(Object, Clone)]
pub(crate) struct RolloutRule {
    /// The share that matches, 0 to 100.
    percentage: f64,
    /// Whose id is hashed into the bucket (default `org`).
    #[oai(default = "org_subject")]
    by: RuleSubject,
    /// The flag's value when this rule matches (of the flag's type).
    value: Value,
}

fn org_subject() -> RuleSubject {
    RuleSubject::Org
}

/// Whose attributes or id a rule looks at.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub(crate) enum RuleSubject {
    Org,
    User,
}

impl From<RuleSubject> for Subject {
    fn from(s: RuleSubject) -> Subject {
        match s {
            RuleSubject::Org => Subject::Org,
            RuleSubject::User => Subject::User,
        }
    }
}

impl From<Subject> for RuleSubject {
    fn from(s: Subject) -> RuleSubject {
        match s {
            Subject::Org => RuleSubject::Org,
            Subject::User => RuleSubject::User,
        }
    }
}

/// How an attribute is compared with the rule's values.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub(crate) enum RuleOperator {
    OneOf,
    NotOneOf,
    EndsWith,
    Contains,
}

impl From<RuleOperator> for Operator {
    fn from(o: RuleOperator) -> Operator {
        match o {
            RuleOperator::OneOf => Operator::OneOf,
            RuleOperator::NotOneOf => Operator::NotOneOf,
            RuleOperator::EndsWith => Operator::EndsWith,
            RuleOperator::Contains => Operator::Contains,
        }
    }
}

impl From<Operator> for RuleOperator {
    fn from(o: Operator) -> RuleOperator {
        match o {
            Operator::OneOf => RuleOperator::OneOf,
            Operator::NotOneOf => RuleOperator::NotOneOf,
            Operator::EndsWith => RuleOperator::EndsWith,
            Operator::Contains => RuleOperator::Contains,
        }
    }
}

/// The attributes rules can compare (which apply depends on the subject).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub(crate) enum RuleAttribute {
    Id,
    Slug,
    Name,
    Plan,
    Email,
    EmailDomain,
    Role,
}

impl RuleAttribute {
    fn as_str(self) -> &'static str {
        match self {
            RuleAttribute::Id => "id",
            RuleAttribute::Slug => "slug",
            RuleAttribute::Name => "name",
            RuleAttribute::Plan => "plan",
            RuleAttribute::Email => "email",
            RuleAttribute::EmailDomain => "email_domain",
            RuleAttribute::Role => "role",
        }
    }

    fn parse(s: &str) -> Option<RuleAttribute> {
        [
            RuleAttribute::Id,
            RuleAttribute::Slug,
            RuleAttribute::Name,
            RuleAttribute::Plan,
            RuleAttribute::Email,
            RuleAttribute::EmailDomain,
            RuleAttribute::Role,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

impl RuleBody {
    /// The model's rule; what the schema cannot say (value types, ranges,
    /// attributes per subject) is checked by `model::check_rule`.
    fn into_rule(self) -> Rule {
        match self {
            RuleBody::Orgs(r) => Rule::Orgs {
                org_ids: r.org_ids,
                value: r.value,
            },
            RuleBody::Users(r) => Rule::Users {
                user_ids: r.user_ids,
                value: r.value,
            },
            RuleBody::Plans(r) => Rule::Plans {
                plans: r.plans,
                value: r.value,
            },
            RuleBody::Attribute(r) => Rule::Attribute {
                subject: r.subject.into(),
                attribute: r.attribute.as_str().to_string(),
                operator: r.operator.into(),
                values: r.values,
                value: r.value,
            },
            RuleBody::Rollout(r) => Rule::Rollout {
                percentage: r.percentage,
                by: r.by.into(),
                value: r.value,
            },
        }
    }

    fn from_rule(rule: &Rule) -> Result<Self> {
        Ok(match rule.clone() {
            Rule::Orgs { org_ids, value } => RuleBody::Orgs(OrgsRule { org_ids, value }),
            Rule::Users { user_ids, value } => RuleBody::Users(UsersRule { user_ids, value }),
            Rule::Plans { plans, value } => RuleBody::Plans(PlansRule { plans, value }),
            Rule::Attribute {
                subject,
                attribute,
                operator,
                values,
                value,
            } => RuleBody::Attribute(AttributeRule {
                subject: subject.into(),
                attribute: RuleAttribute::parse(&attribute)
                    .ok_or_else(|| Error::internal(format!("stored rule attribute `{attribute}`")))?,
                operator: operator.into(),
                values,
                value,
            }),
            Rule::Rollout {
                percentage,
                by,
                value,
            } => RuleBody::Rollout(RolloutRule {
                percentage,
                by: by.into(),
                value,
            }),
        })
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
            rules: flag
                .rules
                .iter()
                .map(RuleBody::from_rule)
                .collect::<Result<_>>()?,
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
            rules: vec![RuleBody::Rollout(RolloutRule {
                percentage: 10.0,
                by: RuleSubject::Org,
                value: json!(true),
            })],
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
    kind: ReasonKind,
    /// For `rule`: the matching rule's position (from 0) and kind.
    rule_index: Option<u32>,
    rule_kind: Option<RuleKind>,
}

/// Why an evaluation gave its value: the flag is off (`disabled`: the default for
/// everyone), staff pinned the org's value (`override`), a rule matched (`rule`),
/// or none did (`default`).
#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "snake_case")]
enum ReasonKind {
    Disabled,
    Override,
    Rule,
    Default,
}

impl EvaluationReason {
    fn new(reason: &Reason) -> Self {
        let (kind, rule_index, rule_kind) = match reason {
            Reason::Disabled => (ReasonKind::Disabled, None, None),
            Reason::Override => (ReasonKind::Override, None, None),
            Reason::Rule { index, kind } => (ReasonKind::Rule, Some(*index as u32), Some(*kind)),
            Reason::Default => (ReasonKind::Default, None, None),
        };
        EvaluationReason {
            kind,
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
    action: HistoryAction,
    org_id: Option<Uuid>,
    /// `before` and `after` values.
    details: Value,
}

/// What a flag change was (the audit action).
#[derive(Enum, Clone, Copy)]
enum HistoryAction {
    #[oai(rename = "flag.created")]
    Created,
    #[oai(rename = "flag.updated")]
    Updated,
    #[oai(rename = "flag.deleted")]
    Deleted,
    #[oai(rename = "flag.override_set")]
    OverrideSet,
    #[oai(rename = "flag.override_removed")]
    OverrideRemoved,
}

impl HistoryAction {
    fn parse(action: &str) -> Option<HistoryAction> {
        Some(match action {
            "flag.created" => HistoryAction::Created,
            "flag.updated" => HistoryAction::Updated,
            "flag.deleted" => HistoryAction::Deleted,
            "flag.override_set" => HistoryAction::OverrideSet,
            "flag.override_removed" => HistoryAction::OverrideRemoved,
            _ => return None,
        })
    }
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
        let rule = body.into_rule();
        errors.extend(model::check_rule(value_type, i, &rule));
        rules.push(rule);
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
    async fn list(&self, _auth: StaffAuth) -> Result<Json<FlagPage>> {
        let flags = self.0.store.definitions(&self.0.platform).await?;
        let items = flags.values().map(|f| FlagView::new(f)).collect::<Result<_>>()?;
        Ok(Json(FlagPage {
            items,
            next_cursor: None,
        }))
    }

    /// Create a flag
    #[oai(path = "/api/admin/flags", method = "post", operation_id = "adminCreateFlag")]
    async fn create(&self, auth: StaffAuth, client: ClientInfo, body: Json<CreateFlag>) -> Result<Created> {
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
    async fn get(&self, _auth: StaffAuth, key: Path<String>) -> Result<Json<FlagView>> {
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
        auth: StaffAuth,
        client: ClientInfo,
        key: Path<String>,
        body: Json<UpdateFlag>,
    ) -> Result<Json<FlagView>> {
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
    async fn delete(&self, auth: StaffAuth, client: ClientInfo, key: Path<String>) -> Result<NoContent> {
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
        auth: StaffAuth,
        client: ClientInfo,
        key: Path<String>,
        org_id: Path<Uuid>,
        body: Json<OverrideBody>,
    ) -> Result<Json<FlagValue>> {
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
        auth: StaffAuth,
        client: ClientInfo,
        key: Path<String>,
        org_id: Path<Uuid>,
    ) -> Result<NoContent> {
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
    async fn history(&self, _auth: StaffAuth, key: Path<String>) -> Result<Json<HistoryPage>> {
        let key = key.0;
        let items = self
            .0
            .platform
            .db()
            .call(move |conn| {
                let rows = conn.query_all(
                    "SELECT at, actor_id, action, org_id, details FROM audit_log
                     WHERE target_type = 'flag' AND target_id = ?1 ORDER BY id DESC LIMIT 500",
                    params![key],
                    |r| {
                        Ok((
                            r.get::<String>(0)?,
                            r.get::<Option<String>>(1)?,
                            r.get::<String>(2)?,
                            r.get::<Option<String>>(3)?,
                            r.get::<String>(4)?,
                        ))
                    },
                )?;
                // Entries about a flag that are not flag changes are not history.
                rows.into_iter()
                    .filter_map(|(at, actor, action, org, details)| {
                        HistoryAction::parse(&action).map(|action| (at, actor, action, org, details))
                    })
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
        _auth: StaffAuth,
        key: Path<String>,
        org_id: Query<Uuid>,
        user_id: Query<Option<Uuid>>,
    ) -> Result<Json<FlagValue>> {
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
    async fn all(
        &self,
        access: ReadFlags,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
    ) -> Result<Evaluations> {
        let tenant = access.0;
        self.0
            .store
            .evaluations(
                &self.0.platform,
                tenant.org_id,
                tenant.user_id(),
                tenant.role.clone(),
            )
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
    async fn one(
        &self,
        access: ReadFlags,
        #[oai(name = "org_id")] _org_id: Path<Uuid>,
        key: Path<String>,
    ) -> Result<Json<FlagValue>> {
        let tenant = access.0;
        let ctx = FlagContext {
            org_id: tenant.org_id,
            user_id: tenant.user_id(),
            role: tenant.role.clone(),
        };
        let evaluated = self
            .0
            .store
            .evaluate_one(&self.0.platform, &ctx, &key.0)
            .await?
            .ok_or_else(|| unknown(&key.0))?;
        let staff = tenant.person().is_ok_and(|p| p.require_staff().is_ok());
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
