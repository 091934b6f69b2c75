//! Demo plans (Free limits, Pro, Business) and Acme on Pro, in local mode.

use std::collections::BTreeMap;

use plinth_core::Result;
use plinth_core::seed::SeedContext;
use plinth_core::seed::SeedOptions;
use time::OffsetDateTime;

use crate::Shared;
use crate::account::{self, add_interval};
use crate::plans::{self, Interval, Over, Plan, Quota};

fn quota(limit: i64, over: Over, unit_price_cents: i64, unit_size: i64) -> Quota {
    Quota {
        limit,
        over,
        unit_price_cents,
        unit_size,
    }
}

pub(crate) fn seed(ctx: &SeedContext<'_>, options: &SeedOptions, shared: &Shared) -> Result<()> {
    let sql = ctx.sql();
    if !options.demo {
        return Ok(());
    }
    let mut catalog = plans::load(&sql)?;
    // The default plan gets demo limits only while nobody has edited it.
    if let Ok(free) = catalog.default_plan()
        && free.id == "free"
        && free.seat_limit.is_none()
        && free.quotas.is_empty()
    {
        let mut free = free.clone();
        free.description = "For trying things out".into();
        free.seat_limit = Some(5);
        free.quotas = BTreeMap::from([("api_calls".to_string(), quota(1_000, Over::Block, 0, 1))]);
        plans::save(&sql, &free)?;
    }
    let demo = [
        Plan {
            id: "pro".into(),
            name: "Pro".into(),
            description: "For growing teams".into(),
            price_cents: 2_900,
            currency: "usd".into(),
            interval: Interval::Month,
            stripe_price_id: None,
            seat_limit: Some(25),
            quotas: BTreeMap::from([("api_calls".to_string(), quota(100_000, Over::Bill, 1, 100))]),
            features: vec!["audit_export".into(), "priority_support".into()],
            trial_days: 14,
            is_default: false,
            archived: false,
            position: 1,
        },
        Plan {
            id: "business".into(),
            name: "Business".into(),
            description: "For organizations with many teams".into(),
            price_cents: 9_900,
            currency: "usd".into(),
            interval: Interval::Month,
            stripe_price_id: None,
            seat_limit: None,
            quotas: BTreeMap::from([("api_calls".to_string(), quota(1_000_000, Over::Bill, 1, 1_000))]),
            features: vec!["audit_export".into(), "priority_support".into(), "sso".into()],
            trial_days: 14,
            is_default: false,
            archived: false,
            position: 2,
        },
    ];
    for plan in &demo {
        if catalog.get(&plan.id).is_none() {
            plans::save(&sql, plan)?;
        }
    }
    catalog = plans::load(&sql)?;
    if let Some(acme) = ctx.demo_org()? {
        ctx.bind(acme)?;
        let now = OffsetDateTime::now_utc();
        let mut account = account::load(&sql, acme, &catalog, now)?;
        if !account.stored {
            account.plan_id = "pro".into();
            account.period_start = now;
            account.period_end = add_interval(now, Interval::Month);
            account::save(&sql, &mut account)?;
        }
    }
    shared.reload_plans(&sql)?;
    Ok(())
}
