//! Property tests of the pure decision core: random key tables (accounts with random status and
//! plan; keys of every scheme with random scopes, expiry and revocation) against random
//! requests (methods, paths with percent-encodings, dot segments and encoded slashes, hosts,
//! and header sets holding valid keys, mangled keys, duplicated headers, both credential kinds
//! at once, Bearer case variants and non-UTF-8 bytes).
//!
//! The expectation is computed here from the generated data alone (route matching is
//! reimplemented; only `normalize_path` is keygate's): `decide` allows exactly when the request
//! presents one valid, unrevoked, unexpired key of a scheme the matched route accepts, for an
//! active account with API access, whose scopes include the route's scope. Denials are checked
//! for their class: 403 when such a key was presented (account, scope, no route), 401
//! otherwise. A table that was never loaded never allows.
//!
//! The runs are deterministic (fixed seed); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` explore
//! further.
//!
//! One test binary, one file per concern: [`fixture`] (the config and the pool of keys),
//! [`generators`] (random tables and requests), [`inputs`] (the real tables and headers built
//! from them), [`model`] (the expectation), [`properties`] (the tests).

mod fixture;
mod generators;
mod inputs;
mod model;
mod properties;
