//! Micro-benchmarks of keygate's pure decision core: `decide` on its allow and deny paths,
//! route matching, table lookups, and the Argon2 verification the cache exists to avoid.
//!
//! Run with `bench/core.sh`; results and the machine they came from are in BENCHMARKS.md.
//! The target is a cached decision (no Argon2 on the path) in at most 1 µs.

mod decide;
mod fixture;
mod hashing;
mod lookup;

use criterion::{Criterion, criterion_group, criterion_main};

use decide::{
    decide_argon2_cached_allow, decide_deny_malformed, decide_deny_missing, decide_deny_revoked,
    decide_deny_scope, decide_deny_unknown, decide_sha256_allow, decide_sha256_allow_two_limits,
};
use hashing::{argon2_verify_default, baseline_sha256_54_bytes};
use lookup::{routes_match_100, table_lookup_1m};

criterion_group!(
    core,
    baseline_sha256_54_bytes,
    decide_sha256_allow,
    decide_sha256_allow_two_limits,
    decide_argon2_cached_allow,
    decide_deny_missing,
    decide_deny_malformed,
    decide_deny_unknown,
    decide_deny_revoked,
    decide_deny_scope,
    routes_match_100,
    table_lookup_1m,
);

criterion_group! {
    name = slow;
    // Tens of milliseconds per verification: ten samples are plenty and keep the run short.
    config = Criterion::default().sample_size(10);
    targets = argon2_verify_default
}

criterion_main!(core, slow);
