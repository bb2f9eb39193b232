//! Hashing benchmarks: the Argon2 verification the cache exists to avoid, and the SHA-256
//! baseline the `decide` figures are divided by.

use std::hint::black_box;

use criterion::Criterion;

use keygate::core::key;
use keygate::core::scheme::HashKind;

use crate::fixture::{scheme, settings};

pub(crate) fn argon2_verify_default(c: &mut Criterion) {
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

pub(crate) fn baseline_sha256_54_bytes(c: &mut Criterion) {
    // One SHA-256 compression of a key-sized input: the unit the decide figures are divided
    // by, to compare runs across machines. A generated tk_live_ key is 53 bytes; 54 and 53
    // both fit one 64-byte block, so the cost is the same.
    let input = [b'k'; 54];
    c.bench_function("baseline/sha256_54_bytes", |b| {
        b.iter(|| key::sha256(black_box(&input)))
    });
}
