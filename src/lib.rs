//! keygate: an API-key authorization sidecar for Envoy (ext_authz, gRPC and HTTP modes) and
//! nginx (`auth_request`).
//!
//! A frontend turns its wire request into a [`core::request::Request`]; the authorizer
//! ([`authz`], shared with the in-proxy modules) decides from an in-memory snapshot of the key
//! table with the pure [`core`]; the frontend turns the outcome back into its wire format. The
//! [`store`] feeds the snapshot from the side and is never on a request's road.
//!
//! # Layout
//! The workspace's library crates, re-exported under their roles:
//! - [`core`] (`keygate-core`): pure and synchronous: request, paths, credentials, keys,
//!   routes, table, policy, `decide`, outcomes.
//! - [`store`] (`keygate-store`): the durable state, its file and Redis backends, the replica
//!   that keeps the table snapshot current, usage write-back.
//! - [`config`] (`keygate-config`): the YAML config, validated and compiled into
//!   [`config::Settings`].
//! - [`authz`] (`keygate-authz`): the authorizer: Argon2 off the request threads with its
//!   cache and throttle, usage counting, observations.
//!
//! The sidecar itself:
//! - [`service`]: the authorizer with the sidecar's settings, registry and draining flag.
//! - [`frontend`]: Envoy gRPC, Envoy HTTP mode, nginx and ops adapters.
//! - [`admin`]: key management shared by the CLI and the admin API.
//! - [`metrics`]: the Prometheus registry; labels only from bounded enums.
//! - [`server`]: binds the listeners and runs everything until shutdown.

pub use keygate_authz as authz;
pub use keygate_config as config;
pub use keygate_core as core;
pub use keygate_store as store;

pub mod admin;
pub mod frontend;
pub mod metrics;
pub mod server;
pub mod service;
