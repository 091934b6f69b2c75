//! Tenant isolation on PostgreSQL, generated from the same declarations as on
//! SQLite ([`crate::storage::isolation`]), enforced by the server itself:
//!
//! - `tenant_<name>` gets `ENABLE` and `FORCE ROW LEVEL SECURITY` and one policy,
//!   `org_id = current_org()` for reading and writing, so even the table's owner
//!   sees only the bound org;
//! - `current_org()` reads the transaction-local setting `plinth.org`
//!   (`NULLIF(..., '')`: after a transaction an unset custom setting reads `''`);
//! - the view `<name>` plinth's SQL uses is `security_invoker` (a plain view would
//!   run with its owner's rights) and `WITH LOCAL CHECK OPTION`;
//! - what the declaration adds becomes column privileges of the serving role on
//!   the view: no INSERT of generated columns, UPDATE of the changeable columns
//!   only, DELETE only when deleting is allowed, SELECT only when read-only.
//!
//! Regenerated at every migration run inside its transaction (`CREATE OR REPLACE`,
//! `DROP POLICY IF EXISTS`), so a column added later reaches the view and grants.

use crate::error::Result;
use crate::params;
use crate::storage::isolation::{TenantTable, Writes, check_columns, identifier};
use crate::storage::sql::Sql;

/// The transaction-local setting holding the bound org.
pub(crate) const ORG_SETTING: &str = "plinth.org";

/// `current_org()`: the bound org's id, NULL when unbound.
const CURRENT_ORG: &str = "CREATE OR REPLACE FUNCTION current_org() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('plinth.org', true), '') $$";

/// Creates or refreshes the isolation of every declared table, granting the
/// serving role `role` what each declaration allows.
pub(crate) fn install(sql: &Sql<'_>, tables: &[TenantTable], role: &str) -> Result<()> {
    identifier(role)?;
    sql.batch(CURRENT_ORG)?;
    for table in tables {
        for statement in ddl(sql, table, role)? {
            sql.batch(&statement)?;
        }
    }
    Ok(())
}

/// The statements isolating one table.
fn ddl(sql: &Sql<'_>, table: &TenantTable, role: &str) -> Result<Vec<String>> {
    let base = table.table();
    let columns: Vec<(String, bool)> = sql.query_all(
        "SELECT a.attname::text, EXISTS (
             SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary
                AND a.attnum = ANY (i.indkey))
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname = ?1 AND n.nspname = current_schema() AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
        params![base],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    check_columns(table, columns.iter().map(|(c, _)| c.as_str()))?;
    let name = table.name;
    let all: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    let mut out = vec![
        format!("ALTER TABLE {base} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {base} FORCE ROW LEVEL SECURITY"),
        format!("DROP POLICY IF EXISTS plinth_org ON {base}"),
        format!(
            "CREATE POLICY plinth_org ON {base} USING (org_id = current_org()) \
             WITH CHECK (org_id = current_org())"
        ),
        format!(
            "CREATE OR REPLACE VIEW {name} WITH (security_invoker = true) AS \
             SELECT {} FROM {base} WHERE org_id = current_org() WITH LOCAL CHECK OPTION",
            all.join(", ")
        ),
    ];
    // The same privileges on the view and on the rows behind it: the view runs
    // with the caller's rights, so the caller needs them on the table too, and the
    // table then refuses what the view refuses.
    let inserted: Vec<&str> = all
        .iter()
        .copied()
        .filter(|c| !table.generated.contains(c))
        .collect();
    let updated: Vec<&str> = columns
        .iter()
        .filter(|(c, key)| !key && c != "org_id" && table.may_change(c))
        .map(|(c, _)| c.as_str())
        .collect();
    for target in [name, base.as_str()] {
        out.push(format!("REVOKE ALL ON {target} FROM {role}"));
        out.push(format!("GRANT SELECT ON {target} TO {role}"));
        if let Writes::All | Writes::NoDelete(_) = table.writes {
            out.push(format!(
                "GRANT INSERT ({}) ON {target} TO {role}",
                inserted.join(", ")
            ));
            if !updated.is_empty() {
                out.push(format!(
                    "GRANT UPDATE ({}) ON {target} TO {role}",
                    updated.join(", ")
                ));
            }
            if table.writes == Writes::All {
                out.push(format!("GRANT DELETE ON {target} TO {role}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::postgres::bind::PgConn;
    use uuid::Uuid;

    struct Fixture {
        owner: PgConn,
        url: String,
        role: String,
    }

    /// A new database with `tenant_gadgets`, isolated from its declaration, and a
    /// login role to serve with; `None` without PostgreSQL.
    fn fixture() -> Option<Fixture> {
        let cluster = plinth_test_pg::cluster()?;
        let name = cluster.unique_name("isolation");
        let admin = PgConn::connect(&cluster.admin_url()).expect("admin");
        let role = format!("app_{name}");
        let admin = Sql::of(&admin);
        admin.batch(&format!("CREATE DATABASE {name}")).expect("database");
        admin
            .batch(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB"
            ))
            .expect("role");
        let owner = PgConn::connect(&cluster.url(&name)).expect("owner");
        let sql = Sql::of(&owner);
        sql.batch(
            "CREATE TABLE tenant_gadgets (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                serial TEXT NOT NULL,
                size BIGINT NOT NULL DEFAULT 1
            )",
        )
        .expect("table");
        let declared = [TenantTable::new("gadgets")
            .immutable(&["serial"])
            .no_delete("gadgets are kept")];
        install(&sql, &declared, &role).expect("isolation");
        // Twice: regenerating is harmless.
        install(&sql, &declared, &role).expect("isolation again");
        Some(Fixture {
            owner,
            url: cluster.url_as(&role, &name),
            role,
        })
    }

    fn in_org<T>(conn: &PgConn, org: Uuid, f: impl FnOnce(Sql<'_>) -> Result<T>) -> Result<T> {
        conn.begin(&super::super::bind::bind_org_sql(org))?;
        let out = f(Sql::of(conn));
        conn.end(out.is_ok())?;
        out
    }

    fn count(sql: Sql<'_>, from: &str) -> Result<i64> {
        sql.query_one(&format!("SELECT count(*) FROM {from}"), params![], |r| r.get(0))
    }

    #[test]
    fn row_level_security_from_a_declaration_isolates_orgs_for_the_serving_role() {
        let Some(f) = fixture() else { return };
        let app = PgConn::connect(&f.url).expect("app").tenant();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let gadget = Uuid::now_v7();
        in_org(&app, a, |sql| {
            sql.execute(
                "INSERT INTO gadgets (id, org_id, serial) VALUES (?1, ?2, 'g-1')",
                params![gadget, a],
            )
        })
        .expect("insert in a");
        let size: i64 = in_org(&app, a, |sql| {
            sql.query_one("SELECT size FROM gadgets WHERE id = ?1", params![gadget], |r| {
                r.get(0)
            })
        })
        .expect("size");
        assert_eq!(size, 1, "the table's default applies through the view");

        // Unbound, and bound to b: nothing of a's, through the view or the table.
        assert_eq!(count(Sql::of(&app), "gadgets").expect("unbound"), 0);
        assert_eq!(count(Sql::of(&app), "tenant_gadgets").expect("unbound"), 0);
        in_org(&app, b, |sql| {
            assert_eq!(count(sql, "gadgets")?, 0);
            assert_eq!(count(sql, "tenant_gadgets")?, 0);
            let changed = sql.execute("UPDATE gadgets SET size = 9 WHERE id = ?1", params![gadget])?;
            assert_eq!(changed, 0, "b's update reaches no row of a");
            Ok(())
        })
        .expect("b");
        // Rows of another org are refused, through the view and the table.
        for target in ["gadgets", "tenant_gadgets"] {
            let refused = in_org(&app, a, |sql| {
                sql.execute(
                    &format!("INSERT INTO {target} (id, org_id, serial) VALUES (?1, ?2, 'x')"),
                    params![Uuid::now_v7(), b],
                )
            });
            assert!(refused.is_err(), "{target}: a row of b written while bound to a");
        }
        // The declaration's rules, as privileges.
        let immutable = in_org(&app, a, |sql| {
            sql.execute(
                "UPDATE gadgets SET serial = 'other' WHERE id = ?1",
                params![gadget],
            )
        });
        let immutable = immutable.expect_err("serial");
        assert!(
            format!("{immutable:?}").contains("permission denied"),
            "{immutable:?}"
        );
        let delete = in_org(&app, a, |sql| sql.execute("DELETE FROM gadgets", params![]));
        let delete = delete.expect_err("no delete");
        assert!(format!("{delete:?}").contains("permission denied"), "{delete:?}");
        assert_eq!(
            in_org(&app, a, |sql| sql
                .execute("UPDATE gadgets SET size = 3", params![]))
            .expect("size"),
            1
        );
        // FORCE ROW LEVEL SECURITY holds the table's owner too (unless superuser,
        // which no role Plinth serves with may be).
        let owner_role = format!("{}_owner", f.role);
        Sql::of(&f.owner)
            .batch(&format!(
                "CREATE ROLE {owner_role} LOGIN NOSUPERUSER NOBYPASSRLS; \
                 ALTER TABLE tenant_gadgets OWNER TO {owner_role}"
            ))
            .expect("owner role");
        let owner = PgConn::connect(&f.url.replace(&format!("{}@", f.role), &format!("{owner_role}@")))
            .expect("connect as owner");
        assert_eq!(
            count(Sql::of(&owner), "tenant_gadgets").expect("owner, unbound"),
            0
        );
        assert_eq!(count(Sql::of(&f.owner), "tenant_gadgets").expect("superuser"), 1);
    }

    #[test]
    fn tenant_sql_cannot_change_its_role_or_its_binding() {
        let Some(f) = fixture() else { return };
        let app = PgConn::connect(&f.url).expect("app").tenant();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        in_org(&app, a, |sql| {
            sql.execute(
                "INSERT INTO gadgets (id, org_id, serial) VALUES (?1, ?2, 's')",
                params![Uuid::now_v7(), a],
            )
        })
        .expect("a's gadget");
        let attempts = [
            "SET ROLE postgres".to_string(),
            "RESET ROLE".to_string(),
            format!("SET LOCAL plinth.org = '{a}'"),
            format!("set plinth.org = '{a}'"),
            format!("SELECT set_config('plinth.org', '{a}', true)"),
            format!("SELECT \"SET_CONFIG\"('plinth.org', '{a}', false)"),
            format!("SELECT count(*) FROM gadgets WHERE set_config('plinth.org', '{a}', true) IS NOT NULL"),
            format!("DO $$ BEGIN PERFORM set_config('plinth.org', '{a}', false); END $$"),
            "RESET ALL".to_string(),
            "DISCARD ALL".to_string(),
        ];
        for attempt in &attempts {
            let seen = in_org(&app, b, |sql| {
                let _ = sql.query_all(attempt, params![], |_| Ok(()));
                count(sql, "gadgets")
            });
            // Refused before the server, and the transaction still sees only b.
            assert_eq!(seen.ok(), Some(0), "{attempt}");
            assert!(
                crate::storage::postgres::bind::refused_on_tenant(attempt),
                "{attempt}"
            );
        }
        // Without the guard, the server itself refuses the serving role a superuser's role.
        let unguarded = PgConn::connect(&f.url).expect("app");
        let role = Sql::of(&unguarded).execute("SET ROLE postgres", params![]);
        let role = role.expect_err("set role");
        assert!(format!("{role:?}").contains("permission denied"), "{role:?}");
    }

    #[test]
    fn the_catalog_shows_forced_security_and_an_unprivileged_serving_role() {
        let Some(f) = fixture() else { return };
        let sql = Sql::of(&f.owner);
        let (enabled, forced): (bool, bool) = sql
            .query_one(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'tenant_gadgets'",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("pg_class");
        assert!(enabled && forced);
        let options: String = sql
            .query_one(
                "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'gadgets'",
                params![],
                |r| r.get(0),
            )
            .expect("view options");
        assert!(options.contains("security_invoker=true"), "{options}");
        let (superuser, bypass): (bool, bool) = sql
            .query_one(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ?1",
                params![f.role],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("role");
        assert!(!superuser && !bypass);
    }
}
