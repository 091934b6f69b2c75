//! The permissions of organizations, members, roles, API keys and the org audit
//! log, and the extractors that check them.

use plinth_core::org_permission;
use plinth_core::tenancy::{Permission, Role};

pub(crate) const ORG_READ: &str = "org:read";

/// The catalog entries, with the lowest preset holding each (the roles table).
pub(crate) fn permissions() -> Vec<Permission> {
    vec![
        Permission::new(
            ORG_READ,
            Role::Viewer,
            "Read the organization, its members, roles and activity feed.",
        ),
        Permission::new(
            "org:update",
            Role::Admin,
            "Rename the organization or change its slug.",
        ),
        Permission::new(
            "org:delete",
            Role::Owner,
            "Delete the organization and all its data (owner power).",
        ),
        Permission::new(
            "members:invite",
            Role::Admin,
            "List, send, resend and revoke invitations.",
        ),
        Permission::new(
            "members:manage",
            Role::Admin,
            "Change members' roles (below owner) and remove members.",
        ),
        Permission::new(
            "owners:manage",
            Role::Owner,
            "Grant or revoke the owner role and transfer ownership (owner power).",
        ),
        Permission::new(
            "roles:manage",
            Role::Admin,
            "Create, change and delete the organization's custom roles.",
        ),
        Permission::new(
            "api_keys:manage",
            Role::Admin,
            "Create, list and revoke the organization's API keys.",
        ),
        Permission::new("audit:read", Role::Admin, "Read the organization's audit log."),
    ]
}

org_permission!(
    /// A member or API key that may read the organization.
    pub(crate) ReadOrg = "org:read"
);
org_permission!(
    /// A member or API key that may rename the organization.
    pub(crate) UpdateOrg = "org:update"
);
org_permission!(
    /// An owner: deleting the organization is an owner power.
    pub(crate) DeleteOrg = "org:delete"
);
org_permission!(
    /// A member or API key that may manage invitations.
    pub(crate) InviteMembers = "members:invite"
);
org_permission!(
    /// A member or API key that may change roles and remove members.
    pub(crate) ManageMembers = "members:manage"
);
org_permission!(
    /// An owner: granting owner and transferring ownership are owner powers.
    pub(crate) ManageOwners = "owners:manage"
);
org_permission!(
    /// A member or API key that may manage custom roles.
    pub(crate) ManageRoles = "roles:manage"
);
org_permission!(
    /// A member or API key that may manage API keys.
    pub(crate) ManageApiKeys = "api_keys:manage"
);
org_permission!(
    /// A member or API key that may read the org audit log.
    pub(crate) ReadAudit = "audit:read"
);
