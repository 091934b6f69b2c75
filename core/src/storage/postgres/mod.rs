//! The PostgreSQL engine: the facade's binding to the synchronous `postgres`
//! client. The only place in Plinth, with `storage::sqlite`, that names an engine
//! crate.

pub(crate) mod bind;
pub(crate) mod copy;
pub(crate) mod dialect;
pub(crate) mod isolation;
pub mod listen;
pub(crate) mod logins;
pub(crate) mod migrate;
pub(crate) mod notes;
pub(crate) mod pool;
pub(crate) mod roles;

/// Core's schema on a fresh database of the test cluster (`None` without
/// PostgreSQL): the superuser's connection and URLs for the serving roles.
#[cfg(test)]
pub(crate) mod testing {
    use super::bind::PgConn;
    use super::roles::Roles;
    use crate::storage::isolation::CORE_TENANT_TABLES;
    use crate::storage::migrations::core_migrations;
    use crate::storage::sql::Sql;

    /// An empty database of the test cluster and a login role to serve with:
    /// (the superuser's URL of it, the role, the role's URL of it).
    pub(crate) fn empty_database(prefix: &str) -> Option<(String, String, String)> {
        let cluster = plinth_test_pg::cluster()?;
        let name = cluster.unique_name(prefix);
        let role = format!("{name}_app");
        let admin = PgConn::connect(&cluster.admin_url()).expect("admin");
        let admin = Sql::of(&admin);
        admin.batch(&format!("CREATE DATABASE {name}")).expect("database");
        admin
            .batch(&format!("CREATE ROLE {role} LOGIN NOBYPASSRLS"))
            .expect("role");
        Some((cluster.url(&name), cluster.url_as(&role, &name), role))
    }

    pub(crate) struct CoreDatabase {
        pub owner: PgConn,
        pub system_url: String,
        pub tenant_url: String,
    }

    pub(crate) fn core_database(prefix: &str) -> Option<CoreDatabase> {
        let cluster = plinth_test_pg::cluster()?;
        let name = cluster.unique_name(prefix);
        let (system, tenant) = (format!("{name}_system"), format!("{name}_tenant"));
        let admin = PgConn::connect(&cluster.admin_url()).expect("admin");
        let admin = Sql::of(&admin);
        admin.batch(&format!("CREATE DATABASE {name}")).expect("database");
        for role in [&system, &tenant] {
            admin
                .batch(&format!("CREATE ROLE {role} LOGIN NOBYPASSRLS"))
                .expect("role");
        }
        let owner = PgConn::connect(&cluster.url(&name)).expect("owner");
        let roles = Roles {
            system: &system,
            tenant: &tenant,
        };
        super::migrate::run(
            &owner,
            &core_migrations().expect("core"),
            CORE_TENANT_TABLES,
            &roles,
        )
        .expect("migrate");
        Some(CoreDatabase {
            owner,
            system_url: cluster.url_as(&system, &name),
            tenant_url: cluster.url_as(&tenant, &name),
        })
    }
}
