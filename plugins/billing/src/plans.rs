//! The plan catalogue: stored in `billing_plans`, managed by staff, held in memory
//! (the entitlements seam is asked on tenant connections, which cannot read system
//! tables, and on hot paths, which should not).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use plinth_core::params;
use plinth_core::storage::sql::{Row, Sql, is_unique_violation};
use plinth_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// What happens when usage passes a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, poem_openapi::Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Over {
    /// Refuse the usage with 402.
    Block,
    /// Accept it and bill the overage.
    Bill,
}

/// A metered allowance per billing period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub limit: i64,
    pub over: Over,
    /// Overage price per `unit_size` units, in the plan's currency's minor unit.
    #[serde(default)]
    pub unit_price_cents: i64,
    #[serde(default = "one")]
    pub unit_size: i64,
}

fn one() -> i64 {
    1
}

impl Quota {
    /// What `used` costs beyond the limit (whole units, rounded up).
    pub fn overage_cents(&self, used: i64) -> i64 {
        let over = (used - self.limit).max(0);
        if self.over == Over::Block || over == 0 {
            return 0;
        }
        let size = self.unit_size.max(1);
        ((over + size - 1) / size).saturating_mul(self.unit_price_cents)
    }
}

/// How often a plan is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum Interval {
    Month,
    Year,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    /// Months in one period.
    pub fn months(self) -> u8 {
        match self {
            Interval::Month => 1,
            Interval::Year => 12,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub currency: String,
    pub interval: Interval,
    pub stripe_price_id: Option<String>,
    pub seat_limit: Option<u32>,
    pub quotas: BTreeMap<String, Quota>,
    pub features: Vec<String>,
    pub trial_days: u32,
    pub is_default: bool,
    pub archived: bool,
    pub position: i64,
}

/// Every plan, in display order, with the default one.
#[derive(Debug, Default)]
pub struct Catalog {
    plans: Vec<Plan>,
}

impl Catalog {
    pub fn all(&self) -> &[Plan] {
        &self.plans
    }

    pub fn get(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The plan of orgs without a (live) subscription. A migration creates one and a
    /// unique index keeps it single; a database without one is corrupt.
    pub fn default_plan(&self) -> Result<&Plan> {
        self.plans
            .iter()
            .find(|p| p.is_default)
            .ok_or_else(|| Error::internal("no default billing plan"))
    }

    pub fn by_stripe_price(&self, price: &str) -> Option<&Plan> {
        self.plans
            .iter()
            .find(|p| p.stripe_price_id.as_deref() == Some(price))
    }
}

/// The shared, swappable catalogue, read on first use (from any connection: the
/// `plan_catalog` view is readable from system and tenant connections alike).
#[derive(Default, Clone)]
pub struct Plans(Arc<RwLock<Option<Arc<Catalog>>>>);

impl Plans {
    pub fn current(&self, conn: &Sql<'_>) -> Result<Arc<Catalog>> {
        match self.cached() {
            Some(catalog) => Ok(catalog),
            None => self.reload(conn),
        }
    }

    /// The catalogue if it has been read already.
    pub fn cached(&self) -> Option<Arc<Catalog>> {
        match self.0.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the catalogue again (after every staff change).
    pub fn reload(&self, conn: &Sql<'_>) -> Result<Arc<Catalog>> {
        let catalog = Arc::new(load(conn)?);
        match self.0.write() {
            Ok(mut c) => *c = Some(catalog.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(catalog.clone()),
        }
        Ok(catalog)
    }
}

const COLUMNS: &str = "id, name, description, price_cents, currency, interval, stripe_price_id, seat_limit, \
                       quotas, features, trial_days, is_default, archived, position";

fn from_row(r: &Row<'_>) -> Result<Plan> {
    let interval: String = r.get(5)?;
    Ok(Plan {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        price_cents: r.get(3)?,
        currency: r.get(4)?,
        interval: Interval::parse(&interval)
            .ok_or_else(|| Error::internal(format!("unknown plan interval `{interval}`")))?,
        stripe_price_id: r.get(6)?,
        seat_limit: r.get(7)?,
        quotas: serde_json::from_str(&r.get::<String>(8)?)?,
        features: serde_json::from_str(&r.get::<String>(9)?)?,
        trial_days: r.get(10)?,
        is_default: r.get(11)?,
        archived: r.get(12)?,
        position: r.get(13)?,
    })
}

pub fn load(db: &Sql<'_>) -> Result<Catalog> {
    let plans = db.query_all(
        &format!("SELECT {COLUMNS} FROM plan_catalog ORDER BY position, price_cents, id"),
        params![],
        from_row,
    )?;
    Ok(Catalog { plans })
}

/// Inserts or replaces a plan; making it the default demotes the previous one.
pub fn save(db: &Sql<'_>, plan: &Plan) -> Result<()> {
    let now = plinth_core::storage::db::now_rfc3339();
    let sql = *db;
    if plan.is_default {
        sql.execute(
            "UPDATE billing_plans SET is_default = 0 WHERE id <> ?1 AND is_default = 1",
            params![plan.id],
        )?;
    }
    sql.execute(
        &format!(
            "INSERT INTO billing_plans ({COLUMNS}, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description,
                 price_cents = excluded.price_cents, currency = excluded.currency, interval = excluded.interval,
                 stripe_price_id = excluded.stripe_price_id, seat_limit = excluded.seat_limit,
                 quotas = excluded.quotas, features = excluded.features, trial_days = excluded.trial_days,
                 is_default = excluded.is_default, archived = excluded.archived, position = excluded.position,
                 updated_at = excluded.updated_at"
        ),
        params![
            plan.id,
            plan.name,
            plan.description,
            plan.price_cents,
            plan.currency,
            plan.interval.as_str(),
            plan.stripe_price_id,
            plan.seat_limit,
            serde_json::to_string(&plan.quotas)?,
            serde_json::to_string(&plan.features)?,
            plan.trial_days,
            plan.is_default,
            plan.archived,
            plan.position,
            now
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict("another plan already uses this Stripe price".into())
        } else {
            e
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overage_is_billed_in_whole_units_and_never_when_blocking() {
        let bill = Quota {
            limit: 1000,
            over: Over::Bill,
            unit_price_cents: 5,
            unit_size: 100,
        };
        assert_eq!(bill.overage_cents(900), 0);
        assert_eq!(bill.overage_cents(1000), 0);
        assert_eq!(bill.overage_cents(1001), 5);
        assert_eq!(bill.overage_cents(1250), 15);
        let block = Quota {
            over: Over::Block,
            ..bill
        };
        assert_eq!(block.overage_cents(5000), 0);
    }
}
