//! What each role Plinth serves with may do on PostgreSQL, generated at the end of
//! every migration run from the catalog (as the isolation is from declarations),
//! mirroring SQLite's three pools and their authorizers:
//!
//! - the migration role (the URL's) owns the schema and serves the root pool:
//!   policies let it see every org, as SQLite's root connections do;
//! - the system role: every table but the tenant ones (SQLite's system authorizer
//!   denies those);
//! - the tenant role: the tenant views and tables (privileges from
//!   [`super::isolation`]), core's views of the bound org (`org`, `org_users`,
//!   `org_audit_log`, `plan_catalog`) through row-level security on the tables
//!   behind them (`users` in its public columns only), and appending to the shared
//!   logs (jobs, audit, mail), as SQLite's tenant authorizer allows.

use crate::error::Result;
use crate::params;
use crate::storage::isolation::{SHARED_LOGS, identifier};
use crate::storage::sql::Sql;

/// The roles the pools log in as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Roles<'a> {
    pub system: &'a str,
    pub tenant: &'a str,
}

/// Per core table the tenant role reads through a view: who it may see.
const TENANT_READS: [(&str, &str); 4] = [
    ("organizations", "id = current_org()"),
    (
        "users",
        "id IN (SELECT user_id FROM tenant_memberships WHERE org_id = current_org())",
    ),
    ("audit_log", "org_id = current_org()"),
    (
        "audit_personal",
        "entry_id IN (SELECT id FROM audit_log WHERE org_id = current_org())",
    ),
];

/// Grants every role what it may do; idempotent.
pub(crate) fn grant(sql: &Sql<'_>, roles: &Roles<'_>) -> Result<()> {
    for role in [roles.system, roles.tenant] {
        identifier(role)?;
        sql.batch(&format!("GRANT USAGE ON SCHEMA public TO {role}"))?;
    }
    let (system, tenant) = (roles.system, roles.tenant);
    let tables: Vec<String> = sql.query_all(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname NOT LIKE 'tenant\\_%'
           AND c.relname <> 'plinth_migrations'
         ORDER BY c.relname",
        params![],
        |r| r.get(0),
    )?;
    let (owner, database): (String, String) = sql.query_one(
        "SELECT current_user::text, current_database()::text",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut out = Vec::new();
    // No temporary tables, views or functions for the serving roles: SQL of a
    // tenant handle must not shape its own schema (PUBLIC may create them by
    // default; the owner keeps the right).
    out.push(format!(
        "REVOKE TEMPORARY ON DATABASE \"{}\" FROM PUBLIC, {system}, {tenant}",
        database.replace('"', "\"\"")
    ));
    for table in &tables {
        identifier(table)?;
        out.push(format!("REVOKE ALL ON {table} FROM {system}, {tenant}"));
        out.push(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {system}"
        ));
    }
    // Readiness (`/readyz`) asks whether every migration is applied.
    out.push(format!("GRANT SELECT ON plinth_migrations TO {system}"));
    // The tenant tables' own policy binds every role to current_org(); the owner
    // (root pool) reads across orgs, like SQLite's root connections.
    let tenant_tables: Vec<String> = sql.query_all(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'tenant\\_%'",
        params![],
        |r| r.get(0),
    )?;
    for table in &tenant_tables {
        identifier(table)?;
        out.push(format!("DROP POLICY IF EXISTS plinth_root ON {table}"));
        out.push(format!(
            "CREATE POLICY plinth_root ON {table} TO {owner} USING (true) WITH CHECK (true)"
        ));
    }
    // Core's part, once core's migrations have created it.
    if tables.iter().any(|t| t == "organizations") {
        out.extend(core_grants(&owner, roles, &tables));
    }
    for statement in out {
        sql.batch(&statement)?;
    }
    Ok(())
}

/// The tenant role's reach into core's tables, and everyone's policies there.
fn core_grants(owner: &str, roles: &Roles<'_>, tables: &[String]) -> Vec<String> {
    let (system, tenant) = (roles.system, roles.tenant);
    let mut out = Vec::new();
    for (table, visible) in TENANT_READS {
        out.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"));
        out.push(format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"));
        out.push(format!("DROP POLICY IF EXISTS plinth_all ON {table}"));
        out.push(format!(
            "CREATE POLICY plinth_all ON {table} TO {owner}, {system} USING (true) WITH CHECK (true)"
        ));
        out.push(format!("DROP POLICY IF EXISTS plinth_org ON {table}"));
        out.push(format!(
            "CREATE POLICY plinth_org ON {table} FOR SELECT TO {tenant} USING ({visible})"
        ));
    }
    // The bound org itself: read, created (bound to its new id), renamed,
    // suspended, deleted through `org`.
    out.push("DROP POLICY IF EXISTS plinth_org_write ON organizations".to_string());
    out.push(format!(
        "CREATE POLICY plinth_org_write ON organizations FOR ALL TO {tenant} \
         USING (id = current_org()) WITH CHECK (id = current_org())"
    ));
    out.push(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON organizations, org TO {tenant}"
    ));
    // Members' profiles: never the password hash or the staff flag.
    out.push(format!(
        "GRANT SELECT (id, email, name, email_verified_at) ON users TO {tenant}"
    ));
    out.push(format!("GRANT SELECT ON org_users, org_audit_log TO {tenant}"));
    for table in SHARED_LOGS {
        out.push(format!("GRANT INSERT ON {table} TO {tenant}"));
        out.push(format!("DROP POLICY IF EXISTS plinth_append ON {table}"));
    }
    for table in ["audit_log", "audit_personal"] {
        out.push(format!(
            "CREATE POLICY plinth_append ON {table} FOR INSERT TO {tenant} WITH CHECK (true)"
        ));
        out.push(format!("GRANT SELECT ON {table} TO {tenant}"));
    }
    // The catalogue is public: plans are not tenant data.
    if tables.iter().any(|t| t == "billing_plans") {
        out.push(format!(
            "GRANT SELECT ON billing_plans, plan_catalog TO {tenant}, {system}"
        ));
    }
    out
}
