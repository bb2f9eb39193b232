//! keygate inside nginx: a dynamic module (`libkeygate_nginx.so`, loaded with `load_module`)
//! that makes the sidecar's decision in nginx's access phase, from the same config file and
//! the same replicated key table, without an `auth_request` round trip.
//!
//! `keygate_config PATH;` names the keygate YAML config (http level), `keygate on;` checks a
//! location's requests, `keygate_metrics;` serves the Prometheus text
//! (`config/nginx-module.conf`). Each worker process holds its own key table, loaded and
//! followed by a thread it starts after the fork; Argon2 waits run on nginx's thread pool,
//! never on a worker's event loop; the counters live in a shared memory zone, so any worker
//! answers a scrape for all.
//!
//! Built against Debian's nginx (`nginx-dev`'s source tree, configured with Debian's flags by
//! the build itself): a module loads only into an nginx of the same version and configure
//! flags.
//!
//! # Layout
//! - [`module`]: the module, its directives and HTTP context, the `ngx_modules` tables.
//! - [`exports`]: what nginx calls, each guarded so no panic crosses into nginx.
//! - [`conf`]: the directives and what they configure.
//! - [`worker`]: the per-worker keygate: authorizer, table, follower thread.
//! - [`access`]: one request: decide, park, answer.
//! - [`headers`]: the request's header list, read and rewritten.
//! - [`ctx`]: what keygate remembers about a request across its passes.
//! - [`park`]: waiting for a verification on nginx's thread pool.
//! - [`reply`]: responses keygate writes itself (denials, metrics).
//! - [`shared`]: the counters in the shared zone.
//! - [`metrics`]: the Prometheus text.
//! - [`log`]: keygate's log lines into nginx's error log.

mod access;
mod conf;
mod ctx;
mod exports;
mod headers;
mod log;
mod metrics;
mod module;
mod park;
mod reply;
mod shared;
mod worker;

use std::panic::{AssertUnwindSafe, catch_unwind};

/// The nginx release whose source tree (Debian's `nginx-dev`) the module is built against.
pub const NGINX_VERSION: &str = "1.22.1";

/// Runs `f`, answering `fallback` if it panics (logged, never crossing into nginx).
fn guard<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::log(ngx::ffi::NGX_LOG_ERR, &format!("panic in {what}; refusing"));
        fallback
    })
}
