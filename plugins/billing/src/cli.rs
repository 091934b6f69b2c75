//! What `plinth billing ...` prints; the binary wires the subcommands here.

pub use crate::stripe::api_version;
