//! The admin HTTP API through its real listener: the token, every endpoint and error code, the
//! plan's key limit, rotation, account status and usage seen through real decisions on the
//! HTTP listener, the audit trail, and that a key appears in no response but the one that
//! created it. The core scenario runs on the file store and on a real redis-server, and the
//! audit trail is checked across restarts of keygate (and a kill -9 of Redis).
//!
//! One test binary, one file per concern: [`client`] (the recording API client and its
//! helpers), [`core_scenario`] (every endpoint in order), [`scenario`] (that scenario on both
//! stores, across restarts), [`auth`] (the token), [`errors`] (400s, 404s, 405s), [`edge_cases`]
//! (paths, bodies and rotation), [`key_limit`] (the plan's limit), [`update`] (keys changed in
//! place), [`concurrent`] (management calls racing each other).

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod client;
mod concurrent;
mod core_scenario;
mod edge_cases;
mod errors;
mod key_limit;
mod scenario;
mod update;
