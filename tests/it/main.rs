//! End-to-end tests: a real server on an ephemeral port over a fresh SQLite file in a
//! temporary folder, driven over real HTTP. One test binary keeps link time down.

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
mod external;
mod flags;
mod hardening;
mod isolation;
mod jobs;
mod migrations;
mod ops;
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
