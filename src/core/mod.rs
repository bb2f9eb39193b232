//! The pure decision core: the transport-neutral request, credential parsing, key records and
//! hashing, route matching, the key table snapshot, and `decide`.
//!
//! Nothing here does I/O or knows about tokio, tonic, hyper or Redis. Every function is
//! synchronous and deterministic given its inputs (including `now`), so the whole decision
//! table is unit-testable. Argon2 verification is the one expensive step: `decide` never runs it
//! itself, it asks a [`decide::SecretCheck`] for a cached answer and otherwise returns
//! [`decide::Outcome::NeedsVerify`] so the caller can verify off the async runtime.

pub mod credential;
pub mod decide;
pub mod key;
pub mod path;
pub mod request;
pub mod route;
pub mod scheme;
pub mod table;
