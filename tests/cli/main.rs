//! The CLI as a process, against the same file store as a running server: changes it makes
//! reach the server within a second; its output is JSON for scripts.
//!
//! One test binary, one file per concern: [`run`] (the CLI as a process, and the server's
//! decisions), [`lifecycle`] (keys and accounts from creation to revocation, and the plan's key
//! limit), [`update`] (limits, credits, enabling and metadata), [`import`] (a bulk import from a
//! file) and [`config_and_help`] (`check-config` and `--help`).

#[path = "../common/mod.rs"]
mod common;

mod config_and_help;
mod import;
mod lifecycle;
mod run;
mod update;
