//! keygate: an API-key authorization sidecar for Envoy (ext_authz, gRPC and HTTP modes) and
//! nginx (`auth_request`).
//!
//! A frontend turns its wire request into a [`core::request::Request`]; the pure
//! [`core::decide::decide`] answers from an in-memory snapshot of the key table; the frontend
//! turns the outcome back into its wire format. The store feeds the snapshot from the side and
//! is never on a request's road.
//!
//! # Layout
//! - [`config`]: the YAML config, validated and compiled into [`config::Settings`].
//! - [`core`]: pure and synchronous: request, credentials, keys, routes, table, `decide`.
//! - [`store`]: the durable state (keys, accounts, usage, audit), its file backend, and the
//!   replica that keeps the table snapshot current.
//! - [`service`]: the authorizer every frontend calls: snapshot, Argon2 off the runtime with its
//!   cache and throttle, metrics and usage counting.
//! - [`frontend`]: Envoy gRPC, Envoy HTTP mode and nginx adapters, and the HTTP listener.
//! - [`admin`]: key management shared by the CLI and the admin API.
//! - [`metrics`]: one owned Prometheus registry; labels only from bounded enums.
//! - [`server`]: binds the listeners and runs everything until shutdown.

pub mod admin;
pub mod config;
pub mod core;
pub mod frontend;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
