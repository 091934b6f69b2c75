//! One flag evaluation, as the hot path runs it (from memory).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use plinth_flags::model::{Flag, Operator, Rule, Subject, Subjects, ValueType, evaluate};
use serde_json::json;
use uuid::Uuid;

fn bench(c: &mut Criterion) {
    let org = Uuid::now_v7();
    let subjects = Subjects {
        org_id: org,
        org_slug: "acme".into(),
        org_name: "Acme".into(),
        plan: Some("free".into()),
        user_id: Some(Uuid::now_v7()),
        email: Some("ada@example.com".into()),
        role: Some("member".into()),
    };
    let flag = Flag {
        id: Uuid::now_v7(),
        key: "checkout-v2".into(),
        description: String::new(),
        value_type: ValueType::Boolean,
        default_value: json!(false),
        enabled: true,
        rules: vec![
            Rule::Plans {
                plans: vec!["pro".into()],
                value: json!(true),
            },
            Rule::Attribute {
                subject: Subject::User,
                attribute: "email_domain".into(),
                operator: Operator::OneOf,
                values: vec!["plinth.test".into()],
                value: json!(true),
            },
            Rule::Rollout {
                percentage: 50.0,
                by: Subject::Org,
                value: json!(true),
            },
        ],
        created_at: String::new(),
        updated_at: String::new(),
    };
    c.bench_function("flag evaluation: 3 rules, ending in a rollout", |b| {
        b.iter(|| evaluate(black_box(&flag), None, black_box(&subjects)))
    });
    c.bench_function("flag evaluation: org override", |b| {
        let value = json!(true);
        b.iter(|| evaluate(black_box(&flag), Some(black_box(&value)), black_box(&subjects)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
