//! keygate's authorizer, shared by every data plane (the sidecar and the in-proxy modules):
//! the decision over the replicated table with Argon2 verified off the request threads, and
//! what each decision leaves behind (usage counts, observations). It holds no listener and no
//! exporter: the data planes bring their own.
//!
//! # Layout
//! - [`engine`]: the authorizer: first pass, verification, second pass; sync and async.
//! - [`ids`]: a request's id and trace id, for its log lines and its denial.
//! - [`limiter`]: rate limit counters over fixed windows.
//! - [`wallet`]: credits spent from leases taken from the store.
//! - [`verify`]: the hash thread pool, the verification cache and the failure throttle.
//! - [`observe`]: the bounded labels (frontend, verification) and the observer trait.
//! - [`store_thread`]: an in-proxy data plane's thread that keeps the table current.
//! - [`host_log`]: keygate's log lines into the log of the proxy it runs in.

pub mod engine;
pub mod host_log;
pub mod ids;
pub mod limiter;
pub mod observe;
pub mod store_thread;
pub mod verify;
pub mod wallet;

pub use engine::{Decision, Engine, Pending, Step, VerifyLimits, unix_now};
pub use observe::{Frontend, Observer, Verification};
