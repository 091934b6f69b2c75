//! Demo flags, one per rule kind, targeting the demo org and accounts.

use plinth_core::Result;
use plinth_core::params;
use plinth_core::seed::SeedContext;
use plinth_core::seed::SeedOptions;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model::{Flag, Operator, Rule, Subject, ValueType};
use crate::store;

pub(crate) fn seed(ctx: &SeedContext<'_>, options: &SeedOptions) -> Result<()> {
    if !options.demo {
        return Ok(());
    }
    let sql = ctx.sql();
    let acme = ctx.demo_org()?;
    let owner: Option<Uuid> = sql.query_opt(
        "SELECT id FROM users WHERE email = 'owner@acme.test'",
        params![],
        |r| r.get(0),
    )?;
    let flag = |key: &str, description: &str, value_type, default_value: Value, rules: Vec<Rule>| Flag {
        id: Uuid::now_v7(),
        key: key.into(),
        description: description.into(),
        value_type,
        default_value,
        enabled: true,
        rules,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let mut flags = vec![
        flag(
            "beta-reports",
            "Reports for orgs on the pro plan",
            ValueType::Boolean,
            json!(false),
            vec![Rule::Plans {
                plans: vec!["pro".into(), "enterprise".into()],
                value: json!(true),
            }],
        ),
        flag(
            "staff-tools",
            "Internal tools for platform staff accounts",
            ValueType::Boolean,
            json!(false),
            vec![Rule::Attribute {
                subject: Subject::User,
                attribute: "email_domain".into(),
                operator: Operator::OneOf,
                values: vec!["plinth.test".into()],
                value: json!(true),
            }],
        ),
        flag(
            "checkout-v2",
            "The new checkout, rolled out to half the orgs",
            ValueType::Boolean,
            json!(false),
            vec![Rule::Rollout {
                percentage: 50.0,
                by: Subject::Org,
                value: json!(true),
            }],
        ),
        flag(
            "max-projects",
            "How many projects an org may create",
            ValueType::Number,
            json!(3),
            vec![Rule::Attribute {
                subject: Subject::User,
                attribute: "role".into(),
                operator: Operator::OneOf,
                values: vec!["owner".into()],
                value: json!(10),
            }],
        ),
    ];
    if let Some(acme) = acme {
        flags.push(flag(
            "new-dashboard",
            "The redesigned dashboard, for Acme first",
            ValueType::Boolean,
            json!(false),
            vec![Rule::Orgs {
                org_ids: vec![acme],
                value: json!(true),
            }],
        ));
    }
    if let Some(owner) = owner {
        flags.push(flag(
            "welcome-message",
            "The greeting on the home page",
            ValueType::String,
            json!("Welcome!"),
            vec![Rule::Users {
                user_ids: vec![owner],
                value: json!("Welcome back, Olivia!"),
            }],
        ));
    }
    for f in flags {
        if store::load_one(&sql, &f.key)?.is_none() {
            store::insert(&sql, &f)?;
        }
    }
    Ok(())
}
