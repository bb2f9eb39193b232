//! The key table at fleet sizes, in one process: resident memory per SHA-256 key, build time,
//! lookup time, and the CPU one change costs, at each table size given (default 1M and 10M).
//!
//!   cargo bench --bench table -- [keys...]        (bench/table.sh)
//!
//! Records are generated one at a time and dropped once in the table, so the resident memory
//! added is the table's own. Keys belong to 10,000 accounts, one in three with a scope list
//! (as in bench/redis.sh's table). Lookup figures are the median of rounds of 4,096 probes: over
//! digests cycling through the same 4,096 keys (the core benchmark's way: what hashing and
//! probing cost), and over digests drawn from the whole table (each probe also a cache miss).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use keygate::core::key::{self, KeyHash, KeyRecord};
use keygate::core::scheme::{HashKind, Scheme};
use keygate::core::table::Table;

fn proc_status(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

fn record(i: usize) -> KeyRecord {
    let mut r = KeyRecord::new(
        format!("{i:012}"),
        String::new(),
        format!("acct-{:05}", i % 10_000),
        "live".into(),
        KeyHash::Sha256(digest(i)),
        0,
    );
    r.scopes = i
        .is_multiple_of(3)
        .then(|| vec!["images".into(), "data".into()]);
    r
}

fn digest(i: usize) -> [u8; 32] {
    key::sha256(format!("tk_live_{i:012}_secret").as_bytes())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A cheap deterministic sequence over `0..n` (xorshift), for probes spread over the table.
fn spread(n: usize, count: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

fn lookups(table: &Table, probes: &[[u8; 32]]) -> f64 {
    let rounds: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            for d in probes {
                black_box(table.by_digest(black_box(d)).is_some());
            }
            t.elapsed().as_nanos() as f64 / probes.len() as f64
        })
        .collect();
    median(rounds)
}

fn run(n: usize, schemes: &[Scheme]) {
    let plans = BTreeMap::new();
    let before = proc_status("VmRSS:");
    let started = Instant::now();
    let mut table = Table::with_capacity(n);
    for i in 0..n {
        table.upsert_key(schemes, &record(i), None);
    }
    let build = started.elapsed().as_secs_f64();
    let after = proc_status("VmRSS:");
    assert_eq!(table.len(), n);
    let cycling: Vec<[u8; 32]> = (0..4096).map(|j| digest(j * 7919 % n)).collect();
    let random: Vec<[u8; 32]> = spread(n, 4096).into_iter().map(digest).collect();
    assert!(random.iter().all(|d| table.by_digest(d).is_some()));
    let (hot, cold) = (lookups(&table, &cycling), lookups(&table, &random));
    // One change: a revocation of a random key, applied to the published snapshot while the
    // previous snapshot is still held (as a decision in flight would), then both dropped.
    let changes: Vec<f64> = spread(n, 500)
        .into_iter()
        .map(|i| {
            let mut r = record(i);
            r.revoked_at = Some(1);
            r.version = 2;
            let t = Instant::now();
            let next = table.with_changes(schemes, &plans, std::slice::from_ref(&r), &[]);
            let took = t.elapsed().as_secs_f64() * 1e6;
            assert!(next.by_id(r.id.as_bytes()).unwrap().revoked());
            drop(next);
            took
        })
        .collect();
    let mut chain = table.clone();
    let t = Instant::now();
    for i in spread(n, 500) {
        let mut r = record(i);
        r.version = 3;
        chain = chain.with_changes(schemes, &plans, std::slice::from_ref(&r), &[]);
    }
    let chained = t.elapsed().as_secs_f64() * 1e6 / 500.0;
    drop(chain);
    println!(
        "{n} keys: {:.1} B/key resident ({:.1} B/key entries and indexes), build {build:.2} s, \
         lookup {hot:.1} ns (4,096 cycling) / {cold:.1} ns (random over the table), \
         change {:.1} µs median ({:.1} µs max of 500), {chained:.1} µs each in a chain of 500 \
         (old snapshots dropped as it goes)",
        (after - before) / n as f64,
        table.heap_bytes() as f64 / n as f64,
        median(changes.clone()),
        changes.iter().copied().fold(0.0, f64::max),
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000_000, 10_000_000]
    } else {
        sizes
    };
    let schemes = [Scheme::new(
        "live".into(),
        "x-api-key".into(),
        "tk_live_".into(),
        HashKind::Sha256,
        1,
        100,
    )];
    for n in sizes {
        run(n, &schemes);
    }
}
