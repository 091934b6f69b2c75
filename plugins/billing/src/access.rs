//! The billing and usage permissions, and the extractors that check them.

use plinth_core::org_permission;
use plinth_core::tenancy::{Permission, Role};

/// The catalog entries, with the lowest preset holding each (the roles table).
pub(crate) fn permissions() -> Vec<Permission> {
    vec![
        Permission::new(
            "billing:read",
            Role::Viewer,
            "Read the subscription and its plan.",
        ),
        Permission::new(
            "billing:manage",
            Role::Admin,
            "Start checkout, open the billing portal, cancel or resume, read invoices.",
        ),
        Permission::new("usage:read", Role::Viewer, "Read usage totals and quotas."),
        Permission::new("usage:record", Role::Member, "Record usage events."),
    ]
}

org_permission!(
    /// A member or API key that may read the subscription.
    pub(crate) ReadBilling = "billing:read"
);
org_permission!(
    /// A member or API key that may manage billing.
    pub(crate) ManageBilling = "billing:manage"
);
org_permission!(
    /// A member or API key that may read usage.
    pub(crate) ReadUsage = "usage:read"
);
org_permission!(
    /// A member or API key that may record usage.
    pub(crate) RecordUsage = "usage:record"
);
