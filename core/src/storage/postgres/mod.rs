//! The PostgreSQL engine: the facade's binding to the synchronous `postgres`
//! client. The only place in Plinth, with `storage::sqlite`, that names an engine
//! crate.

// Until `Db` opens PostgreSQL pools (DATABASE_URL=postgres://), only tests reach
// parts of the engine.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod bind;
pub(crate) mod dialect;
pub(crate) mod isolation;
pub(crate) mod migrate;
pub(crate) mod pool;
pub(crate) mod roles;
