//! Permissions: `area:action` strings that plugins contribute with a description
//! and the lowest preset role holding them, so the four presets reproduce the
//! roles table and custom roles and API keys pick from one catalog.
//!
//! A permission whose lowest preset is `owner` is an owner power (delete the org,
//! grant or revoke owner): no custom role or API key may carry it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tenancy::Role;

/// One entry of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub key: Cow<'static, str>,
    pub description: Cow<'static, str>,
    /// The lowest preset that holds it (every preset above holds it too).
    pub preset: Role,
}

impl Permission {
    pub const fn new(key: &'static str, preset: Role, description: &'static str) -> Self {
        Permission {
            key: Cow::Borrowed(key),
            description: Cow::Borrowed(description),
            preset,
        }
    }

    /// Held by owners only; never grantable to a custom role or an API key.
    pub fn owner_only(&self) -> bool {
        self.preset == Role::Owner
    }
}

/// Whether `key` reads `area:action` (lowercase letters, digits and `_`).
pub fn well_formed(key: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    matches!(key.split_once(':'), Some((area, action)) if part(area) && part(action))
}

/// A set of permission keys: what a role or an API key may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(Arc<BTreeSet<String>>);

impl Permissions {
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Permissions(Arc::new(keys.into_iter().map(Into::into).collect()))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(key)
    }

    /// Whether every permission of `other` is in this set.
    pub fn covers(&self, other: &Permissions) -> bool {
        other.0.is_subset(&self.0)
    }

    /// The permissions of `other` missing here, in order.
    pub fn missing<'a>(&self, other: &'a Permissions) -> Vec<&'a str> {
        other
            .0
            .iter()
            .filter(|k| !self.0.contains(*k))
            .map(String::as_str)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }

    /// The set as stored: a JSON array of keys.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&*self.0).unwrap_or_else(|_| "[]".into())
    }

    /// A stored set; keys the catalog no longer has (a disabled plugin's) are kept
    /// but grant nothing, since no operation asks for them.
    pub fn from_json(text: &str) -> Result<Self> {
        let keys: Vec<String> = serde_json::from_str(text)?;
        Ok(Permissions::new(keys))
    }
}

/// Every permission the enabled plugins declared, and the presets built from them.
#[derive(Debug)]
pub struct Catalog {
    entries: Vec<Permission>,
    presets: [Permissions; 4],
}

const PRESETS: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

impl Catalog {
    /// The catalog of `entries`: a malformed key, or one key declared twice with
    /// different meanings, is refused (a start-up error naming it).
    pub fn new(entries: impl IntoIterator<Item = Permission>) -> Result<Self> {
        let mut sorted: Vec<Permission> = Vec::new();
        for entry in entries {
            if !well_formed(&entry.key) {
                return Err(Error::internal(format!(
                    "permission `{}` is not `area:action` (lowercase letters, digits, `_`)",
                    entry.key
                )));
            }
            match sorted.iter().find(|p| p.key == entry.key) {
                Some(same) if *same == entry => {}
                Some(_) => {
                    return Err(Error::internal(format!(
                        "permission `{}` is declared twice with different meanings",
                        entry.key
                    )));
                }
                None => sorted.push(entry),
            }
        }
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let presets = PRESETS.map(|role| {
            Permissions::new(
                sorted
                    .iter()
                    .filter(|p| role.at_least(p.preset))
                    .map(|p| p.key.to_string()),
            )
        });
        Ok(Catalog {
            entries: sorted,
            presets,
        })
    }

    pub fn entries(&self) -> &[Permission] {
        &self.entries
    }

    pub fn get(&self, key: &str) -> Option<&Permission> {
        self.entries
            .binary_search_by(|p| p.key.as_ref().cmp(key))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// What a preset role holds.
    pub fn preset(&self, role: Role) -> &Permissions {
        let at = PRESETS.iter().position(|r| *r == role).unwrap_or(3);
        &self.presets[at]
    }

    /// The permissions `held` may put into `what` (a custom role or an API key):
    /// `keys` must be in the catalog and none an owner power (422 naming `field`
    /// otherwise), and all held (403, see [`require_covers`]).
    pub fn grantable(
        &self,
        field: &str,
        keys: &[String],
        held: &Permissions,
        what: &str,
    ) -> Result<Permissions> {
        for key in keys {
            match self.get(key) {
                None => return Err(Error::invalid(field, format!("unknown permission `{key}`"))),
                Some(p) if p.owner_only() => {
                    return Err(Error::invalid(
                        field,
                        format!("`{key}` is an owner power: only the owner role carries it"),
                    ));
                }
                Some(_) => {}
            }
        }
        let wanted = Permissions::new(keys.iter().cloned());
        require_covers(held, &wanted, what)?;
        Ok(wanted)
    }
}

/// An actor may hand out (in a role, an invitation or an API key) only what it
/// holds itself: 403 naming what it lacks.
pub fn require_covers(actor: &Permissions, wanted: &Permissions, what: &str) -> Result<()> {
    let missing = actor.missing(wanted);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "{what} carries permissions you do not hold: {}",
        missing.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new([
            Permission::new("org:read", Role::Viewer, "read"),
            Permission::new("usage:record", Role::Member, "record"),
            Permission::new("org:update", Role::Admin, "update"),
            Permission::new("org:delete", Role::Owner, "delete"),
        ])
        .expect("catalog")
    }

    #[test]
    fn presets_hold_what_their_rank_reaches() {
        let c = catalog();
        assert_eq!(c.preset(Role::Viewer).to_vec(), ["org:read"]);
        assert_eq!(c.preset(Role::Member).to_vec(), ["org:read", "usage:record"]);
        assert!(c.preset(Role::Owner).contains("org:delete"));
        assert!(!c.preset(Role::Admin).contains("org:delete"));
        assert!(c.preset(Role::Owner).covers(c.preset(Role::Admin)));
        assert_eq!(
            c.preset(Role::Member).missing(c.preset(Role::Admin)),
            ["org:update"]
        );
    }

    #[test]
    fn owner_powers_and_unknown_keys_are_not_grantable() {
        let c = catalog();
        let owner = c.preset(Role::Owner).clone();
        let grant = |keys: &[&str], held: &Permissions| {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            c.grantable("permissions", &keys, held, "the role")
        };
        assert!(grant(&["org:update"], &owner).is_ok());
        assert!(matches!(
            grant(&["org:delete"], &owner),
            Err(Error::Validation(_))
        ));
        assert!(matches!(grant(&["org:fly"], &owner), Err(Error::Validation(_))));
        assert!(matches!(
            grant(&["org:update"], c.preset(Role::Member)),
            Err(Error::Forbidden(_))
        ));
    }

    #[test]
    fn malformed_or_conflicting_declarations_are_refused() {
        assert!(Catalog::new([Permission::new("Org:Read", Role::Viewer, "x")]).is_err());
        assert!(Catalog::new([Permission::new("orgread", Role::Viewer, "x")]).is_err());
        assert!(
            Catalog::new([
                Permission::new("org:read", Role::Viewer, "x"),
                Permission::new("org:read", Role::Admin, "x"),
            ])
            .is_err()
        );
        assert!(well_formed("api_keys:manage"));
    }
}
