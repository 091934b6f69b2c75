//! Flags, rules and evaluation: pure functions, no I/O (benchmarked in
//! `benches/evaluate.rs`).

use plinth_core::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Rollout buckets: percentages have two decimals of precision.
pub const BUCKETS: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, poem_openapi::Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum ValueType {
    Boolean,
    String,
    Number,
    Json,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Boolean => "boolean",
            ValueType::String => "string",
            ValueType::Number => "number",
            ValueType::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "boolean" => Some(ValueType::Boolean),
            "string" => Some(ValueType::String),
            "number" => Some(ValueType::Number),
            "json" => Some(ValueType::Json),
            _ => None,
        }
    }

    pub fn accepts(self, value: &Value) -> bool {
        match self {
            ValueType::Boolean => value.is_boolean(),
            ValueType::String => value.is_string(),
            ValueType::Number => value.is_number(),
            ValueType::Json => true,
        }
    }
}

/// Whose id or attributes a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Org,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    OneOf,
    NotOneOf,
    EndsWith,
    Contains,
}

/// One targeting rule; rules are tried in order and the first match gives the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    Orgs {
        org_ids: Vec<Uuid>,
        value: Value,
    },
    Users {
        user_ids: Vec<Uuid>,
        value: Value,
    },
    Plans {
        plans: Vec<String>,
        value: Value,
    },
    Attribute {
        subject: Subject,
        attribute: String,
        operator: Operator,
        values: Vec<String>,
        value: Value,
    },
    Rollout {
        percentage: f64,
        by: Subject,
        value: Value,
    },
}

/// The kind of a rule (the `kind` of its JSON form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum RuleKind {
    Orgs,
    Users,
    Plans,
    Attribute,
    Rollout,
}

impl std::fmt::Display for RuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleKind::Orgs => "orgs",
            RuleKind::Users => "users",
            RuleKind::Plans => "plans",
            RuleKind::Attribute => "attribute",
            RuleKind::Rollout => "rollout",
        })
    }
}

impl Rule {
    pub fn kind(&self) -> RuleKind {
        match self {
            Rule::Orgs { .. } => RuleKind::Orgs,
            Rule::Users { .. } => RuleKind::Users,
            Rule::Plans { .. } => RuleKind::Plans,
            Rule::Attribute { .. } => RuleKind::Attribute,
            Rule::Rollout { .. } => RuleKind::Rollout,
        }
    }

    pub fn value(&self) -> &Value {
        match self {
            Rule::Orgs { value, .. }
            | Rule::Users { value, .. }
            | Rule::Plans { value, .. }
            | Rule::Attribute { value, .. }
            | Rule::Rollout { value, .. } => value,
        }
    }
}

pub const ORG_ATTRIBUTES: [&str; 4] = ["id", "slug", "name", "plan"];
pub const USER_ATTRIBUTES: [&str; 4] = ["id", "email", "email_domain", "role"];

#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub id: Uuid,
    pub key: String,
    pub description: String,
    pub value_type: ValueType,
    pub default_value: Value,
    pub enabled: bool,
    pub rules: Vec<Rule>,
    pub created_at: String,
    pub updated_at: String,
}

/// What the rules can look at.
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    pub org_id: Uuid,
    pub org_slug: String,
    pub org_name: String,
    pub plan: Option<String>,
    pub user_id: Option<Uuid>,
    pub email: Option<String>,
    pub role: Option<String>,
}

impl Subjects {
    fn attribute(&self, subject: Subject, name: &str) -> Option<String> {
        match (subject, name) {
            (Subject::Org, "id") => Some(self.org_id.to_string()),
            (Subject::Org, "slug") => Some(self.org_slug.clone()),
            (Subject::Org, "name") => Some(self.org_name.clone()),
            (Subject::Org, "plan") => self.plan.clone(),
            (Subject::User, "id") => self.user_id.map(|u| u.to_string()),
            (Subject::User, "email") => self.email.clone(),
            (Subject::User, "email_domain") => self
                .email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d.to_string()),
            (Subject::User, "role") => self.role.clone(),
            _ => None,
        }
    }
}

/// Why an evaluation gave its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The flag is switched off: everyone gets the default.
    Disabled,
    /// Staff set a value for this org.
    Override,
    /// Rule number `index` (from 0) matched.
    Rule { index: usize, kind: RuleKind },
    /// No rule matched.
    Default,
}

/// The stable bucket (0..10,000) of an id for a flag: the same org or user stays in
/// its bucket, so raising a percentage only ever adds.
pub fn bucket(flag_key: &str, id: Uuid) -> u32 {
    let digest = Sha256::new()
        .chain_update(flag_key.as_bytes())
        .chain_update(b":")
        .chain_update(id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

fn in_rollout(percentage: f64, bucket: u32) -> bool {
    f64::from(bucket) < percentage * f64::from(BUCKETS) / 100.0
}

fn matches(flag_key: &str, rule: &Rule, s: &Subjects) -> bool {
    match rule {
        Rule::Orgs { org_ids, .. } => org_ids.contains(&s.org_id),
        Rule::Users { user_ids, .. } => s.user_id.is_some_and(|u| user_ids.contains(&u)),
        Rule::Plans { plans, .. } => s.plan.as_ref().is_some_and(|p| plans.contains(p)),
        Rule::Attribute {
            subject,
            attribute,
            operator,
            values,
            ..
        } => {
            let Some(actual) = s.attribute(*subject, attribute) else {
                return false;
            };
            let actual = actual.to_lowercase();
            match operator {
                Operator::OneOf => values.iter().any(|v| v.to_lowercase() == actual),
                Operator::NotOneOf => values.iter().all(|v| v.to_lowercase() != actual),
                Operator::EndsWith => values.iter().any(|v| actual.ends_with(&v.to_lowercase())),
                Operator::Contains => values.iter().any(|v| actual.contains(&v.to_lowercase())),
            }
        }
        Rule::Rollout { percentage, by, .. } => {
            let id = match by {
                Subject::Org => Some(s.org_id),
                Subject::User => s.user_id,
            };
            id.is_some_and(|id| in_rollout(*percentage, bucket(flag_key, id)))
        }
    }
}

/// The flag's value for these subjects, and why.
pub fn evaluate(flag: &Flag, org_override: Option<&Value>, s: &Subjects) -> (Value, Reason) {
    if !flag.enabled {
        return (flag.default_value.clone(), Reason::Disabled);
    }
    if let Some(value) = org_override {
        return (value.clone(), Reason::Override);
    }
    for (index, rule) in flag.rules.iter().enumerate() {
        if matches(&flag.key, rule, s) {
            return (
                rule.value().clone(),
                Reason::Rule {
                    index,
                    kind: rule.kind(),
                },
            );
        }
    }
    (flag.default_value.clone(), Reason::Default)
}

/// Keys are stable identifiers used in code: lowercase words joined by `-`, `_` or `.`.
pub fn key_violation(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.len() > 64 {
        return Some("must be 1 to 64 characters long");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Some("may hold only lowercase letters, digits, '-', '_' and '.'");
    }
    if !key.as_bytes()[0].is_ascii_alphanumeric() || !key.as_bytes()[key.len() - 1].is_ascii_alphanumeric() {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// Checks rules against the flag's type; every problem names its rule.
pub fn check_rules(value_type: ValueType, rules: &[Rule]) -> Vec<FieldError> {
    rules
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| check_rule(value_type, i, rule))
        .collect()
}

/// Checks rule number `i` (its position in the request).
pub fn check_rule(value_type: ValueType, i: usize, rule: &Rule) -> Vec<FieldError> {
    let mut errors = Vec::new();
    {
        let mut bad = |field: &str, message: String| {
            errors.push(FieldError {
                field: format!("rules[{i}].{field}"),
                message,
            })
        };
        if !value_type.accepts(rule.value()) {
            bad(
                "value",
                format!("must be a {} like the flag", value_type.as_str()),
            );
        }
        match rule {
            Rule::Orgs { org_ids, .. } if org_ids.is_empty() => {
                bad("org_ids", "must name at least one org".into())
            }
            Rule::Users { user_ids, .. } if user_ids.is_empty() => {
                bad("user_ids", "must name at least one user".into())
            }
            Rule::Plans { plans, .. } if plans.is_empty() => {
                bad("plans", "must name at least one plan".into())
            }
            Rule::Attribute {
                subject,
                attribute,
                values,
                ..
            } => {
                let known = match subject {
                    Subject::Org => &ORG_ATTRIBUTES,
                    Subject::User => &USER_ATTRIBUTES,
                };
                if !known.contains(&attribute.as_str()) {
                    bad("attribute", format!("must be one of {}", known.join(", ")));
                }
                if values.is_empty() {
                    bad("values", "must hold at least one value".into());
                }
            }
            Rule::Rollout { percentage, .. }
                if !(0.0..=100.0).contains(percentage) || percentage.is_nan() =>
            {
                bad("percentage", "must be between 0 and 100".into())
            }
            _ => {}
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(rules: Vec<Rule>) -> Flag {
        Flag {
            id: Uuid::now_v7(),
            key: "new-thing".into(),
            description: String::new(),
            value_type: ValueType::Boolean,
            default_value: json!(false),
            enabled: true,
            rules,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn subjects() -> Subjects {
        Subjects {
            org_id: Uuid::now_v7(),
            org_slug: "acme".into(),
            org_name: "Acme".into(),
            plan: Some("pro".into()),
            user_id: Some(Uuid::now_v7()),
            email: Some("Ada@Example.com".into()),
            role: Some("admin".into()),
        }
    }

    #[test]
    fn each_rule_kind_matches_its_subjects() {
        let s = subjects();
        let t = json!(true);
        let cases = vec![
            Rule::Orgs {
                org_ids: vec![s.org_id],
                value: t.clone(),
            },
            Rule::Users {
                user_ids: vec![s.user_id.expect("user")],
                value: t.clone(),
            },
            Rule::Plans {
                plans: vec!["pro".into()],
                value: t.clone(),
            },
            Rule::Attribute {
                subject: Subject::User,
                attribute: "email_domain".into(),
                operator: Operator::OneOf,
                values: vec!["example.com".into()],
                value: t.clone(),
            },
            Rule::Attribute {
                subject: Subject::Org,
                attribute: "slug".into(),
                operator: Operator::EndsWith,
                values: vec!["me".into()],
                value: t.clone(),
            },
            Rule::Attribute {
                subject: Subject::User,
                attribute: "role".into(),
                operator: Operator::NotOneOf,
                values: vec!["viewer".into()],
                value: t.clone(),
            },
            Rule::Rollout {
                percentage: 100.0,
                by: Subject::Org,
                value: t.clone(),
            },
        ];
        for rule in cases {
            let kind = rule.kind();
            assert_eq!(evaluate(&flag(vec![rule]), None, &s).0, t, "{kind}");
        }
        let misses = vec![
            Rule::Orgs {
                org_ids: vec![Uuid::now_v7()],
                value: t.clone(),
            },
            Rule::Users {
                user_ids: vec![Uuid::now_v7()],
                value: t.clone(),
            },
            Rule::Plans {
                plans: vec!["free".into()],
                value: t.clone(),
            },
            Rule::Attribute {
                subject: Subject::User,
                attribute: "email".into(),
                operator: Operator::Contains,
                values: vec!["nobody".into()],
                value: t.clone(),
            },
            Rule::Rollout {
                percentage: 0.0,
                by: Subject::User,
                value: t.clone(),
            },
        ];
        for rule in misses {
            let kind = rule.kind();
            assert_eq!(
                evaluate(&flag(vec![rule]), None, &s),
                (json!(false), Reason::Default),
                "{kind}"
            );
        }
    }

    #[test]
    fn the_first_matching_rule_wins_overrides_beat_rules_and_off_beats_all() {
        let s = subjects();
        let mut f = flag(vec![
            Rule::Plans {
                plans: vec!["free".into()],
                value: json!(false),
            },
            Rule::Orgs {
                org_ids: vec![s.org_id],
                value: json!(true),
            },
            Rule::Rollout {
                percentage: 100.0,
                by: Subject::Org,
                value: json!(false),
            },
        ]);
        assert_eq!(
            evaluate(&f, None, &s),
            (
                json!(true),
                Reason::Rule {
                    index: 1,
                    kind: RuleKind::Orgs
                }
            )
        );
        assert_eq!(
            evaluate(&f, Some(&json!(false)), &s),
            (json!(false), Reason::Override)
        );
        f.enabled = false;
        assert_eq!(
            evaluate(&f, Some(&json!(true)), &s),
            (json!(false), Reason::Disabled)
        );
    }

    #[test]
    fn rollout_shares_are_close_to_their_targets_and_only_grow() {
        let orgs: Vec<Uuid> = (0..10_000u128)
            .map(|i| Uuid::from_u128(0x1234_5678_9abc_def0_0000_0000_0000_0000 + i * 7919))
            .collect();
        let mut previous: Option<Vec<bool>> = None;
        for target in [10.0, 50.0, 90.0] {
            let inside: Vec<bool> = orgs
                .iter()
                .map(|o| in_rollout(target, bucket("checkout-v2", *o)))
                .collect();
            let share = inside.iter().filter(|i| **i).count() as f64 / orgs.len() as f64 * 100.0;
            println!("rollout {target}%: {share:.2}% of 10,000 orgs");
            assert!((share - target).abs() <= 1.5, "{target}%: got {share:.2}%");
            if let Some(prev) = &previous {
                assert!(
                    prev.iter().zip(&inside).all(|(was, is)| !was || *is),
                    "raising to {target}% removed an org"
                );
            }
            previous = Some(inside);
        }
    }

    #[test]
    fn rules_are_checked_against_the_type_and_named() {
        let rules = vec![
            Rule::Orgs {
                org_ids: vec![],
                value: json!(true),
            },
            Rule::Rollout {
                percentage: 150.0,
                by: Subject::Org,
                value: json!("yes"),
            },
            Rule::Attribute {
                subject: Subject::Org,
                attribute: "mood".into(),
                operator: Operator::OneOf,
                values: vec!["x".into()],
                value: json!(true),
            },
        ];
        let fields: Vec<String> = check_rules(ValueType::Boolean, &rules)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "rules[0].org_ids",
                "rules[1].value",
                "rules[1].percentage",
                "rules[2].attribute"
            ]
        );
        assert!(key_violation("checkout-v2").is_none());
        for bad in ["", "Caps", "-x", "x-", "a b", &"a".repeat(65)] {
            assert!(key_violation(bad).is_some(), "{bad}");
        }
    }
}
