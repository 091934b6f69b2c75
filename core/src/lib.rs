//! plinth-core: the platform every Plinth feature area stands on.
//!
//! It owns configuration, the SQLite pool and migrations, the HTTP assembly
//! (middleware, problem+json errors, ops endpoints, the merged OpenAPI document),
//! the plugin contract, the domain-event bus, durable background jobs, the cache and
//! identity. Plugins depend on this crate and never on each other; whatever crosses
//! feature areas goes through the seams defined here.

pub mod audit;
pub mod backup;
pub mod cache;
pub mod changes;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod external;
pub mod flags;
mod group_commit;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod migrations;
pub mod openapi;
mod ops;
pub mod pagination;
pub mod platform;
pub mod plugin;
pub mod ratelimit;
pub mod rendered;
pub mod seed;
pub mod server;
pub mod sql;
mod stall;
pub mod tenancy;

/// The product's version (the workspace's): the OpenAPI document's `info.version`
/// and what `/api/admin/system` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use config::{Config, Environment};
pub use error::{Error, FieldError, Problem, Result};
pub use platform::Platform;
pub use plugin::{ApiPart, Plugin, Schedule};
pub use server::App;

/// Re-exported so plugins build their APIs against the exact versions core uses.
/// (The database engine is not: plugins use [`sql`].)
pub use poem;
pub use poem_openapi;
