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
        format!("{}{}", crate::storage::db::TENANT_PREFIX, self.name)
    }

    /// Whether an update may change `column` (primary-key columns never do: they
    /// identify the row).
    pub(crate) fn may_change(&self, column: &str) -> bool {
        !self.generated.contains(&column)
            && !self.immutable.contains(&column)
            && self.updatable.is_none_or(|cols| cols.contains(&column))
    }
}

/// Core's own tenant tables.
pub(crate) const CORE_TENANT_TABLES: &[TenantTable] = &[TenantTable::new("memberships")];
