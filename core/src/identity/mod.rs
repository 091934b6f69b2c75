//! Identity: accounts and their credentials. Every plugin depends on it.

pub mod passwords;
pub mod users;
