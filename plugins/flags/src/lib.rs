//! plinth-flags: feature flags managed by platform staff, targeted by org, user,
//! plan, attribute and percentage rollout, with per-org overrides; evaluated from
//! memory for `/api/orgs/{org_id}/flags` and for every other area through core's
//! `FeatureFlags` seam (`Platform::flag`).

mod api;

/// The one permission of this area.
const READ_FLAGS: &str = "flags:read";

plinth_core::org_permission!(
    /// A member or API key that may evaluate the org's flags.
    pub(crate) ReadFlags = "flags:read"
);
pub mod model;
mod seed;
mod store;

use std::sync::Arc;

use plinth_core::platform::flags::{FeatureFlags, FlagContext, FlagFuture};
use plinth_core::seed::SeedContext;
use plinth_core::seed::SeedOptions;
use plinth_core::storage::migrations::Migration;
use plinth_core::tenancy::TenantTable;
use plinth_core::{ApiPart, Platform, Plugin, Result};

use store::Store;

/// The flags plugin.
pub struct Flags {
    store: Arc<Store>,
}

impl Flags {
    pub fn new() -> Arc<Flags> {
        Arc::new(Flags {
            store: Arc::new(Store::default()),
        })
    }
}

/// Core's seam, answered from the plugin's caches.
struct Evaluator(Arc<Store>);

impl FeatureFlags for Evaluator {
    fn evaluate<'a>(&'a self, platform: &'a Platform, ctx: &'a FlagContext, key: &'a str) -> FlagFuture<'a> {
        Box::pin(async move { Ok(self.0.evaluate_one(platform, ctx, key).await?.map(|e| e.value)) })
    }
}

impl Plugin for Flags {
    fn name(&self) -> &'static str {
        "flags"
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn description(&self) -> &'static str {
        "Feature flags: definitions, targeting rules, rollouts, per-org overrides, evaluation"
    }

    fn migrations(&self) -> Result<Vec<Migration>> {
        Ok(plinth_core::embed_migrations!(
            "flags",
            "../../data/migrations/flags/",
            ["0001_create_flags.sql"],
            postgres: each
        )?)
    }

    fn tenant_tables(&self) -> Vec<TenantTable> {
        vec![TenantTable::new("flag_overrides")]
    }

    fn api(&self, platform: &Platform) -> Result<Option<ApiPart>> {
        self.store.watch(platform);
        let api = api::FlagsApi {
            platform: platform.clone(),
            store: self.store.clone(),
        };
        let part = ApiPart::new((api::AdminFlagsApi(api.clone()), api::OrgFlagsApi(api)))?
            .permissions(&[("listOrgFlags", READ_FLAGS), ("getOrgFlag", READ_FLAGS)])?;
        Ok(Some(part))
    }

    fn permissions(&self) -> Vec<plinth_core::tenancy::Permission> {
        vec![plinth_core::tenancy::Permission::new(
            READ_FLAGS,
            plinth_core::tenancy::Role::Viewer,
            "Evaluate the feature flags for the organization.",
        )]
    }

    fn feature_flags(&self) -> Option<Arc<dyn FeatureFlags>> {
        Some(Arc::new(Evaluator(self.store.clone())))
    }

    fn seed(&self, ctx: &SeedContext<'_>, options: &SeedOptions) -> Result<()> {
        seed::seed(ctx, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/migrations/flags");
        let on_disk = Migration::load_dir("flags", &dir).expect("read dir");
        assert_eq!(on_disk, Flags::new().migrations().expect("embedded"));
    }
}
