//! Micro-benchmarks of keygate's pure decision core: `decide` on its allow and deny paths,
//! route matching, table lookups, and the Argon2 verification the cache exists to avoid.
//!
//! Run with `bench/core.sh`; results and the machine they came from are in BENCHMARKS.md.
//! The target is a cached decision (no Argon2 on the path) in at most 1 µs.

use std::hint::black_box;
use std::sync::LazyLock;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use keygate::authz::limiter::Limiter;
use keygate::config::Settings;
use keygate::core::decide::{NoCache, Outcome, Reason, SecretCheck, decide};
use keygate::core::key::{self, Account, AccountStatus, KeyHash, KeyRecord};
use keygate::core::limit::{Per, RateLimit, Shared};
use keygate::core::request::Request;
use keygate::core::route::{Route, RouteTable};
use keygate::core::scheme::{HashKind, Scheme};
use keygate::core::table::{KeyEntry, Table};

const NOW: i64 = 1_800_000_000;
const HOST: &str = "api.example";
const TABLE_KEYS: usize = 1_000;
const ACCOUNTS: usize = 100;

/// The service draws its HMAC key at random per process; the key's value does not change the
/// cost, so a fixed one will do.
const HMAC_KEY: [u8; 32] = [0x5a; 32];

/// The shared `decide` fixture: the shipped config, and a table of `TABLE_KEYS` keys spread
/// over `ACCOUNTS` active accounts, among them the keys each benchmark presents.
struct Fixture {
    settings: Settings,
    table: Table,
    /// sha256 scheme, scopes `[tokens:read]`.
    live: String,
    /// Argon2 scheme, scopes `[tokens:read]`.
    toon: String,
    /// sha256 scheme, revoked.
    revoked: String,
    /// Well-formed sha256 key that is not in the table.
    unknown: String,
}

/// Built once: the Argon2 hash of the `toon` key alone takes tens of milliseconds.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

fn settings() -> Settings {
    Settings::from_yaml(include_str!("../config/keygate.yaml")).expect("config/keygate.yaml")
}

fn scheme<'s>(settings: &'s Settings, name: &str) -> &'s Scheme {
    let i = settings
        .scheme_index(name)
        .expect("scheme in config/keygate.yaml");
    &settings.policy.schemes[i]
}

fn record(scheme: &Scheme, id: String, hash: KeyHash, account: String) -> KeyRecord {
    let prefix = format!("{}{}", scheme.key_prefix, id);
    KeyRecord::new(id, prefix, account, scheme.name.clone(), hash, NOW - 86_400)
}

/// Generates a key of `s` for the next account in turn, stores its record, returns the key.
fn add(keys: &mut Vec<KeyRecord>, s: &Scheme, scopes: Option<&[&str]>) -> String {
    let k = key::generate(s);
    let hash = key::hash_key(s, k.key.as_bytes()).expect("hash");
    let account = format!("acct-{}", keys.len() % ACCOUNTS);
    let mut r = record(s, k.id.clone(), hash, account);
    r.scopes = scopes.map(|v| v.iter().map(|s| s.to_string()).collect());
    keys.push(r);
    k.key.to_string()
}

impl Fixture {
    fn new() -> Fixture {
        let settings = settings();
        let live_s = scheme(&settings, "live");
        let toon_s = scheme(&settings, "toon");
        let accounts: Vec<Account> = (0..ACCOUNTS)
            .map(|i| Account {
                id: format!("acct-{i}"),
                plan: Some(if i % 2 == 0 { "pro" } else { "starter" }.into()),
                status: AccountStatus::Active,
                updated_at: NOW,
                version: 1,
            })
            .collect();
        let mut keys = Vec::with_capacity(TABLE_KEYS);
        let live = add(&mut keys, live_s, Some(&["tokens:read"]));
        let toon = add(&mut keys, toon_s, Some(&["tokens:read"]));
        let revoked = add(&mut keys, live_s, None);
        keys.last_mut().unwrap().revoked_at = Some(NOW - 60);
        // The rest are filler so the maps have a realistic size, not a single bucket.
        while keys.len() < TABLE_KEYS {
            add(&mut keys, live_s, None);
        }
        let unknown = key::generate(live_s).key.to_string();
        let table = Table::build(
            &settings.policy.schemes,
            &settings.policy.plans,
            &keys,
            &accounts,
            None,
        );
        assert_eq!(table.len(), TABLE_KEYS);
        Fixture {
            settings,
            table,
            live,
            toon,
            revoked,
            unknown,
        }
    }
}

/// The hit path of the service's `Cached::cached` (src/service.rs): an HMAC of the presented
/// key, compared in constant time with the digest the entry kept from its last verification.
/// The service also bumps a Prometheus counter on a hit, which is left out here.
struct HmacCache {
    mac: Hmac<Sha256>,
}

impl HmacCache {
    fn new() -> HmacCache {
        HmacCache {
            mac: Hmac::<Sha256>::new_from_slice(&HMAC_KEY).expect("HMAC takes any key length"),
        }
    }

    fn digest(&self, key: &[u8]) -> [u8; 32] {
        // Cloning the keyed state skips re-deriving the inner and outer pads per request.
        let mut m = self.mac.clone();
        m.update(key);
        m.finalize().into_bytes().into()
    }
}

impl SecretCheck for HmacCache {
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool> {
        match entry.verified() {
            Some(d) if bool::from(self.digest(key).ct_eq(d)) => Some(true),
            _ => None,
        }
    }
}

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

fn decide_sha256_allow(c: &mut Criterion) {
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
fn decide_sha256_allow_two_limits(c: &mut Criterion) {
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

fn decide_argon2_cached_allow(c: &mut Criterion) {
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

fn decide_deny_missing(c: &mut Criterion) {
    let r = Some(Reason::Missing);
    bench_decide(c, "decide/deny_missing", ALLOWED, None, &NoCache, r);
}

fn decide_deny_malformed(c: &mut Criterion) {
    // A truncated key: refused by the shape check, before any hashing or lookup.
    let auth = format!("Bearer {}", &FIXTURE.live[..20]);
    let cred = Some(("authorization", auth.as_str()));
    let r = Some(Reason::Malformed);
    bench_decide(c, "decide/deny_malformed", ALLOWED, cred, &NoCache, r);
}

fn decide_deny_unknown(c: &mut Criterion) {
    // Well-formed, so it pays for the digest and the lookup that misses.
    let auth = format!("Bearer {}", FIXTURE.unknown);
    let cred = Some(("authorization", auth.as_str()));
    let r = Some(Reason::Unknown);
    bench_decide(c, "decide/deny_unknown", ALLOWED, cred, &NoCache, r);
}

fn decide_deny_revoked(c: &mut Criterion) {
    let auth = format!("Bearer {}", FIXTURE.revoked);
    let cred = Some(("authorization", auth.as_str()));
    let r = Some(Reason::Revoked);
    bench_decide(c, "decide/deny_revoked", ALLOWED, cred, &NoCache, r);
}

fn decide_deny_scope(c: &mut Criterion) {
    // The allowed key again, on the route that needs `tokens:write`: the denial comes last,
    // after every other check has passed.
    let auth = format!("Bearer {}", FIXTURE.live);
    let cred = Some(("authorization", auth.as_str()));
    let req = ("POST", "/v1/tokens");
    let r = Some(Reason::Scope);
    bench_decide(c, "decide/deny_scope", req, cred, &NoCache, r);
}

fn routes_match_100(c: &mut Criterion) {
    // First match wins, so matching the last of 100 routes is the worst case of the linear
    // scan. The shared `/api/v1/svc` start makes each miss compare a dozen bytes, as routes
    // under one API root do.
    let routes = RouteTable::new(
        (0..100)
            .map(|i| {
                Route::new(
                    format!("/api/v1/svc{i:02}"),
                    None,
                    None,
                    Some(format!("svc{i:02}:read")),
                    vec![0, 1],
                )
            })
            .collect(),
    );
    let path = "/api/v1/svc99/items/7";
    let found = routes.find("GET", path, Some(HOST)).expect("a route");
    assert_eq!(found.path_prefix, "/api/v1/svc99");
    c.bench_function("routes/match_100", |b| {
        b.iter(|| routes.find(black_box("GET"), black_box(path), black_box(Some(HOST))))
    });
}

fn table_lookup_1m(c: &mut Criterion) {
    const KEYS: usize = 1_000_000;
    // Cycling through many digests rather than one keeps the lookups from being served by a
    // single cache-hot bucket; a power of two keeps the index arithmetic to a mask.
    const PROBES: usize = 4096;
    let synthetic = |i: usize| format!("tk_live_{i:012}_{:032}", i.wrapping_mul(2_654_435_761));
    // Built lazily inside the closure, so filtering this benchmark out skips the build.
    let mut state: Option<(Table, Vec<[u8; 32]>)> = None;
    c.bench_function("table/lookup_1m", |b| {
        let (table, probes) = state.get_or_insert_with(|| {
            let settings = settings();
            let live_s = scheme(&settings, "live");
            // Records are made straight from SHA-256 digests: Argon2 for a million keys would
            // take hours and is not what a digest lookup touches.
            let keys: Vec<KeyRecord> = (0..KEYS)
                .map(|i| {
                    let hash = KeyHash::Sha256(key::sha256(synthetic(i).as_bytes()));
                    record(
                        live_s,
                        format!("{i:012}"),
                        hash,
                        format!("acct-{}", i % 1000),
                    )
                })
                .collect();
            let table = Table::build(
                &settings.policy.schemes,
                &settings.policy.plans,
                &keys,
                [],
                None,
            );
            assert_eq!(table.len(), KEYS);
            // Spread over the whole table (7919 is prime, so the probes are distinct).
            let probes: Vec<[u8; 32]> = (0..PROBES)
                .map(|j| key::sha256(synthetic(j * 7919 % KEYS).as_bytes()))
                .collect();
            assert!(probes.iter().all(|d| table.by_digest(d).is_some()));
            (table, probes)
        });
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            table.by_digest(black_box(&probes[i])).is_some()
        })
    });
}

fn argon2_verify_default(c: &mut Criterion) {
    // The toon scheme of the shipped config sets no argon2 block, so it gets the defaults;
    // this is what a cache miss costs.
    let settings = settings();
    let toon_s = scheme(&settings, "toon");
    assert_eq!(
        toon_s.hash,
        HashKind::Argon2id {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1
        }
    );
    let k = key::generate(toon_s);
    let hash = key::hash_key(toon_s, k.key.as_bytes()).expect("hash");
    assert!(key::verify(key::HashRef::of(&hash), k.key.as_bytes()));
    c.bench_function("argon2/verify_default", |b| {
        b.iter(|| key::verify(key::HashRef::of(&hash), black_box(k.key.as_bytes())))
    });
}

fn baseline_sha256_54_bytes(c: &mut Criterion) {
    // One SHA-256 compression of a key-sized input: the unit the decide figures are divided
    // by, to compare runs across machines. A generated tk_live_ key is 53 bytes; 54 and 53
    // both fit one 64-byte block, so the cost is the same.
    let input = [b'k'; 54];
    c.bench_function("baseline/sha256_54_bytes", |b| {
        b.iter(|| key::sha256(black_box(&input)))
    });
}

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
