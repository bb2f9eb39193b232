//! Lookup benchmarks: route matching over 100 routes, and a digest lookup in a 1M-key table.

use std::hint::black_box;

use criterion::Criterion;

use keygate::core::key::{self, KeyHash, KeyRecord};
use keygate::core::route::{Route, RouteTable};
use keygate::core::table::Table;

use crate::fixture::{HOST, record, scheme, settings};

pub(crate) fn routes_match_100(c: &mut Criterion) {
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

pub(crate) fn table_lookup_1m(c: &mut Criterion) {
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
