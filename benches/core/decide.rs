//! The `decide` benchmarks: one call on each of its allow and deny paths.

use std::hint::black_box;

use criterion::Criterion;

use keygate::authz::limiter::Limiter;
use keygate::core::decide::{NoCache, Outcome, Reason, SecretCheck, decide};
use keygate::core::limit::{Per, RateLimit, Shared};
use keygate::core::request::Request;

use crate::fixture::{FIXTURE, HOST, HmacCache, NOW, scheme};

/// Benchmarks one `decide` call. The outcome is checked first, so a fixture mistake cannot
/// silently time a cheaper path (a deny where an allow was meant). `expect`: `None` for an
/// allow, `Some(reason)` for a denial.
fn bench_decide(
    c: &mut Criterion,
    name: &str,
    (method, path): (&str, &str),
    credential: Option<(&str, &str)>,
    check: &impl SecretCheck,
    expect: Option<Reason>,
) {
    let f = &*FIXTURE;
    // A few ordinary headers ahead of the credential: header lookup scans the list, so a
    // request carrying only its key would flatter it.
    let mut headers = vec![
        ("host", HOST),
        ("user-agent", "curl/8.5.0"),
        ("accept", "application/json"),
        ("x-request-id", "7f3c1f0e-2b4a-4d7e-9a61-5c0e8d2b9f14"),
    ];
    headers.extend(credential);
    let req = Request {
        method,
        path,
        host: Some(HOST),
        headers: &headers[..],
    };
    let (schemes, routes) = (&f.settings.policy.schemes, &f.settings.policy.routes);
    let got = match decide(schemes, routes, &f.table, &req, NOW, check) {
        Outcome::Allow(_) => None,
        Outcome::Deny(d) => Some(d.reason),
        Outcome::NeedsVerify { .. } => panic!("{name}: the cache should have answered"),
    };
    assert_eq!(got, expect, "{name} does not take the intended path");
    c.bench_function(name, |b| {
        b.iter(|| decide(schemes, routes, &f.table, black_box(&req), NOW, check))
    });
}

const ALLOWED: (&str, &str) = ("GET", "/v1/tokens/42");

pub(crate) fn decide_sha256_allow(c: &mut Criterion) {
    let auth = format!("Bearer {}", FIXTURE.live);
    let cred = ("authorization", auth.as_str());
    bench_decide(
        c,
        "decide/sha256_allow",
        ALLOWED,
        Some(cred),
        &NoCache,
        None,
    );
}

/// `decide/sha256_allow` and then the allow counted against two rate limits (one per key, one
/// per account) in this process, as the engine does: the cost limits add to a decision.
pub(crate) fn decide_sha256_allow_two_limits(c: &mut Criterion) {
    let f = &*FIXTURE;
    let auth = format!("Bearer {}", f.live);
    let headers = [
        ("host", HOST),
        ("user-agent", "curl/8.5.0"),
        ("accept", "application/json"),
        ("x-request-id", "7f3c1f0e-2b4a-4d7e-9a61-5c0e8d2b9f14"),
        ("authorization", auth.as_str()),
    ];
    let req = Request {
        method: ALLOWED.0,
        path: ALLOWED.1,
        host: Some(HOST),
        headers: &headers[..],
    };
    let limit = |name: &str, per: &str, shared| RateLimit {
        name: name.into(),
        requests: u32::MAX,
        per: Per::parse(per).unwrap(),
        shared,
    };
    let limits = [
        limit("burst", "1s", Shared::Key),
        limit("daily", "1d", Shared::Account),
    ];
    let limiter = Limiter::default();
    let (schemes, routes) = (&f.settings.policy.schemes, &f.settings.policy.routes);
    let count = || match decide(schemes, routes, &f.table, black_box(&req), NOW, &NoCache) {
        Outcome::Allow(a) => limiter.take(&limits, &a.key, NOW).is_ok(),
        _ => false,
    };
    assert!(count(), "the request is allowed and counted");
    c.bench_function("decide/sha256_allow_two_limits", |b| b.iter(count));
}

pub(crate) fn decide_argon2_cached_allow(c: &mut Criterion) {
    let f = &*FIXTURE;
    let cache = HmacCache::new();
    // What a successful verification leaves behind in the service; from then on the key
    // never sees Argon2 again while its entry lives.
    let id = scheme(&f.settings, "toon")
        .shape(f.toon.as_bytes())
        .expect("toon key shape");
    let entry = f.table.by_id(id).expect("toon key in table");
    let digest = cache.digest(f.toon.as_bytes());
    entry.set_verified(digest);
    assert_eq!(entry.verified(), Some(&digest));
    let cred = ("x-api-key", f.toon.as_str());
    bench_decide(
        c,
        "decide/argon2_cached_allow",
        ALLOWED,
        Some(cred),
        &cache,
        None,
    );
}

pub(crate) fn decide_deny_missing(c: &mut Criterion) {
    let r = Some(Reason::Missing);
    bench_decide(c, "decide/deny_missing", ALLOWED, None, &NoCache, r);
}

pub(crate) fn decide_deny_malformed(c: &mut Criterion) {
    // A truncated key: refused by the shape check, before any hashing or lookup.
    let auth = format!("Bearer {}", &FIXTURE.live[..20]);
    let cred = Some(("authorization", auth.as_str()));
    let r = Some(Reason::Malformed);
    bench_decide(c, "decide/deny_malformed", ALLOWED, cred, &NoCache, r);
}

pub(crate) fn decide_deny_unknown(c: &mut Criterion) {
    // Well-formed, so it pays for the digest and the lookup that misses.
    let auth = format!("Bearer {}", FIXTURE.unknown);
    let cred = Some(("authorization", auth.as_str()));
    let r = Some(Reason::Unknown);
    bench_decide(c, "decide/deny_unknown", ALLOWED, cred, &NoCache, r);
}

pub(crate) fn decide_deny_revoked(c: &mut Criterion) {
    let auth = format!("Bearer {}", FIXTURE.revoked);
    let cred = Some(("authorization", auth.as_str()));
    let r = Some(Reason::Revoked);
    bench_decide(c, "decide/deny_revoked", ALLOWED, cred, &NoCache, r);
}

pub(crate) fn decide_deny_scope(c: &mut Criterion) {
    // The allowed key again, on the route that needs `tokens:write`: the denial comes last,
    // after every other check has passed.
    let auth = format!("Bearer {}", FIXTURE.live);
    let cred = Some(("authorization", auth.as_str()));
    let req = ("POST", "/v1/tokens");
    let r = Some(Reason::Scope);
    bench_decide(c, "decide/deny_scope", req, cred, &NoCache, r);
}
