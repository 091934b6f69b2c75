//! The SQLite engine: connections, pools and their authorizer, group commit, the
//! migration runner, backups and the facade's binding. The only place in Plinth that
//! names rusqlite.

pub mod backup;
pub(crate) mod bind;
pub mod db;
pub(crate) mod group_commit;
pub(crate) mod hooks;
pub(crate) mod isolation;
pub(crate) mod migrate;
