//! Tenant tables as plugins declare them: core generates what isolates them.
//!
//! A plugin's migration creates the base table `tenant_<name>` (with an `org_id`
//! column referencing `organizations`); the plugin declares `TenantTable::new(name)`
//! and core, at every migration run, (re)creates on SQLite the view `<name>` showing
//! only the bound org's rows and the INSTEAD OF triggers that refuse rows of
//! another org (a PostgreSQL engine generates row-level security policies from the
//! same declaration). Columns come from the table itself, so a later
//! `ALTER TABLE tenant_<name> ADD COLUMN` reaches the view and triggers without any
//! hand-written DDL. What a declaration adds is only what the table cannot say:
//! columns the database fills itself, columns that may not change, and whether rows
//! may be written or deleted through the view at all.

use crate::error::{Error, Result};

/// Tenant tables are named with this prefix and reached only through their views.
pub const TENANT_PREFIX: &str = "tenant_";

/// Shared logs a tenant connection may append to (they hold no tenant's secrets
/// and are read only through views or by core), on every engine.
pub(crate) const SHARED_LOGS: [&str; 4] = ["jobs", "audit_log", "audit_personal", "mail_outbox"];

/// Whether (and how) tenant code may write a table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Insert, update and delete the bound org's rows.
    All,
    /// Insert and update; deleting is refused with this message (records such as
    /// invoices go only with their org).
    NoDelete(&'static str),
    /// Nothing: the rows are derived by the database; writes are refused with this
    /// message.
    None(&'static str),
}

/// One tenant table's declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantTable {
    /// The name tenant code uses (the view); the rows live in `tenant_<name>`.
    pub name: &'static str,
    /// Filled by the database (a trigger's number): never inserted or updated
    /// through the view.
    pub generated: &'static [&'static str],
    /// May not change once written: an update changing one is refused.
    pub immutable: &'static [&'static str],
    /// When set, the only columns an update may change (every other is immutable).
    pub updatable: Option<&'static [&'static str]>,
    pub writes: Writes,
}

impl TenantTable {
    pub const fn new(name: &'static str) -> Self {
        TenantTable {
            name,
            generated: &[],
            immutable: &[],
            updatable: None,
            writes: Writes::All,
        }
    }

    pub const fn generated(mut self, columns: &'static [&'static str]) -> Self {
        self.generated = columns;
        self
    }

    pub const fn immutable(mut self, columns: &'static [&'static str]) -> Self {
        self.immutable = columns;
        self
    }

    pub const fn updatable(mut self, columns: &'static [&'static str]) -> Self {
        self.updatable = Some(columns);
        self
    }

    pub const fn no_delete(mut self, why: &'static str) -> Self {
        self.writes = Writes::NoDelete(why);
        self
    }

    pub const fn read_only(mut self, why: &'static str) -> Self {
        self.writes = Writes::None(why);
        self
    }

    /// The base table holding the rows.
    pub fn table(&self) -> String {
        format!("{TENANT_PREFIX}{}", self.name)
    }

    /// Whether an update may change `column` (primary-key columns never do: they
    /// identify the row).
    pub(crate) fn may_change(&self, column: &str) -> bool {
        !self.generated.contains(&column)
            && !self.immutable.contains(&column)
            && self.updatable.is_none_or(|cols| cols.contains(&column))
    }
}

/// Checks what an engine read of a declared table's columns before DDL is built
/// from them: the table exists, has `org_id`, and every name is plain.
pub(crate) fn check_columns<'a>(
    table: &TenantTable,
    columns: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    identifier(table.name)?;
    let mut any = false;
    let mut org_id = false;
    for column in columns {
        identifier(column)?;
        any = true;
        org_id |= column == "org_id";
    }
    if !any {
        return Err(Error::internal(format!(
            "tenant table `{}` is declared but `{}` does not exist: a migration must create it",
            table.name,
            table.table()
        )));
    }
    if !org_id {
        return Err(Error::internal(format!(
            "`{}` has no org_id column",
            table.table()
        )));
    }
    Ok(())
}

/// Names are spliced into DDL: only plain identifiers are accepted.
pub(crate) fn identifier(name: &str) -> Result<()> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(Error::internal(format!("`{name}` is not a plain identifier")))
    }
}

/// Core's own tenant tables.
pub(crate) const CORE_TENANT_TABLES: &[TenantTable] = &[
    TenantTable::new("memberships"),
    TenantTable::new("roles"),
    TenantTable::new("api_keys"),
];
