//! Demo and load-test data (`plinth seed --demo [--orgs N --members M]`).
//!
//! Core seeds the accounts; each plugin adds its part through [`crate::Plugin::seed`]
//! in the same transaction. Seeding is idempotent: what exists is left alone.
//! Production refuses demo data, whose credentials are public.

use rusqlite::Transaction;

use crate::error::{Error, Result};
use crate::identity::{passwords, users};

/// The password of every demo and synthetic account.
pub const DEMO_PASSWORD: &str = "demo-password-1";

/// (email, name, platform staff)
pub const DEMO_USERS: [(&str, &str, bool); 5] = [
    ("owner@acme.test", "Olivia Owner", false),
    ("admin@acme.test", "Adam Admin", false),
    ("member@acme.test", "Mia Member", false),
    ("viewer@acme.test", "Victor Viewer", false),
    ("staff@plinth.test", "Sam Staff", true),
];

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
}

/// Core's part: demo accounts and the synthetic tenants' accounts.
pub(crate) fn seed_core(tx: &Transaction<'_>, options: &SeedOptions) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    if options.demo {
        for (email, name, staff) in DEMO_USERS {
            if users::find_id_by_email(tx, email)?.is_some() {
                continue;
            }
            let hash = passwords::hash(DEMO_PASSWORD)?;
            users::create(
                tx,
                &users::NewUser {
                    email,
                    name,
                    password_hash: &hash,
                    is_platform_admin: staff,
                    email_verified: true,
                },
            )?;
            report.users_created += 1;
        }
    }
    if options.orgs > 0 && options.members > 0 {
        // One hash for all synthetic accounts: hashing 200,000 passwords with argon2
        // would take an hour, and they share the password anyway.
        let hash = passwords::hash(DEMO_PASSWORD)?;
        let mut exists = tx.prepare_cached("SELECT 1 FROM users WHERE email = ?1")?;
        for org in 0..options.orgs {
            for member in 0..options.members {
                let email = SeedOptions::synthetic_email(org, member);
                if exists.exists([&email])? {
                    continue;
                }
                users::create(
                    tx,
                    &users::NewUser {
                        email: &email,
                        name: &format!("Member {member} of Org {org}"),
                        password_hash: &hash,
                        is_platform_admin: false,
                        email_verified: true,
                    },
                )?;
                report.users_created += 1;
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
