//! plinth-core: the platform every Plinth feature area stands on.
//!
//! It owns configuration, the SQLite pool and migrations, the HTTP assembly
//! (middleware, problem+json errors, ops endpoints, the merged OpenAPI document),
//! the plugin contract, the domain-event bus, durable background jobs, the cache and
//! identity. Plugins depend on this crate and never on each other; whatever crosses
//! feature areas goes through the seams defined here.

// Layers, bottom up: foundation (config, error), storage, runtime, http; then
// identity, tenancy and audit; the platform handle, the plugin contract and the
// server that assembles them on top. A module imports only from its layer or below.
pub mod config;
pub mod error;

pub mod http;
pub mod runtime;
pub mod storage;

pub mod audit;
pub mod identity;
pub mod tenancy;

pub mod external;

pub mod platform;
pub mod plugin;
pub mod seed;
pub mod server;

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

/// What [`org_permission!`] expands to needs, so plugins need not name poem.
#[doc(hidden)]
pub mod __private {
    pub use poem::Request;
    pub use poem::Result as PoemResult;
    pub use poem_openapi::auth::Bearer;
}
