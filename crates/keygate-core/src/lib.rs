//! keygate's pure decision core: the transport-neutral request, paths as upstreams read them,
//! credential parsing, key records and hashing, route matching, the key table snapshot, the
//! policy, `decide`, and the one map from an outcome to its HTTP status and gRPC code.
//!
//! Nothing here does I/O or knows about an async runtime, HTTP servers or Redis (the crate's
//! dependencies say so, and CI checks them). Every function is synchronous and deterministic
//! given its inputs (including `now`), so the whole decision table is unit-testable. Argon2
//! verification is the one expensive step: `decide` never runs it itself, it asks a
//! [`decide::SecretCheck`] for a cached answer and otherwise returns
//! [`decide::Outcome::NeedsVerify`] so the caller can verify off its request threads.
//!
//! # Layout
//! - [`request`]: the request a data plane builds, and header lookup over its wire map.
//! - [`path`]: every reading of a request target; malformed paths.
//! - [`credential`]: finding and parsing the presented key for the route's schemes.
//! - [`scheme`]: how a key is presented, shaped and stored.
//! - [`key`]: key and account records, generation, SHA-256 and Argon2id hashing.
//! - [`limit`]: rate limits: definitions, window arithmetic, the `RateLimit` fields.
//! - [`credits`]: a key's credits as set, its refill calendar, its balance, leases taken from
//!   it and given back.
//! - [`meta`]: a key's metadata for the upstream: its limits, the reserved header prefix.
//! - [`route`]: compiled routes, first match wins.
//! - [`policy`]: schemes, routes, plans and identity header names, as one value.
//! - [`table`]: the immutable key table snapshot, built whole or derived from the last one.
//! - [`decide`]: the decision.
//! - [`outcome`]: why a request was refused, and what each refusal answers (status, gRPC
//!   code, JSON body, `WWW-Authenticate`).

pub mod credential;
pub mod credits;
pub mod decide;
pub mod key;
pub mod limit;
pub mod meta;
pub mod outcome;
pub mod path;
pub mod policy;
pub mod request;
pub mod route;
pub mod scheme;
pub mod snapshot;
pub mod table;
