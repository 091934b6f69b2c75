//! plinth-teams: organizations and their members, invitations, the activity feed
//! and the org audit log, on core's tenancy.
//!
//! It declares the org permissions (`access.rs`); every org-scoped handler takes
//! the extractor of the permission it needs (a member's role or an org API key)
//! and touches tenant data only through the org-bound handle it returns. Custom
//! roles, API keys and the permission catalog are served here, on core's storage.
//! Changes publish domain events; this plugin turns every org event (its own and
//! other plugins') into an activity item.

mod access;
mod activity;
mod api;
mod api_keys;
mod invitations;
mod members;
mod orgs;
mod roles;

use std::sync::Arc;

use plinth_core::runtime::events::EventBusBuilder;
use plinth_core::seed::SeedContext;
use plinth_core::seed::SeedOptions;
use plinth_core::storage::migrations::Migration;
use plinth_core::tenancy::{Permission, TenantTable};
use plinth_core::{ApiPart, Platform, Plugin, Result};

pub use activity::record_activity;

/// The teams plugin.
pub struct Teams;

impl Teams {
    pub fn new() -> Arc<Teams> {
        Arc::new(Teams)
    }
}

impl Plugin for Teams {
    fn name(&self) -> &'static str {
        "teams"
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn description(&self) -> &'static str {
        "Organizations, members, invitations, activity feed and org audit log"
    }

    fn migrations(&self) -> Result<Vec<Migration>> {
        Ok(plinth_core::embed_migrations!(
            "teams",
            "../../data/migrations/teams/",
            [
                "0001_create_invitations.sql",
                "0002_create_activity.sql",
                "0003_invitation_roles.sql"
            ],
            postgres: each
        )?)
    }

    fn tenant_tables(&self) -> Vec<TenantTable> {
        vec![TenantTable::new("invitations"), TenantTable::new("activity")]
    }

    fn api(&self, platform: &Platform) -> Result<Option<ApiPart>> {
        let api = api::TeamsApi {
            platform: platform.clone(),
        };
        let part = ApiPart::new((
            orgs::OrgsApi(api.clone()),
            members::MembersApi::new(api.clone()),
            invitations::InvitationsApi(api.clone()),
            activity::ActivityApi,
            roles::RolesApi(api.clone()),
            api_keys::ApiKeysApi(api.clone()),
        ))?
        .tag_order(&["Orgs", "Members", "Invitations", "Activity", "Roles", "ApiKeys"])
        .permissions(&[
            ("getOrg", "org:read"),
            ("updateOrg", "org:update"),
            ("deleteOrg", "org:delete"),
            ("listMembers", "org:read"),
            ("updateMemberRole", "members:manage"),
            ("removeMember", "members:manage"),
            ("transferOwnership", "owners:manage"),
            ("listInvitations", "members:invite"),
            ("createInvitation", "members:invite"),
            ("revokeInvitation", "members:invite"),
            ("resendInvitation", "members:invite"),
            ("listActivity", "org:read"),
            ("listOrgAuditLogs", "audit:read"),
            ("listRoles", "org:read"),
            ("createRole", "roles:manage"),
            ("updateRole", "roles:manage"),
            ("deleteRole", "roles:manage"),
            ("listApiKeys", "api_keys:manage"),
            ("createApiKey", "api_keys:manage"),
            ("revokeApiKey", "api_keys:manage"),
        ])?;
        Ok(Some(part))
    }

    fn permissions(&self) -> Vec<Permission> {
        access::permissions()
    }

    fn subscribe(&self, bus: &mut EventBusBuilder) {
        activity::subscribe(bus);
    }

    fn seed(&self, ctx: &SeedContext<'_>, options: &SeedOptions) -> Result<()> {
        activity::seed(ctx, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/migrations/teams");
        let on_disk = Migration::load_dir("teams", &dir).expect("read dir");
        assert_eq!(on_disk, Teams.migrations().expect("embedded"));
    }
}
