//! keygate inside Envoy: `libkeygate_envoy.so` loaded into the pinned Envoy binary with the
//! shipped `envoy/envoy-module.yaml` (only ports and the config path replaced). The decision
//! table itself runs through the module in tests/e2e_proxies/ and tests/path_confusion/
//! (the same rows as every other front); here: that the module fits the binary, refuses a bad
//! config with keygate's message, follows Redis beside a sidecar (create and revoke within a
//! second on two Envoys, Redis killed under load, cold start), verifies Argon2 off the worker,
//! and survives hostile input.
//!
//! One test binary, one file per concern: [`support`] (Envoy with the module beside an
//! in-process keygate), [`fit`] (the module and the binary, a refused config), [`redis_store`]
//! (Redis beside a sidecar), [`argon2`] (verified off the worker), [`write_back`] (usage and
//! last use) and [`hostile_input`].

#[path = "../common/mod.rs"]
mod common;
#[path = "../proxy/mod.rs"]
mod proxy;

mod argon2;
mod fit;
mod hostile_input;
mod redis_store;
mod support;
mod write_back;
