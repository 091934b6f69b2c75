//! The in-process domain-event bus: how feature areas react to each other without
//! depending on each other.
//!
//! Events are published inside the writer's transaction and every handler runs in
//! that same transaction, so a reaction (typically enqueueing a durable job) commits
//! or rolls back together with the change that caused it: no event is lost and none
//! fires for a change that did not happen. Handlers must therefore be quick and do
//! their slow work (HTTP calls, mail) in jobs.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::error::Result;
use crate::runtime::jobs::Jobs;
use crate::storage::sql::{Handle, Sql};

/// Something that happened, named `area.verb` (`member.added`, `subscription.changed`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub org_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub payload: Value,
}

impl Event {
    pub fn new(name: impl Into<String>, payload: Value) -> Self {
        Event {
            name: name.into(),
            org_id: None,
            actor_id: None,
            payload,
        }
    }

    pub fn org(mut self, org_id: Uuid) -> Self {
        self.org_id = Some(org_id);
        self
    }

    /// Who caused it, when a person did (API keys and the system have no user).
    pub fn actor(mut self, actor_id: impl Into<Option<Uuid>>) -> Self {
        self.actor_id = actor_id.into();
        self
    }
}

/// What a handler works with: the publisher's transaction, and the job queue for
/// anything slow.
pub struct EventContext<'a> {
    /// The publisher's transaction.
    pub tx: &'a Sql<'a>,
    pub jobs: &'a Jobs,
}

pub type Handler = Arc<dyn Fn(&Event, &EventContext<'_>) -> Result<()> + Send + Sync>;

/// Matches every event name.
pub const ALL_EVENTS: &str = "*";

struct Subscriber {
    plugin: &'static str,
    handler: Handler,
}

/// Collects subscriptions while plugins are registered.
#[derive(Default)]
pub struct EventBusBuilder {
    subscribers: HashMap<String, Vec<Subscriber>>,
    current_plugin: &'static str,
}

impl EventBusBuilder {
    pub(crate) fn for_plugin(&mut self, plugin: &'static str) -> &mut Self {
        self.current_plugin = plugin;
        self
    }

    /// Calls `handler` for every event named `name` (or every event for [`ALL_EVENTS`]),
    /// in registration order.
    pub fn on<F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        F: Fn(&Event, &EventContext<'_>) -> Result<()> + Send + Sync + 'static,
    {
        let plugin = self.current_plugin;
        self.subscribers
            .entry(name.to_string())
            .or_default()
            .push(Subscriber {
                plugin,
                handler: Arc::new(handler),
            });
        self
    }

    pub fn build(self, jobs: Jobs) -> EventBus {
        EventBus {
            subscribers: Arc::new(self.subscribers),
            jobs,
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    subscribers: Arc<HashMap<String, Vec<Subscriber>>>,
    jobs: Jobs,
}

impl EventBus {
    /// Runs every matching handler inside `tx`. The first failing handler aborts the
    /// publication, and the caller's transaction is expected to roll back with it.
    pub fn publish(&self, tx: &impl Handle, event: &Event) -> Result<()> {
        let exact = self.subscribers.get(&event.name).into_iter().flatten();
        let wildcard = self.subscribers.get(ALL_EVENTS).into_iter().flatten();
        let tx = Sql::from(tx);
        let ctx = EventContext {
            tx: &tx,
            jobs: &self.jobs,
        };
        for subscriber in exact.chain(wildcard) {
            (subscriber.handler)(event, &ctx).inspect_err(|err| {
                tracing::warn!(event = %event.name, plugin = subscriber.plugin, error = %err, "event handler failed");
            })?;
        }
        Ok(())
    }

    /// How many handlers listen to `name` (including wildcard ones).
    pub fn listeners(&self, name: &str) -> usize {
        self.subscribers.get(name).map_or(0, Vec::len) + self.subscribers.get(ALL_EVENTS).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::storage::sql::Sql;
    use crate::storage::sqlite::bind::open_in_memory;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn jobs() -> Jobs {
        Jobs::new(3, std::time::Duration::from_millis(10))
    }

    #[test]
    fn handlers_run_in_the_publishers_transaction() {
        let conn = open_in_memory().expect("db");
        let sql = Sql::of(&conn);
        sql.batch("CREATE TABLE reactions (name TEXT)").expect("table");
        let mut builder = EventBusBuilder::default();
        builder.for_plugin("test").on("member.added", |event, ctx| {
            ctx.tx
                .execute("INSERT INTO reactions VALUES (?1)", crate::params![event.name])?;
            Ok(())
        });
        let bus = builder.build(jobs());

        let count = || -> i64 {
            sql.query_one("SELECT count(*) FROM reactions", crate::params![], |r| r.get(0))
                .expect("count")
        };
        sql.batch("BEGIN").expect("begin");
        bus.publish(&sql, &Event::new("member.added", Value::Null))
            .expect("publish");
        bus.publish(&sql, &Event::new("org.deleted", Value::Null))
            .expect("publish");
        assert_eq!(count(), 1, "the handler wrote in the publisher's transaction");
        sql.batch("ROLLBACK").expect("rollback"); // the reaction goes with it
        assert_eq!(count(), 0);
    }

    #[test]
    fn a_failing_handler_stops_publication() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut builder = EventBusBuilder::default();
        builder.on("x", |_, _| Err(Error::Conflict("no".into())));
        let counted = calls.clone();
        builder.on(ALL_EVENTS, move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let bus = builder.build(jobs());
        assert_eq!(bus.listeners("x"), 2);
        let conn = open_in_memory().expect("db");
        let tx = Sql::of(&conn);
        assert!(bus.publish(&tx, &Event::new("x", Value::Null)).is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        bus.publish(&tx, &Event::new("y", Value::Null))
            .expect("wildcard only");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
