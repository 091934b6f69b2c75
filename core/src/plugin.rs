//! The plugin contract: how a feature area plugs into the platform.
//!
//! A built-in plugin is a crate exposing one value implementing [`Plugin`]; the
//! binary lists them once, in order. Everything a plugin brings (migrations, API and
//! its OpenAPI fragment, event subscriptions, job handlers, demo data) is declared
//! here, so switching a plugin off by configuration removes all of it at once.

use std::collections::HashMap;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::{OpenApi, OpenApiService};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::platform::JobHandler;
use crate::platform::Platform;
pub use crate::platform::PluginInfo;
use crate::platform::flags::FeatureFlags;
use crate::runtime::events::EventBusBuilder;
use crate::seed::SeedContext;
use crate::seed::SeedOptions;
use crate::storage::isolation::TenantTable;
use crate::storage::migrations::Migration;
use crate::tenancy::{Entitlements, Permission};

/// Routes of an API in poem's path syntax, as poem-openapi produces them.
pub(crate) type RouteTable = HashMap<String, HashMap<Method, BoxEndpoint<'static>>>;

pub trait Plugin: Send + Sync + 'static {
    /// Stable, lowercase name: the owner of its migrations, the name used to disable it.
    fn name(&self) -> &'static str;

    /// One line for `plinth plugins`.
    fn description(&self) -> &'static str;

    /// The plugin's version (its crate's, usually `env!("CARGO_PKG_VERSION")`).
    fn version(&self) -> &'static str {
        "0.0.0"
    }

    /// Its SQL migrations, usually embedded with [`crate::embed_migrations!`].
    fn migrations(&self) -> Result<Vec<Migration>> {
        Ok(Vec::new())
    }

    /// Its tenant tables: for each, its migrations create `tenant_<name>` and core
    /// generates the isolation (see [`crate::storage::isolation`]); no migration
    /// writes isolation DDL by hand.
    fn tenant_tables(&self) -> Vec<TenantTable> {
        Vec::new()
    }

    /// The permissions its operations check, each with the lowest preset role that
    /// holds it (see [`crate::tenancy::permissions`]).
    fn permissions(&self) -> Vec<Permission> {
        Vec::new()
    }

    /// Its HTTP API, built from a poem-openapi type with [`ApiPart::new`].
    fn api(&self, _platform: &Platform) -> Result<Option<ApiPart>> {
        Ok(None)
    }

    /// Subscribes to domain events of other areas.
    fn subscribe(&self, _bus: &mut EventBusBuilder) {}

    /// Handlers for its background jobs.
    fn jobs(&self) -> Vec<JobHandler> {
        Vec::new()
    }

    /// Job kinds to enqueue periodically (reconciliation, period closing): once a
    /// period across all nodes, skipped while one of that kind is waiting or running.
    fn schedules(&self) -> Vec<Schedule> {
        Vec::new()
    }

    /// Adds its part of the demo data, inside the seed's transaction (bind the
    /// context to an org before writing that org's rows).
    fn seed(&self, _ctx: &SeedContext<'_>, _options: &SeedOptions) -> Result<()> {
        Ok(())
    }

    /// Provides core's entitlements seam (plans, seats, features). The first enabled
    /// plugin that provides it wins; without one, everything is unlimited.
    fn entitlements(&self) -> Option<Arc<dyn Entitlements>> {
        None
    }

    /// Provides core's feature-flag seam; the first enabled provider wins.
    fn feature_flags(&self) -> Option<Arc<dyn FeatureFlags>> {
        None
    }
}

/// A periodic job: `kind` is enqueued (payload `{}`) every `every`, the first time
/// one period after the schedule is first recorded. The period is kept in the
/// database: a restart does not reset it, and with several nodes one of them
/// enqueues each run (see [`crate::runtime::schedule`]).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: &'static str,
    pub every: std::time::Duration,
}

/// A plugin's (or core's) API: its routes and its own OpenAPI document, merged by
/// core into one router and one document.
pub struct ApiPart {
    pub(crate) spec: Value,
    pub(crate) routes: RouteTable,
}

impl ApiPart {
    pub fn new<T: OpenApi + Clone>(api: T) -> Result<Self> {
        let spec = OpenApiService::new(api.clone(), "part", "0").spec();
        let spec: Value = serde_json::from_str(&spec).map_err(Error::internal)?;
        let mut routes = RouteTable::new();
        api.add_routes(&mut routes);
        Ok(ApiPart { spec, routes })
    }

    /// Documents the permission each org operation checks (`(operationId,
    /// permission)`): the operation gets `x-permission`, a sentence saying so, and
    /// the API-key security scheme beside the bearer one. An id the part does not
    /// have is refused, so a renamed operation cannot go undocumented quietly.
    pub fn permissions(mut self, table: &[(&str, &str)]) -> Result<Self> {
        for (id, permission) in table {
            let op = self
                .spec
                .get_mut("paths")
                .and_then(Value::as_object_mut)
                .into_iter()
                .flat_map(|paths| paths.values_mut())
                .filter_map(Value::as_object_mut)
                .flat_map(|item| item.values_mut())
                .find(|op| op.get("operationId").and_then(Value::as_str) == Some(id))
                .ok_or_else(|| {
                    Error::internal(format!("no operation `{id}` to document `{permission}` on"))
                })?;
            crate::http::openapi::document_permission(op, permission);
        }
        Ok(self)
    }

    /// Lists the part's tags in `order`, the order a newcomer should read them in
    /// Swagger UI (tags not named keep their place after the named ones). Without
    /// it they come alphabetically.
    pub fn tag_order(mut self, order: &[&str]) -> Self {
        if let Some(tags) = self.spec.get_mut("tags").and_then(Value::as_array_mut) {
            tags.sort_by_key(|t| {
                let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                order.iter().position(|o| *o == name).unwrap_or(order.len())
            });
        }
        self
    }
}
