//! Demo and load-test data (`plinth seed --demo [--orgs N --members M]`).
//!
//! Core seeds the accounts; each plugin adds its part through [`crate::Plugin::seed`]
//! in the same transaction. Seeding is idempotent: what exists is left alone.
//! Production refuses demo data, whose credentials are public.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identity::{passwords, users};
use crate::storage::sql::Sql;
use crate::tenancy::{Role, bound};

pub use crate::identity::passwords::DEMO_PASSWORD;

/// (email, name, platform staff, role in Acme)
pub const DEMO_USERS: [(&str, &str, bool, Option<Role>); 5] = [
    ("owner@acme.test", "Olivia Owner", false, Some(Role::Owner)),
    ("admin@acme.test", "Adam Admin", false, Some(Role::Admin)),
    ("member@acme.test", "Mia Member", false, Some(Role::Member)),
    ("viewer@acme.test", "Victor Viewer", false, Some(Role::Viewer)),
    ("staff@plinth.test", "Sam Staff", true, None),
];

/// The demo organization.
pub const DEMO_ORG: (&str, &str) = ("Acme", "acme");

#[derive(Debug, Clone, Default)]
pub struct SeedOptions {
    /// Seed the demo organisation and accounts.
    pub demo: bool,
    /// Synthetic tenants for load tests.
    pub orgs: u32,
    /// Members per synthetic tenant.
    pub members: u32,
}

impl SeedOptions {
    /// The email of synthetic member `m` of synthetic org `o` (both from 0).
    pub fn synthetic_email(org: u32, member: u32) -> String {
        format!("member{member}@org{org}.load.test")
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub users_created: usize,
    pub orgs_created: usize,
}

/// Seeding writes tenant rows through the same views, binding its (root) connection
/// to each org in turn.
pub struct SeedContext<'a> {
    tx: Sql<'a>,
    binding: &'a crate::storage::db::Rebind<'a>,
}

impl<'a> SeedContext<'a> {
    pub(crate) fn new(tx: Sql<'a>, binding: &'a crate::storage::db::Rebind<'a>) -> Self {
        SeedContext { tx, binding }
    }

    /// Binds the seed's connection to `org` for the statements that follow.
    pub fn bind(&self, org: Uuid) -> Result<()> {
        (self.binding)(Some(org))
    }

    /// The seed's transaction, through the facade.
    pub fn sql(&self) -> Sql<'a> {
        self.tx
    }

    /// The demo org (Acme), once core's part of the seed has created it.
    pub fn demo_org(&self) -> Result<Option<Uuid>> {
        self.sql().query_opt(
            "SELECT id FROM organizations WHERE slug = ?1",
            crate::params![DEMO_ORG.1],
            |r| r.get(0),
        )
    }
}

impl crate::storage::sql::sealed::Raw for SeedContext<'_> {
    #[allow(private_interfaces)]
    fn raw(&self, inside: crate::storage::sql::sealed::Inside) -> crate::storage::sql::Engine<'_> {
        self.tx.raw(inside)
    }
}

/// The org with this slug, created (bound to `ctx`) when missing.
fn org_by_slug(
    ctx: &SeedContext<'_>,
    name: &str,
    slug: &str,
    report: &mut SeedReport,
) -> Result<(Uuid, bool)> {
    let existing: Option<Uuid> = ctx.sql().query_opt(
        "SELECT id FROM organizations WHERE slug = ?1",
        crate::params![slug],
        |r| r.get(0),
    )?;
    if let Some(id) = existing {
        ctx.bind(id)?;
        return Ok((id, false));
    }
    let id = Uuid::now_v7();
    ctx.bind(id)?;
    bound::create_org(ctx, id, name, slug)?;
    report.orgs_created += 1;
    Ok((id, true))
}

fn ensure_user(conn: &Sql<'_>, email: &str, name: &str, hash: &str, staff: bool) -> Result<(Uuid, bool)> {
    if let Some(id) = users::find_id_by_email(conn, email)? {
        return Ok((id, false));
    }
    let id = users::create(
        conn,
        &users::NewUser {
            email,
            name,
            password_hash: hash,
            is_platform_admin: staff,
            email_verified: true,
        },
    )?;
    Ok((id, true))
}

/// Core's part: the demo accounts and Acme, and the synthetic tenants.
pub(crate) fn seed_core(ctx: &SeedContext<'_>, options: &SeedOptions) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    if options.demo {
        let mut acme_members = Vec::new();
        for (email, name, staff, role) in DEMO_USERS {
            let hash = passwords::hash(DEMO_PASSWORD)?;
            let (id, created) = ensure_user(&ctx.sql(), email, name, &hash, staff)?;
            report.users_created += usize::from(created);
            if let Some(role) = role {
                acme_members.push((id, role));
            }
        }
        let (acme, _) = org_by_slug(ctx, DEMO_ORG.0, DEMO_ORG.1, &mut report)?;
        for (user, role) in acme_members {
            if bound::role_of(ctx, user)?.is_none() {
                bound::add_member(ctx, acme, user, &role.into())?;
            }
        }
    }
    if options.orgs > 0 && options.members > 0 {
        // One hash for all synthetic accounts: hashing 200,000 passwords with argon2
        // would take an hour, and they share the password anyway.
        let hash = passwords::hash(DEMO_PASSWORD)?;
        for org in 0..options.orgs {
            let (org_id, created) =
                org_by_slug(ctx, &format!("Org {org}"), &format!("org-{org}"), &mut report)?;
            for member in 0..options.members {
                let email = SeedOptions::synthetic_email(org, member);
                let name = format!("Member {member} of Org {org}");
                let (user, new_user) = ensure_user(&ctx.sql(), &email, &name, &hash, false)?;
                report.users_created += usize::from(new_user);
                if created || bound::role_of(ctx, user)?.is_none() {
                    let role = if member == 0 { Role::Owner } else { Role::Member };
                    bound::add_member(ctx, org_id, user, &role.into())?;
                }
            }
        }
    }
    Ok(report)
}

pub(crate) fn refuse_in_production(production: bool) -> Result<()> {
    if production {
        return Err(Error::Forbidden(
            "demo data has public credentials and is refused when PLINTH_ENV=production".into(),
        ));
    }
    Ok(())
}
