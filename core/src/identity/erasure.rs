//! Erasure of a person (GDPR): their account and personal data go; what others
//! need to keep (audit entries, org history) stays under a pseudonym (the account's
//! id, which no longer leads to anyone).

use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditEntry, erase_personal, record};
use crate::error::{Error, Result};
use crate::http::ClientInfo;
use crate::identity::users;
use crate::params;
use crate::platform::Platform;
use crate::runtime::events::Event;

/// Erases `user` in one transaction, on core's root connection:
/// - refuses while they are the last owner of an org (ownership must move first);
/// - publishes `user.erased` (with the email and name, so areas scrub their copies);
/// - removes their outbox mail, pending and finished jobs naming them, and the
///   personal part of audit entries about them;
/// - deletes the account (sessions, tokens and memberships cascade);
/// - audits the erasure under the pseudonym.
pub async fn erase_user(platform: &Platform, user: Uuid, actor: Uuid, client: &ClientInfo) -> Result<()> {
    let p = platform.clone();
    let client = client.clone();
    let root = platform.root().clone();
    let orgs = tokio::task::spawn_blocking(move || {
        root.write_blocking(|tx| {
            let account = users::get(tx, user)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            let sole_owner: Vec<String> = tx.query_all(
                "SELECT o.slug FROM tenant_memberships m JOIN organizations o ON o.id = m.org_id
                 WHERE m.user_id = ?1 AND m.role = 'owner'
                   AND (SELECT count(*) FROM tenant_memberships x WHERE x.org_id = m.org_id AND x.role = 'owner') = 1",
                params![user],
                |r| r.get(0),
            )?;
            if !sole_owner.is_empty() {
                return Err(Error::Conflict(format!(
                    "the user is the only owner of {}; transfer ownership or delete those orgs first",
                    sole_owner.join(", ")
                )));
            }
            let orgs: Vec<String> = tx.query_all(
                "SELECT org_id FROM tenant_memberships WHERE user_id = ?1",
                params![user],
                |r| r.get(0),
            )?;
            p.events().publish(
                tx,
                &Event::new(
                    "user.erased",
                    json!({ "user_id": user, "email": account.email, "name": account.name }),
                )
                .actor(actor),
            )?;
            let pattern = format!("%{}%", crate::storage::db::like_literal(&account.email));
            tx.execute("DELETE FROM mail_outbox WHERE to_address = ?1", params![account.email])?;
            tx.execute("DELETE FROM jobs WHERE payload LIKE ?1 ESCAPE '\\'", params![pattern])?;
            erase_personal(tx, user, &account.email)?;
            tx.execute("DELETE FROM users WHERE id = ?1", params![user])?;
            record(
                tx,
                &AuditEntry::new("user.erased")
                    .actor(actor)
                    .target("user", user)
                    .client(&client)
                    .details(json!({ "memberships_removed": orgs.len() })),
            )?;
            Ok(orgs)
        })
    })
    .await??;
    platform.identity().forget_user(user);
    for org in orgs {
        if let Ok(org) = Uuid::parse_str(&org) {
            platform.tenancy().forget_org(org);
        }
    }
    Ok(())
}
