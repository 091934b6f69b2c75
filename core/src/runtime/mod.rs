//! Runtime services every area uses: the domain-event bus, durable jobs, outgoing
//! mail, caches, metrics, rate limits, logging and the stall watchdog.

pub mod cache;
pub mod events;
pub mod jobs;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod ratelimit;
pub mod schedule;
pub(crate) mod stall;
