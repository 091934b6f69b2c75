//! End-to-end tests: a real server on an ephemeral port over a fresh database (a
//! SQLite file in a temporary folder, or with `PLINTH_TEST_ENGINE=postgres` a
//! database of a throwaway PostgreSQL cluster), driven over real HTTP. One test
//! binary keeps link time down; `engines` runs it again on PostgreSQL.

// First: its `args!` macro serves every module after it.
#[macro_use]
mod harness;
mod acme;
mod admin;
mod attacks;
mod auth;
mod authorization;
mod backup;
mod billing;
mod caches;
mod cli;
mod engines;
mod external;
mod flags;
mod hardening;
mod isolation;
mod jobs;
mod migrations;
mod nodes;
mod ops;
mod permissions;
mod plugins;
mod postgres;
mod problems;
mod shutdown;
mod smtp;
mod spec;
mod stripe_mock;
mod teams;
mod tenant_tables;
mod widgets;
