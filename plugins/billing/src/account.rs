//! An org's billing state (`billing_accounts`, one row per org, absent until the
//! first billing change): its plan, subscription status and period, and the plan
//! that status actually entitles it to.

use std::time::Duration;

use plinth_core::params;
use plinth_core::storage::db::now_rfc3339;
use plinth_core::storage::sql::Sql;
use plinth_core::{Error, Result};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};
use uuid::Uuid;

use crate::plans::{Catalog, Interval, Plan};

/// Stripe's subscription statuses, which Plinth uses for local subscriptions too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Incomplete,
    IncompleteExpired,
    Paused,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 8] = [
        SubscriptionStatus::Trialing,
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Canceled,
        SubscriptionStatus::Unpaid,
        SubscriptionStatus::Incomplete,
        SubscriptionStatus::IncompleteExpired,
        SubscriptionStatus::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::IncompleteExpired => "incomplete_expired",
            SubscriptionStatus::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<SubscriptionStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub org_id: Uuid,
    pub plan_id: String,
    pub status: String,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub stripe_item_id: Option<String>,
    pub quantity: Option<i64>,
    pub period_start: OffsetDateTime,
    pub period_end: OffsetDateTime,
    pub cancel_at_period_end: bool,
    pub trial_end: Option<OffsetDateTime>,
    pub past_due_since: Option<OffsetDateTime>,
    /// Stripe `created` of the newest subscription state applied.
    pub stripe_version: i64,
    /// Whether the row exists yet.
    pub stored: bool,
}

pub fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| Error::internal(format!("bad stored time `{s}`: {e}")))
}

pub fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `t` moved by one plan interval, clamping the day (Jan 31 -> Feb 28) as Stripe
/// does.
pub fn add_interval(t: OffsetDateTime, interval: Interval) -> OffsetDateTime {
    let months = i32::from(interval.months());
    let total = t.year() * 12 + (t.month() as i32 - 1) + months;
    let (year, month) = (total.div_euclid(12), total.rem_euclid(12) as u8 + 1);
    let month = Month::try_from(month).unwrap_or(Month::January);
    let day = t.day().min(month.length(year));
    Date::from_calendar_date(year, month, day)
        .map(|d| d.with_time(t.time()).assume_offset(t.offset()))
        .unwrap_or(t)
}

/// The calendar month around `now`: the period of orgs that never subscribed.
pub fn calendar_month(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let start = Date::from_calendar_date(now.year(), now.month(), 1)
        .map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
        .unwrap_or(now);
    (start, add_interval(start, Interval::Month))
}

impl Account {
    /// The state of an org with no billing row: the default plan, active, this month.
    pub fn new(org_id: Uuid, catalog: &Catalog, now: OffsetDateTime) -> Result<Account> {
        let (start, end) = calendar_month(now);
        Ok(Account {
            org_id,
            plan_id: catalog.default_plan()?.id.clone(),
            status: "active".into(),
            stripe_customer_id: None,
            stripe_subscription_id: None,
            stripe_item_id: None,
            quantity: None,
            period_start: start,
            period_end: end,
            cancel_at_period_end: false,
            trial_end: None,
            past_due_since: None,
            stripe_version: 0,
            stored: false,
        })
    }

    /// Stripe owns the period of a Stripe subscription; local periods roll over here
    /// (the period-closing job stores the roll and invoices the closed period).
    pub fn period(&self, catalog: &Catalog, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        if self.stripe_subscription_id.is_some() {
            return (self.period_start, self.period_end);
        }
        let interval = catalog.get(&self.plan_id).map_or(Interval::Month, |p| p.interval);
        let (mut start, mut end) = (self.period_start, self.period_end);
        // Bounded: a database left alone for 100 years still answers.
        for _ in 0..1200 {
            if now < end {
                break;
            }
            start = end;
            end = add_interval(start, interval);
        }
        (start, end)
    }

    /// The plan the org is entitled to now: its own while active or trialing, and
    /// while past due within the grace period; otherwise the default plan.
    pub fn effective_plan<'c>(
        &self,
        catalog: &'c Catalog,
        grace: Duration,
        now: OffsetDateTime,
    ) -> Result<&'c Plan> {
        let own = catalog.get(&self.plan_id);
        let entitled = match self.status.as_str() {
            "active" | "trialing" => true,
            "past_due" => self
                .past_due_since
                .is_none_or(|since| now < since + time::Duration::seconds(grace.as_secs() as i64)),
            _ => false,
        };
        match own {
            Some(plan) if entitled => Ok(plan),
            _ => catalog.default_plan(),
        }
    }
}

const COLUMNS: &str = "org_id, plan_id, status, stripe_customer_id, stripe_subscription_id, stripe_item_id, \
                       quantity, current_period_start, current_period_end, cancel_at_period_end, trial_end, \
                       past_due_since, stripe_version";

fn opt_time(s: Option<String>) -> Result<Option<OffsetDateTime>> {
    s.as_deref().map(parse_time).transpose()
}

/// The bound org's account (the default state when it has no row yet).
pub fn load(conn: &Sql<'_>, org: Uuid, catalog: &Catalog, now: OffsetDateTime) -> Result<Account> {
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        String,
        String,
        bool,
        Option<String>,
        Option<String>,
        i64,
    );
    let row: Option<Row> = conn.query_opt(
        &format!("SELECT {COLUMNS} FROM billing_accounts"),
        params![],
        |r| {
            Ok((
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        },
    )?;
    let Some((
        plan_id,
        status,
        customer,
        subscription,
        item,
        quantity,
        start,
        end,
        cancel,
        trial,
        past_due,
        version,
    )) = row
    else {
        return Account::new(org, catalog, now);
    };
    Ok(Account {
        org_id: org,
        plan_id,
        status,
        stripe_customer_id: customer,
        stripe_subscription_id: subscription,
        stripe_item_id: item,
        quantity,
        period_start: parse_time(&start)?,
        period_end: parse_time(&end)?,
        cancel_at_period_end: cancel,
        trial_end: opt_time(trial)?,
        past_due_since: opt_time(past_due)?,
        stripe_version: version,
        stored: true,
    })
}

/// Writes the account (insert or update) on a connection bound to its org.
pub fn save(conn: &Sql<'_>, account: &mut Account) -> Result<()> {
    let sql = if account.stored {
        "UPDATE billing_accounts SET plan_id = ?2, status = ?3, stripe_customer_id = ?4,
             stripe_subscription_id = ?5, stripe_item_id = ?6, quantity = ?7, current_period_start = ?8,
             current_period_end = ?9, cancel_at_period_end = ?10, trial_end = ?11, past_due_since = ?12,
             stripe_version = ?13, updated_at = ?14
         WHERE org_id = ?1"
    } else {
        "INSERT INTO billing_accounts (org_id, plan_id, status, stripe_customer_id, stripe_subscription_id,
             stripe_item_id, quantity, current_period_start, current_period_end, cancel_at_period_end, trial_end,
             past_due_since, stripe_version, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    };
    conn.execute(
        sql,
        params![
            account.org_id.to_string(),
            account.plan_id,
            account.status,
            account.stripe_customer_id,
            account.stripe_subscription_id,
            account.stripe_item_id,
            account.quantity,
            format_time(account.period_start),
            format_time(account.period_end),
            account.cancel_at_period_end,
            account.trial_end.map(format_time),
            account.past_due_since.map(format_time),
            account.stripe_version,
            now_rfc3339()
        ],
    )?;
    account.stored = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn intervals_clamp_the_day_and_roll_the_year() {
        assert_eq!(
            add_interval(datetime!(2026-01-31 10:00 UTC), Interval::Month),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            add_interval(datetime!(2026-12-15 00:00 UTC), Interval::Month),
            datetime!(2027-01-15 00:00 UTC)
        );
        assert_eq!(
            add_interval(datetime!(2028-02-29 00:00 UTC), Interval::Year),
            datetime!(2029-02-28 00:00 UTC)
        );
        assert_eq!(
            calendar_month(datetime!(2026-11-24 05:00 UTC)),
            (datetime!(2026-11-01 00:00 UTC), datetime!(2026-12-01 00:00 UTC))
        );
    }
}
