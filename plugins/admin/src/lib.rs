//! plinth-admin: the platform staff API under /api/admin: users (search, disable,
//! staff, sessions, impersonation, erasure), orgs (search, suspension, deletion),
//! the audit log (query, streaming export, chain verification) and monitoring
//! (stats, system). Every route requires platform staff acting as themselves;
//! every change is audited.

mod audit;
mod common;
mod monitor;
mod orgs;
mod users;

use std::sync::Arc;

use plinth_core::{ApiPart, Platform, Plugin, Result};

/// The admin plugin.
pub struct Admin;

impl Admin {
    pub fn new() -> Arc<Admin> {
        Arc::new(Admin)
    }
}

impl Plugin for Admin {
    fn name(&self) -> &'static str {
        "admin"
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn description(&self) -> &'static str {
        "Platform admin API: users, orgs, impersonation, audit log, stats and system"
    }

    fn api(&self, platform: &Platform) -> Result<Option<ApiPart>> {
        let api = common::AdminApi {
            platform: platform.clone(),
        };
        ApiPart::new((
            users::UsersApi(api.clone()),
            orgs::OrgsApi(api.clone()),
            audit::AuditApi(api.clone()),
            monitor::MonitorApi(api),
        ))
        .map(|part| Some(part.tag_order(&["AdminUsers", "AdminOrgs", "AdminAudit", "AdminSystem"])))
    }
}
