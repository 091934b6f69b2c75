//! Who each pool logs in as on PostgreSQL: the URL's role (it owns the schema,
//! migrates, and serves core's cross-tenant reads), and the system and tenant
//! roles, each with its own login so that `RESET ROLE` on a pooled connection
//! returns to that same unprivileged role.
//!
//! The serving roles' names default to `<database>_system` and `<database>_tenant`
//! (two deployments on one cluster never share a role); their passwords, unless
//! configured, are derived from `SECRET_KEY`, so `plinth migrate` (which creates
//! the roles when the URL's role may) and every `plinth serve` agree on them with
//! no more configuration.

use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::roles::Roles;
use crate::config::{Postgres, Secret};
use crate::error::{Error, Result};
use crate::storage::isolation::identifier;

/// One serving role and how to log in as it.
#[derive(Clone)]
pub(crate) struct Login {
    pub role: String,
    pub password: Secret,
    /// Whether the password came from configuration (else derived, and kept in
    /// step by `plinth migrate`).
    pub configured: bool,
    pub config: postgres::Config,
}

/// The three logins of a PostgreSQL deployment.
#[derive(Clone)]
pub(crate) struct Logins {
    pub owner: postgres::Config,
    pub system: Login,
    pub tenant: Login,
}

impl Logins {
    pub(crate) fn from_config(pg: &Postgres, secret_key: &Secret) -> Result<Self> {
        let owner = postgres::Config::from_str(pg.url.expose())
            .map_err(|e| Error::internal(format!("DATABASE_URL is not a PostgreSQL URL: {e}")))?;
        let database = owner
            .get_dbname()
            .or(owner.get_user())
            .ok_or_else(|| Error::internal("DATABASE_URL names no database"))?;
        let prefix: String = database
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '_') => c,
                _ => '_',
            })
            .collect();
        let login = |name: &Option<String>, password: &Option<Secret>, suffix: &str| -> Result<Login> {
            let role = name
                .as_deref()
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| format!("{prefix}_{suffix}"));
            identifier(&role).map_err(|_| {
                Error::internal(format!(
                    "PLINTH_PG_{}_ROLE: `{role}` is not a plain role name (letters, digits, _)",
                    suffix.to_ascii_uppercase()
                ))
            })?;
            let password = password
                .clone()
                .unwrap_or_else(|| derived_password(secret_key, &role));
            let mut config = owner.clone();
            config.user(&role).password(password.expose());
            Ok(Login {
                role,
                password,
                configured: false,
                config,
            })
        };
        let mut system = login(&pg.system_role, &pg.system_password, "system")?;
        system.configured = pg.system_password.is_some();
        let mut tenant = login(&pg.tenant_role, &pg.tenant_password, "tenant")?;
        tenant.configured = pg.tenant_password.is_some();
        if system.role == tenant.role {
            return Err(Error::internal(
                "PLINTH_PG_SYSTEM_ROLE and PLINTH_PG_TENANT_ROLE must differ: tenant data is isolated by role",
            ));
        }
        Ok(Logins {
            owner,
            system,
            tenant,
        })
    }

    pub(crate) fn roles(&self) -> Roles<'_> {
        Roles {
            system: &self.system.role,
            tenant: &self.tenant.role,
        }
    }
}

/// HMAC-SHA256(SECRET_KEY, role) in hex: stable for a deployment, unguessable
/// without its secret.
fn derived_password(secret_key: &Secret, role: &str) -> Secret {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret_key.expose().as_bytes()) else {
        // HMAC takes keys of any length; kept total rather than unwrapped.
        return Secret::new(String::new());
    };
    mac.update(b"plinth postgres role\0");
    mac.update(role.as_bytes());
    Secret::new(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> Postgres {
        Postgres {
            url: Secret::new(url),
            system_role: None,
            tenant_role: None,
            system_password: None,
            tenant_password: None,
        }
    }

    #[test]
    fn roles_default_to_the_database_name_and_passwords_to_the_secret() {
        let key = Secret::new("k".repeat(40));
        let logins = Logins::from_config(&pg("postgres://owner:pw@db:5433/My-App"), &key).expect("logins");
        assert_eq!(logins.system.role, "my_app_system");
        assert_eq!(logins.tenant.role, "my_app_tenant");
        assert_eq!(logins.tenant.config.get_user(), Some("my_app_tenant"));
        assert_eq!(logins.tenant.config.get_dbname(), Some("My-App"));
        assert_ne!(logins.system.password, logins.tenant.password);
        let again = Logins::from_config(&pg("postgres://owner:pw@db:5433/My-App"), &key).expect("logins");
        assert_eq!(
            again.tenant.password, logins.tenant.password,
            "stable per deployment"
        );
        let other = Logins::from_config(
            &pg("postgres://owner:pw@db:5433/My-App"),
            &Secret::new("x".repeat(40)),
        )
        .expect("logins");
        assert_ne!(other.tenant.password, logins.tenant.password);
        assert!(!logins.tenant.configured);
    }

    #[test]
    fn configured_names_must_be_plain_and_distinct() {
        let key = Secret::new("k".repeat(40));
        let mut bad = pg("postgres://o@db/app");
        bad.tenant_role = Some("x; DROP TABLE users".into());
        assert!(Logins::from_config(&bad, &key).is_err());
        let mut same = pg("postgres://o@db/app");
        same.tenant_role = Some("app_system".into());
        assert!(Logins::from_config(&same, &key).is_err());
        assert!(Logins::from_config(&pg("mysql://o@db/app"), &key).is_err());
    }
}
