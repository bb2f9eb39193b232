//! keygate inside nginx: `libkeygate_nginx.so` loaded into Debian's nginx with the shipped
//! `config/nginx-module.conf` (only addresses, paths and the worker count replaced). The
//! decision table itself runs through the module in tests/e2e_proxies/ (the same rows as
//! every other front, with one and with two workers) and the rate limit rows in
//! tests/rate_limits.rs; Redis in tests/nginx_module_redis.rs. Here: that the module fits the
//! binary, refuses a bad config with keygate's message, checks exactly the locations it
//! should, serves the sidecar's metrics, verifies Argon2 off the worker, writes usage back,
//! and survives hostile input with no worker lost.
//!
//! One test binary, one file per concern: [`support`] (nginx with the module beside an
//! in-process keygate), [`fit`] (the module and the binary, a refused config), [`upstream`]
//! (which locations are checked, and what reaches the application), [`metrics`], [`argon2`]
//! (verified off the worker), [`write_back`] (usage and last use) and [`hostile_input`].

#[path = "../common/mod.rs"]
mod common;
#[path = "../proxy/mod.rs"]
mod proxy;

mod argon2;
mod fit;
mod hostile_input;
mod metrics;
mod support;
mod upstream;
mod write_back;
