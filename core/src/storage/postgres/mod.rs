//! The PostgreSQL engine: the facade's binding to the synchronous `postgres`
//! client. The only place in Plinth, with `storage::sqlite`, that names an engine
//! crate.

pub(crate) mod bind;
pub(crate) mod placeholders;
