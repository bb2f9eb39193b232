//! keygate inside Envoy: a dynamic module (`libkeygate_envoy.so`) that makes the sidecar's
//! decision in Envoy's own process, from the same config file and the same replicated key
//! table, without an ext_authz round trip.
//!
//! Envoy loads it with `dynamic_module_config: { name: keygate_envoy }` from
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`; the filter's `filter_config` is the path of a keygate
//! YAML config (`envoy/envoy-module.yaml`). One key table per Envoy process (per config file)
//! is loaded and followed by a thread the module owns; Argon2 runs on the authorizer's hash
//! threads, never on an Envoy worker.
//!
//! # Layout
//! - [`abi`]: the hand-written FFI: the few callbacks used, the types they take.
//! - [`exports`]: the hooks Envoy calls, each guarded so no panic crosses into Envoy.
//! - [`config`]: a filter config: module, stats, header names.
//! - [`module`]: the per-process keygate: settings, authorizer, follower thread.
//! - [`filter`]: one request: decide, verify off the worker, answer.
//! - [`headers`]: the request headers Envoy lends a hook.
//! - [`reply`]: a denial as Envoy's local reply.
//! - [`stats`]: keygate's Envoy stats.
//! - [`log`]: keygate's log lines into Envoy's log.

mod abi;
mod config;
mod exports;
mod filter;
mod headers;
mod log;
mod module;
mod reply;
mod stats;

/// The Envoy release whose dynamic module ABI [`abi`] is written against.
pub const ENVOY_VERSION: &str = "1.40.0";

/// The ABI version that release expects from `envoy_dynamic_module_on_program_init`
/// (NUL-terminated for Envoy).
pub const ABI_VERSION: &str = "v0.2.0\0";
