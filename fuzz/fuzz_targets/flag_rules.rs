//! Flag rules as stored (JSON): whatever deserializes is checked and evaluated
//! without panicking, and evaluation answers the default or some rule's value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plinth_flags::model::{Flag, Rule, Subjects, ValueType, check_rules, evaluate};
use serde_json::{Value, json};
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let Ok(rules) = serde_json::from_slice::<Vec<Rule>>(data) else { return };
    for value_type in [ValueType::Boolean, ValueType::String, ValueType::Number, ValueType::Json] {
        let _ = check_rules(value_type, &rules);
    }
    let flag = Flag {
        id: Uuid::nil(),
        key: "fuzz".into(),
        description: String::new(),
        value_type: ValueType::Json,
        default_value: json!("default"),
        enabled: true,
        rules: rules.clone(),
        created_at: String::new(),
        updated_at: String::new(),
    };
    let subjects = Subjects {
        org_id: Uuid::from_u128(0x0123_4567_89ab_cdef),
        org_slug: "acme".into(),
        org_name: "Acme".into(),
        plan: Some("pro".into()),
        user_id: Some(Uuid::from_u128(42)),
        email: Some("a@example.com".into()),
        role: Some("member".into()),
    };
    let (value, _) = evaluate(&flag, None, &subjects);
    let possible: Vec<&Value> = rules.iter().map(Rule::value).collect();
    assert!(value == json!("default") || possible.contains(&&value), "{value}");
});
