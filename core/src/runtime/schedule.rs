//! Periodic work shared by every node: a task's turn is taken in the database.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;
use crate::params;
use crate::storage::db::{Db, now_millis};
use crate::storage::sql::Sql;

/// The longest a node waits between looks at a schedule, so a due task starts
/// within this of its time whichever node sees it first.
const MAX_POLL: Duration = Duration::from_secs(60);

/// When a schedule's first turn comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstTurn {
    /// As soon as a node first looks (start-up housekeeping).
    Now,
    /// One period after the schedule is first recorded.
    AfterOnePeriod,
}

/// Takes `kind`'s turn when it is due: moves its due time one period on and
/// answers true, or answers false when it is not due (or another node took it).
/// Atomic on both engines: the conditional update is one statement, and on
/// PostgreSQL an unbound write also holds the writers' lock.
pub fn take_turn(sql: &Sql<'_>, kind: &str, every: Duration, first: FirstTurn) -> Result<bool> {
    let now = now_millis();
    let period = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let first_due = match first {
        FirstTurn::Now => now,
        FirstTurn::AfterOnePeriod => now.saturating_add(period),
    };
    sql.execute(
        "INSERT INTO schedules (kind, due_at) VALUES (?1, ?2) ON CONFLICT (kind) DO NOTHING",
        params![kind, first_due],
    )?;
    let taken = sql.execute(
        "UPDATE schedules SET due_at = ?2 WHERE kind = ?1 AND due_at <= ?3",
        params![kind, now.saturating_add(period), now],
    )?;
    Ok(taken == 1)
}

/// Runs `task` once per `every` across all nodes serving `db`: this node looks a
/// few times a period (at most a minute apart) and runs `task` when it takes the
/// turn. Never returns; spawn it.
pub async fn run_every<F, Fut>(db: Db, kind: &'static str, every: Duration, first: FirstTurn, task: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut looks = tokio::time::interval((every / 4).clamp(Duration::from_millis(50), MAX_POLL));
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        looks.tick().await;
        match db.write(move |sql| take_turn(sql, kind, every, first)).await {
            Ok(true) => task().await,
            Ok(false) => {}
            Err(e) => tracing::error!(kind, error = %e, "could not take a schedule's turn"),
        }
    }
}
