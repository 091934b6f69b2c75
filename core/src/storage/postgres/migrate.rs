//! The migration run on PostgreSQL: one transaction holding an advisory lock, so
//! processes (nodes) migrating one database at the same moment take turns and the
//! later ones find nothing left to do; each migration in a savepoint with its
//! record; then the isolation of the declared tenant tables.

use super::bind::PgConn;
use super::logins::{Login, Logins};
use super::roles::Roles;
use crate::error::{Error, Result};
use crate::params;
use crate::storage::isolation::TenantTable;
use crate::storage::migrations::{Migration, apply_pending};
use crate::storage::sql::Sql;

/// The advisory lock every migration run takes ("plinth" in ASCII).
const MIGRATION_LOCK: i64 = 0x706c_696e_7468;

/// Applies every pending migration; returns what was applied. What applied before
/// a failing migration stays applied, as on SQLite. Then the tenant tables'
/// isolation and every role's privileges are brought up to date.
pub fn run(
    conn: &PgConn,
    set: &[Migration],
    tenant_tables: &[TenantTable],
    roles: &Roles<'_>,
) -> Result<Vec<Migration>> {
    run_with(conn, set, tenant_tables, roles, None)
}

/// [`run`] for a deployment: the serving roles are created first when missing
/// (and the URL's role may create roles), under the same lock.
pub(crate) fn run_serving(
    conn: &PgConn,
    set: &[Migration],
    tenant_tables: &[TenantTable],
    logins: &Logins,
) -> Result<Vec<Migration>> {
    run_with(conn, set, tenant_tables, &logins.roles(), Some(logins))
}

fn run_with(
    conn: &PgConn,
    set: &[Migration],
    tenant_tables: &[TenantTable],
    roles: &Roles<'_>,
    logins: Option<&Logins>,
) -> Result<Vec<Migration>> {
    let sql = Sql::of(conn);
    sql.batch("BEGIN")?;
    let outcome = (|| {
        // Held to the end of the transaction: the next run plans after this commit.
        sql.query_one(
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(?1)) AS locked",
            params![MIGRATION_LOCK],
            |_| Ok(()),
        )?;
        if let Some(logins) = logins {
            ensure_roles(&sql, logins)?;
        }
        let pending = match apply_pending(&sql, set)? {
            Ok(pending) => pending,
            failed => return Ok(failed),
        };
        super::isolation::install(&sql, tenant_tables, roles.tenant)?;
        super::roles::grant(&sql, roles)?;
        super::notes::install(&sql)?;
        Ok(Ok(pending))
    })();
    match outcome {
        Ok(applied) => {
            sql.batch("COMMIT")?;
            applied
        }
        Err(e) => {
            sql.batch("ROLLBACK")?;
            Err(e)
        }
    }
}

/// Creates each serving role that is missing, when the URL's role may; refuses
/// to serve with a role that is superuser or bypasses row-level security. A
/// derived password is set again on every run, so it follows `SECRET_KEY`.
fn ensure_roles(sql: &Sql<'_>, logins: &Logins) -> Result<()> {
    let (owner, may_create): (String, bool) = sql.query_one(
        "SELECT rolname::text, rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for login in [&logins.system, &logins.tenant] {
        let Login {
            role,
            password,
            configured,
            ..
        } = login;
        let literal = format!("'{}'", password.expose().replace('\'', "''"));
        let found: Option<(bool, bool)> = sql.query_opt(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ?1",
            params![role],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        match found {
            None if may_create => sql.batch(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {literal}"
            ))?,
            None => {
                return Err(Error::internal(format!(
                    "the role `{role}` does not exist and `{owner}` may not create roles: create it \
                     (LOGIN NOSUPERUSER NOBYPASSRLS, see README \"Least-privilege roles\") or migrate with a role that has CREATEROLE"
                )));
            }
            Some((superuser, bypass)) if superuser || bypass => {
                return Err(Error::internal(format!(
                    "the role `{role}` is a superuser or bypasses row-level security: Plinth does not serve requests with it"
                )));
            }
            Some(_) if may_create && !configured => {
                sql.batch(&format!("ALTER ROLE {role} WITH LOGIN PASSWORD {literal}"))?
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn m(version: u32, sql: &'static str, postgres: Option<&'static str>) -> Migration {
        Migration {
            owner: "gadgets".into(),
            version,
            name: "test".into(),
            sql: sql.into(),
            postgres: postgres.map(Cow::Borrowed),
        }
    }

    /// A fresh database (the superuser's URL) and a serving role.
    fn database() -> Option<(String, String)> {
        let (url, _, role) = crate::storage::postgres::testing::empty_database("migrate")?;
        Some((url, role))
    }

    /// The one role of these tests serves as system and tenant role alike.
    fn roles(role: &str) -> Roles<'_> {
        Roles {
            system: role,
            tenant: role,
        }
    }

    fn set() -> Vec<Migration> {
        vec![
            // SQLite's text would fail here (STRICT): PostgreSQL runs its own.
            m(
                1,
                "CREATE TABLE tenant_gadgets (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, n INTEGER) STRICT",
                Some(
                    "CREATE TABLE tenant_gadgets (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, n BIGINT); SELECT pg_sleep(0.2)",
                ),
            ),
            m(2, "CREATE INDEX gadgets_n ON tenant_gadgets (n)", None),
        ]
    }

    #[test]
    fn runs_started_at_the_same_moment_apply_once_with_their_engines_text() {
        let Some((url, role)) = database() else { return };
        let tables = [TenantTable::new("gadgets")];
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let (url, role) = (url.clone(), role.clone());
                std::thread::spawn(move || {
                    let conn = PgConn::connect(&url).expect("connect");
                    run(&conn, &set(), &tables, &roles(&role)).map(|applied| applied.len())
                })
            })
            .collect();
        let applied: Vec<usize> = runs
            .into_iter()
            .map(|r| r.join().expect("thread").expect("run"))
            .collect();
        assert_eq!(applied.iter().sum::<usize>(), 2, "{applied:?}");
        assert_eq!(applied.iter().filter(|n| **n == 2).count(), 1, "{applied:?}");

        let conn = PgConn::connect(&url).expect("connect");
        let sql = Sql::of(&conn);
        let recorded: Vec<(u32, String)> = sql
            .query_all(
                "SELECT version, checksum FROM plinth_migrations ORDER BY version",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("records");
        let set = set();
        let expected: Vec<(u32, String)> = set
            .iter()
            .map(|m| (m.version, m.checksum_on(crate::storage::EngineKind::Postgres)))
            .collect();
        assert_eq!(recorded, expected);
        assert_ne!(
            expected[0].1,
            set[0].checksum(),
            "PostgreSQL's own text was recorded"
        );
        let forced: bool = sql
            .query_one(
                "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'tenant_gadgets'",
                params![],
                |r| r.get(0),
            )
            .expect("catalog");
        assert!(forced, "the declared table is isolated by the run");
        assert!(crate::storage::migrations::all_applied(&sql, &set).expect("ready"));
    }

    #[test]
    fn a_failing_migration_leaves_no_trace_and_those_before_it_stay() {
        let Some((url, role)) = database() else { return };
        let conn = PgConn::connect(&url).expect("connect");
        let broken = vec![
            m(1, "CREATE TABLE a (x BIGINT)", None),
            m(2, "CREATE TABLE b (x BIGINT); THIS IS NOT SQL", None),
        ];
        let err = run(&conn, &broken, &[], &roles(&role)).expect_err("fails");
        assert!(err.to_string().contains("gadgets/0002"), "{err}");
        let sql = Sql::of(&conn);
        assert!(sql.has_table("a").expect("a") && !sql.has_table("b").expect("b"));
        assert_eq!(
            run(&conn, &broken[..1], &[], &roles(&role)).expect("again").len(),
            0
        );
    }
}
