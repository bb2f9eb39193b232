//! Crash safety of management writes.
//!
//! File store: `keygate serve` runs as a process while CLI processes create and revoke keys
//! and set accounts against the same file, the server's admin API creates keys and its
//! usage write-back runs; the server and some CLI processes are killed with SIGKILL in the
//! middle. Afterwards the state file parses, every write that was acknowledged (exit 0 with
//! JSON, or 201 from the admin API) is in it, and leftover temp files are never read as state.
//! A reader polls the file throughout and never sees half of one.
//!
//! Redis: writes acknowledged by the admin API or the CLI survive SIGKILL of redis-server
//! (AOF with `appendfsync always`) and its restart.
//!
//! One test binary, one file per concern: [`processes`] (keygate's CLI and server as processes,
//! killed with SIGKILL), [`writers`] (the writers, what they were told succeeded, and the check
//! that it is all there), [`file_store`] (the file store) and [`redis_store`] (Redis).

#[path = "../common/mod.rs"]
mod common;

mod file_store;
mod processes;
mod redis_store;
mod writers;
