//! Versioned SQL migrations, owned by core or by a plugin.
//!
//! Files live in `data/migrations/<owner>/NNNN_verb_object.sql` and are embedded in
//! the binary by the owning crate. Each applied migration is recorded in
//! `plinth_migrations` with a SHA-256 of its text; an applied migration whose text
//! changed stops the runner before anything is applied, because the database no
//! longer matches what the code believes it is. Applied migrations are never edited:
//! add a new one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::params;
use crate::storage::EngineKind;
use crate::storage::db::now_rfc3339;
use crate::storage::sql::Sql;

pub use crate::storage::sqlite::migrate::run;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub owner: Cow<'static, str>,
    pub version: u32,
    pub name: Cow<'static, str>,
    /// The portable text (SQLite's, and PostgreSQL's unless `postgres` is set).
    pub sql: Cow<'static, str>,
    /// PostgreSQL's text, where the dialects must differ (`postgres/NNNN_name.sql`
    /// beside the portable file).
    pub postgres: Option<Cow<'static, str>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MigrationError {
    #[error("migration file name `{0}` must look like NNNN_description.sql")]
    BadFileName(String),
    #[error(
        "applied migration {owner}/{version:04} ({name}) was changed after it was applied; restore the original file and add a new migration instead"
    )]
    Changed {
        owner: String,
        version: u32,
        name: String,
    },
    #[error("applied migration {owner}/{version:04} ({name}) is missing from this build")]
    Missing {
        owner: String,
        version: u32,
        name: String,
    },
    #[error(
        "migration {owner}/{version:04} is new but {owner}/{applied:04} is already applied; number new migrations after the last applied one"
    )]
    OutOfOrder {
        owner: String,
        version: u32,
        applied: u32,
    },
    #[error("two migrations share the version {owner}/{version:04}")]
    Duplicate { owner: String, version: u32 },
    #[error("PostgreSQL migration file `{0}` has no portable file of the same name")]
    Unpaired(String),
    #[error("migration {owner}/{version:04} ({name}) failed: {cause}")]
    Failed {
        owner: String,
        version: u32,
        name: String,
        cause: String,
    },
}

impl From<MigrationError> for Error {
    fn from(e: MigrationError) -> Self {
        Error::internal(e)
    }
}

impl Migration {
    /// A migration from a file name (`0001_create_users.sql`) and its text.
    pub fn from_file(
        owner: impl Into<Cow<'static, str>>,
        file_name: &'static str,
        sql: &'static str,
    ) -> Result<Self, MigrationError> {
        let (version, name) = parse_file_name(file_name)?;
        Ok(Migration {
            owner: owner.into(),
            version,
            name: Cow::Owned(name),
            sql: Cow::Borrowed(sql),
            postgres: None,
        })
    }

    /// Gives each migration of `set` its PostgreSQL text from `postgres`, pairs of
    /// (file name, text); a file without a portable twin is refused.
    pub fn with_postgres_files(
        mut set: Vec<Migration>,
        postgres: Vec<(&'static str, &'static str)>,
    ) -> Result<Vec<Migration>, MigrationError> {
        for (file_name, sql) in postgres {
            let (version, _) = parse_file_name(file_name)?;
            pair(&mut set, version, file_name, Cow::Borrowed(sql))?;
        }
        Ok(set)
    }

    /// The text applied on `engine`.
    pub fn sql_on(&self, engine: EngineKind) -> Cow<'_, str> {
        match (engine, &self.postgres) {
            (EngineKind::Postgres, Some(sql)) => Cow::Borrowed(sql),
            (EngineKind::Postgres, None) => portable_on_postgres(&self.sql),
            (EngineKind::Sqlite, _) => Cow::Borrowed(&self.sql),
        }
    }

    /// The checksum recorded on `engine`: of the text applied there.
    pub fn checksum_on(&self, engine: EngineKind) -> String {
        hex::encode(Sha256::digest(self.sql_on(engine).as_bytes()))
    }

    /// Reads every `*.sql` file of a directory (external plugins, tests), and the
    /// PostgreSQL texts of its `postgres/` folder when there is one.
    pub fn load_dir(owner: &str, dir: &Path) -> Result<Vec<Migration>> {
        let mut out = Self::read_dir(owner, dir)?;
        let postgres = dir.join("postgres");
        if postgres.is_dir() {
            for pg in Self::read_dir(owner, &postgres)? {
                let file_name = format!("{:04}_{}.sql", pg.version, pg.name);
                pair(&mut out, pg.version, &file_name, pg.sql)?;
            }
        }
        Ok(out)
    }

    fn read_dir(owner: &str, dir: &Path) -> Result<Vec<Migration>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(Error::internal)? {
            let path = entry.map_err(Error::internal)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("sql") {
                continue;
            }
            let file_name = path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_string();
            let (version, name) = parse_file_name(&file_name)?;
            let sql = std::fs::read_to_string(&path).map_err(Error::internal)?;
            out.push(Migration {
                owner: Cow::Owned(owner.to_string()),
                version,
                name: Cow::Owned(name),
                sql: Cow::Owned(sql),
                postgres: None,
            });
        }
        out.sort_by_key(|m| m.version);
        Ok(out)
    }

    /// The checksum of the portable (SQLite) text.
    pub fn checksum(&self) -> String {
        self.checksum_on(EngineKind::Sqlite)
    }

    pub fn id(&self) -> String {
        format!("{}/{:04}_{}", self.owner, self.version, self.name)
    }
}

/// Embeds migration files of one owner:
/// `embed_migrations!("teams", "../../data/migrations/teams/", ["0001_create_invitations.sql"])`,
/// and where PostgreSQL needs its own text, `postgres: ["0001_create_invitations.sql"]`
/// read from the `postgres/` folder beside them (`postgres: each` when every file
/// has one). The directory is relative to the calling crate's Cargo.toml.
#[macro_export]
macro_rules! embed_migrations {
    // Every listed migration has a PostgreSQL text of the same name.
    ($owner:literal, $dir:literal, [$($file:literal),* $(,)?], postgres: each $(,)?) => {
        $crate::embed_migrations!($owner, $dir, [$($file),*], postgres: [$($file),*])
    };
    ($owner:literal, $dir:literal, [$($file:literal),* $(,)?] $(, postgres: [$($pg:literal),* $(,)?])? $(,)?) => {
        vec![$(
            $crate::storage::migrations::Migration::from_file(
                $owner,
                $file,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, $file)),
            )
        ),*]
        .into_iter()
        .collect::<::std::result::Result<::std::vec::Vec<_>, _>>()
        .and_then(|set| {
            $crate::storage::migrations::Migration::with_postgres_files(
                set,
                vec![$($((
                    $pg,
                    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "postgres/", $pg)),
                )),*)?],
            )
        })
    };
}

/// Core's own migrations. A test checks that every file of data/migrations/core is listed.
pub fn core_migrations() -> Result<Vec<Migration>> {
    Ok(crate::embed_migrations!(
        "core",
        "../data/migrations/core/",
        [
            "0001_create_jobs.sql",
            "0002_create_users.sql",
            "0003_create_sessions.sql",
            "0004_create_user_tokens.sql",
            "0005_create_mail_outbox.sql",
            "0006_create_audit_log.sql",
            "0007_create_tenancy.sql",
            "0008_chain_audit_log.sql",
            "0009_job_leases.sql",
            "0010_rate_buckets.sql",
            "0011_schedules.sql",
            "0012_custom_roles.sql",
            "0013_api_keys.sql",
        ],
        postgres: each
    )?)
}

/// Gives the migration of `version` in `set` its PostgreSQL text; a PostgreSQL
/// file without a portable twin is refused.
fn pair(
    set: &mut [Migration],
    version: u32,
    file_name: &str,
    sql: Cow<'static, str>,
) -> Result<(), MigrationError> {
    let twin = set
        .iter_mut()
        .find(|m| m.version == version)
        .ok_or_else(|| MigrationError::Unpaired(file_name.to_string()))?;
    twin.postgres = Some(sql);
    Ok(())
}

fn parse_file_name(file_name: &str) -> Result<(u32, String), MigrationError> {
    let bad = || MigrationError::BadFileName(file_name.to_string());
    let stem = file_name.strip_suffix(".sql").ok_or_else(bad)?;
    let (num, name) = stem.split_once('_').ok_or_else(bad)?;
    if num.len() != 4 || name.is_empty() {
        return Err(bad());
    }
    let version = num.parse::<u32>().map_err(|_| bad())?;
    Ok((version, name.to_string()))
}

const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS plinth_migrations (
    owner TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (owner, version)
)";

struct Applied {
    name: String,
    checksum: String,
}

fn applied(conn: &Sql<'_>) -> Result<HashMap<(String, u32), Applied>> {
    conn.batch(SCHEMA_TABLE)?;
    let rows = conn.query_all(
        "SELECT owner, version, name, checksum FROM plinth_migrations",
        params![],
        |r| {
            Ok((
                (r.get::<String>(0)?, r.get::<u32>(1)?),
                Applied {
                    name: r.get(2)?,
                    checksum: r.get(3)?,
                },
            ))
        },
    )?;
    Ok(rows.into_iter().collect())
}

/// Checks the set against what is applied; returns the migrations still to apply, in
/// order. Nothing is applied when any check fails.
pub fn plan(conn: &Sql<'_>, set: &[Migration]) -> Result<Vec<Migration>> {
    let applied = applied(conn)?;
    let engine = conn.engine();
    // Owners in the set's order (core first, then plugins as registered): a
    // plugin's tables may reference core's, which PostgreSQL checks at creation.
    let mut by_owner: Vec<(&str, Vec<&Migration>)> = Vec::new();
    for m in set {
        match by_owner.iter_mut().find(|(owner, _)| *owner == m.owner) {
            Some((_, list)) => list.push(m),
            None => by_owner.push((&m.owner, vec![m])),
        }
    }
    let mut pending = Vec::new();
    for (owner, mut migrations) in by_owner {
        migrations.sort_by_key(|m| m.version);
        if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(MigrationError::Duplicate {
                owner: owner.into(),
                version: pair[0].version,
            }
            .into());
        }
        let max_applied = applied.keys().filter(|(o, _)| o == owner).map(|(_, v)| *v).max();
        for ((o, version), a) in applied.iter().filter(|((o, _), _)| o == owner) {
            if !migrations.iter().any(|m| m.version == *version) {
                return Err(MigrationError::Missing {
                    owner: o.clone(),
                    version: *version,
                    name: a.name.clone(),
                }
                .into());
            }
        }
        for m in migrations {
            match applied.get(&(owner.to_string(), m.version)) {
                Some(a) if a.checksum != m.checksum_on(engine) => {
                    return Err(MigrationError::Changed {
                        owner: owner.into(),
                        version: m.version,
                        name: m.name.to_string(),
                    }
                    .into());
                }
                Some(_) => {}
                None => {
                    if let Some(max) = max_applied.filter(|max| *max > m.version) {
                        return Err(MigrationError::OutOfOrder {
                            owner: owner.into(),
                            version: m.version,
                            applied: max,
                        }
                        .into());
                    }
                    pending.push(m.clone());
                }
            }
        }
    }
    Ok(pending)
}

/// Plans and applies the pending migrations of `set` in the caller's transaction,
/// each in a savepoint with its record. `Err`: nothing may be applied (a refused
/// plan). `Ok(Err)`: a migration failed, leaving no trace; those before it are
/// applied and the caller commits them.
pub(crate) fn apply_pending(tx: &Sql<'_>, set: &[Migration]) -> Result<Result<Vec<Migration>>> {
    let pending = plan(tx, set)?;
    for m in &pending {
        if let Err(e) = apply(tx, m) {
            return Ok(Err(e));
        }
        tracing::info!(migration = %m.id(), "applied migration");
    }
    Ok(Ok(pending))
}

/// One migration and its record in a savepoint: both or neither.
fn apply(tx: &Sql<'_>, m: &Migration) -> Result<()> {
    tx.savepoint(|tx| {
        tx.batch(&m.sql_on(tx.engine())).map_err(|e| {
            Error::from(MigrationError::Failed {
                owner: m.owner.to_string(),
                version: m.version,
                name: m.name.to_string(),
                cause: e.to_string(),
            })
        })?;
        tx.execute(
            "INSERT INTO plinth_migrations (owner, version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![m.owner.as_ref(), m.version, m.name.as_ref(), m.checksum_on(tx.engine()), now_rfc3339()],
        )?;
        Ok(())
    })
}

/// True when every migration of the set is applied (readiness).
pub fn all_applied(conn: &Sql<'_>, set: &[Migration]) -> Result<bool> {
    if !conn.has_table("plinth_migrations")? {
        return Ok(set.is_empty());
    }
    for m in set {
        let checksum: Option<String> = conn.query_opt(
            "SELECT checksum FROM plinth_migrations WHERE owner = ?1 AND version = ?2",
            params![m.owner.as_ref(), m.version],
            |r| r.get(0),
        )?;
        if checksum.as_deref() != Some(m.checksum_on(conn.engine()).as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A migration written once for both engines, as PostgreSQL runs it: SQLite's
/// `STRICT` table option goes (PostgreSQL's columns are strictly typed anyway)
/// and `BLOB` columns are `BYTEA`. Anything else SQLite-only needs a PostgreSQL
/// text of its own (`postgres/` beside the migration).
fn portable_on_postgres(sql: &str) -> Cow<'_, str> {
    if !sql.contains("STRICT") && !sql.contains("BLOB") {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(
        sql.replace(") STRICT", ")")
            .replace(")STRICT", ")")
            .replace(" BLOB", " BYTEA"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(owner: &'static str, version: u32, sql: &'static str) -> Migration {
        Migration {
            owner: owner.into(),
            version,
            name: "test".into(),
            sql: sql.into(),
            postgres: None,
        }
    }

    fn run(c: &crate::storage::sqlite::bind::Conn, set: &[Migration]) -> Result<Vec<Migration>> {
        super::run(c, set, &[])
    }

    fn conn() -> crate::storage::sqlite::bind::Conn {
        crate::storage::sqlite::bind::open_in_memory().expect("memory db")
    }

    fn has_table(c: &crate::storage::sqlite::bind::Conn, name: &str) -> bool {
        Sql::of(c).has_table(name).expect("catalog")
    }

    #[test]
    fn every_core_migration_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/migrations/core");
        let on_disk = Migration::load_dir("core", &dir).expect("read dir");
        let embedded = core_migrations().expect("embedded");
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn file_names_are_parsed_and_checked() {
        assert_eq!(parse_file_name("0003_add_index.sql"), Ok((3, "add_index".into())));
        for bad in ["3_x.sql", "0003.sql", "0003_x.txt", "abcd_x.sql", "0003_.sql"] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn applies_once_and_records_each_migration() {
        let c = conn();
        let set = [
            m("core", 1, "CREATE TABLE a (x)"),
            m("teams", 1, "CREATE TABLE b (x)"),
        ];
        assert_eq!(run(&c, &set).expect("first run").len(), 2);
        assert_eq!(run(&c, &set).expect("second run").len(), 0);
        assert!(all_applied(&Sql::of(&c), &set).expect("check"));
    }

    #[test]
    fn a_changed_applied_migration_stops_everything() {
        let c = conn();
        run(&c, &[m("core", 1, "CREATE TABLE a (x)")]).expect("first run");
        let err = run(
            &c,
            &[
                m("core", 1, "CREATE TABLE a (x, y)"),
                m("core", 2, "CREATE TABLE b (x)"),
            ],
        )
        .expect_err("refused");
        assert!(err.to_string().contains("changed after it was applied"), "{err}");
        assert!(!has_table(&c, "b"), "nothing applied after a refusal");
    }

    #[test]
    fn a_failing_migration_leaves_no_trace() {
        let c = conn();
        let err = run(&c, &[m("core", 1, "CREATE TABLE a (x); THIS IS NOT SQL")]).expect_err("fails");
        assert!(err.to_string().contains("core/0001"), "{err}");
        assert!(!has_table(&c, "a"));
        assert!(!all_applied(&Sql::of(&c), &[m("core", 1, "CREATE TABLE a (x)")]).expect("check"));
    }

    #[test]
    fn out_of_order_missing_and_duplicate_are_refused() {
        let c = conn();
        run(&c, &[m("core", 2, "CREATE TABLE a (x)")]).expect("run");
        let late = run(
            &c,
            &[m("core", 1, "SELECT 1"), m("core", 2, "CREATE TABLE a (x)")],
        );
        assert!(late.expect_err("refused").to_string().contains("already applied"));
        let missing = run(&c, &[m("core", 3, "SELECT 1")]);
        assert!(missing.expect_err("refused").to_string().contains("missing"));
        let dup = run(&c, &[m("x", 1, "SELECT 1"), m("x", 1, "SELECT 2")]);
        assert!(
            dup.expect_err("refused")
                .to_string()
                .contains("share the version")
        );
    }

    #[test]
    fn migrations_of_an_absent_owner_are_left_alone() {
        // A disabled plugin's applied migrations are not "missing".
        let c = conn();
        run(&c, &[m("core", 1, "SELECT 1"), m("billing", 1, "SELECT 1")]).expect("run");
        assert!(run(&c, &[m("core", 1, "SELECT 1")]).expect("run").is_empty());
    }
}
