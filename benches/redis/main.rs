//! Benchmarks of keygate on Redis, as a plain program (`harness = false`):
//!
//! 1. Revocation propagation: two sidecars in this process on one real `redis-server`. Keys
//!    are created and then revoked through sidecar A's management; each revocation is timed
//!    until sidecar B's authorizer first refuses the key (target: p99 ≤ 50 ms).
//! 2. Cold load: 1,000,000 SHA-256 key records written straight into Redis in keygate's
//!    format, then a fresh sidecar started in a child process (so its memory is its own),
//!    timed until its table is loaded (target: ≤ 3 s), with the resident memory it added per
//!    key (target: ≤ 150 bytes) and the load split into phases.
//!
//! Each comes with baselines from the same run (Redis `PING`, `XADD`→`XREAD`, a bare `HSCAN`)
//! so the ratios mean something on a busy machine. Run with `bench/redis.sh`; results and the
//! machine they came from are in BENCHMARKS.md.

mod baselines;
mod cold_load;
mod cold_table;
mod counting;
mod measure;
mod propagation;
mod redis_server;
mod sidecar;

use std::time::Duration;

use serde_json::Value;

use baselines::baselines;
use cold_load::{cold_child, run_cold_child, table_model};
use cold_table::{cold_record, write_cold_table};
use measure::{Dist, cpu_model, loadavg, median, verdict};
use propagation::{Keys, Propagation, propagation};
use redis_server::RedisServer;

/// Keys revoked and timed in the propagation benchmark, after `PROP_WARMUP` untimed ones.
const PROP_KEYS: usize = 200;
const PROP_WARMUP: usize = 10;
/// Revocations timed (after the untimed ones) with the 1M-key table loaded.
const BIG_PROP_KEYS: usize = 20;
const BIG_PROP_WARMUP: usize = 2;
/// Samples of each Redis round-trip baseline, after `RTT_WARMUP` untimed ones.
pub(crate) const RTT_SAMPLES: usize = 1_000;
pub(crate) const RTT_WARMUP: usize = 100;
/// Keys of the cold-load benchmark, their accounts, and records per pipelined round trip.
pub(crate) const COLD_KEYS: usize = 1_000_000;
pub(crate) const COLD_ACCOUNTS: usize = 10_000;
pub(crate) const WRITE_BATCH: usize = 10_000;
/// Fresh child processes that each load the table once.
const COLD_RUNS: usize = 3;
pub(crate) const CHILD_FLAG: &str = "--cold-load-child";
pub(crate) const RESULT_TAG: &str = "COLD_LOAD_RESULT ";

const PROP_TARGET_MS: f64 = 50.0;
const READY_TARGET_S: f64 = 3.0;
const RSS_TARGET_BYTES: f64 = 150.0;

// ---------------------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD_FLAG) {
        let url = args.get(i + 1).expect("URL after --cold-load-child");
        let result = runtime().block_on(cold_child(url));
        println!("{RESULT_TAG}{result}");
        return;
    }

    let redis = RedisServer::start();
    let url = redis.url();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "keygate Redis benchmarks: {workers} CPUs ({}), redis-server {}, load average {}",
        cpu_model(),
        redis.version(),
        loadavg()
    );

    eprintln!("[1/3] revocation propagation: {PROP_KEYS} keys, two sidecars");
    let rt = runtime();
    let (base, prop) = rt.block_on(async {
        let base = baselines(&url).await;
        let prop = propagation(
            &url,
            Keys::Create(PROP_WARMUP + PROP_KEYS),
            PROP_WARMUP,
            Duration::from_secs(30),
        )
        .await;
        (base, prop)
    });
    drop(rt);

    eprintln!("[2/3] cold load: writing {COLD_KEYS} key records");
    let write = write_cold_table(&url);
    eprintln!(
        "      written in {:.1} s; {COLD_RUNS} cold loads in fresh processes",
        write.as_secs_f64()
    );
    let runs: Vec<Value> = (0..COLD_RUNS)
        .map(|i| {
            let r = run_cold_child(&url);
            eprintln!(
                "      run {}: ready in {:.2} s",
                i + 1,
                r["ready_s"].as_f64().unwrap_or(f64::NAN)
            );
            r
        })
        .collect();

    // The same propagation with the 1M-key table loaded in both sidecars: keys spread over
    // the table, revoked through A.
    eprintln!("[3/3] revocation propagation with {COLD_KEYS} keys loaded: {BIG_PROP_KEYS} keys");
    let big_keys: Vec<(String, String)> = (0..BIG_PROP_WARMUP + BIG_PROP_KEYS)
        .map(|i| {
            let (rec, key) = cold_record(i * (COLD_KEYS / (BIG_PROP_WARMUP + BIG_PROP_KEYS)));
            (rec.id, format!("Bearer {key}"))
        })
        .collect();
    let rt = runtime();
    let big = rt.block_on(propagation(
        &url,
        Keys::Existing(big_keys),
        BIG_PROP_WARMUP,
        Duration::from_secs(300),
    ));
    drop(rt);

    // ---- Report.
    let row = |name: &str, d: &Dist, target: &str| {
        println!(
            "| {name:<44} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} | {target:<16} |",
            d.p50, d.p90, d.p99, d.max
        );
    };
    let header = || {
        println!(
            "| {:<44} | {:>8} | {:>8} | {:>8} | {:>8} | {:<16} |",
            "ms", "p50", "p90", "p99", "max", "target"
        );
        println!(
            "|{:-<46}|{:->10}|{:->10}|{:->10}|{:->10}|{:-<18}|",
            "", "", "", "", "", ""
        );
    };
    let prop_rows = |p: &Propagation| {
        let met = p.from_start.p99 <= PROP_TARGET_MS;
        row(
            "revoke_key starts → B refuses",
            &p.from_start,
            &format!("p99 ≤ 50: {}", verdict(met)),
        );
        row("revoke_key returns → B refuses", &p.from_return, "");
        row("revoke_key call (A writes, A applies)", &p.revoke_call, "");
    };
    println!();
    println!(
        "Revocation propagation: {PROP_KEYS} keys ({} in Redis) revoked one at a time through \
         sidecar A, B polled (both sidecars in one process, tokio {workers} workers)",
        PROP_KEYS + PROP_WARMUP
    );
    println!();
    header();
    prop_rows(&prop);
    row("baseline: PING round trip", &base.ping, "");
    row(
        "baseline: XADD + XREAD (two round trips)",
        &base.xadd_xread,
        "",
    );
    row("baseline: XADD → blocked XREAD wakes", &base.xadd_wake, "");
    println!();
    println!(
        "B refused before revoke_key returned: {}/{}; key creation: {:.2} ms each; \
         p50 propagation = {:.1} × PING, {:.1} × XADD→XREAD wake-up",
        prop.refused_before_return,
        prop.samples,
        prop.create_ms.unwrap_or(f64::NAN),
        prop.from_start.p50 / base.ping.p50,
        prop.from_start.p50 / base.xadd_wake.p50,
    );
    println!();
    println!(
        "Revocation propagation with the {COLD_KEYS}-key table loaded in both sidecars: \
         {BIG_PROP_KEYS} keys"
    );
    println!();
    header();
    prop_rows(&big);
    println!();
    println!(
        "B refused before revoke_key returned: {}/{}",
        big.refused_before_return, big.samples
    );

    let col = |k: &str| -> Vec<f64> { runs.iter().map(|r| r[k].as_f64().unwrap()).collect() };
    let crow = |name: &str, k: &str, prec: usize, target: &str| {
        let v = col(k);
        let cells: Vec<String> = v.iter().map(|x| format!("{x:>9.prec$}")).collect();
        println!(
            "| {name:<48} | {} | {:>9.prec$} | {target:<18} |",
            cells.join(" | "),
            median(v.clone())
        );
    };
    println!();
    println!(
        "Cold load of {COLD_KEYS} SHA-256 keys ({COLD_ACCOUNTS} accounts), each run a fresh \
         process (writing them took {:.1} s)",
        write.as_secs_f64()
    );
    println!();
    let heads: Vec<String> = (1..=COLD_RUNS)
        .map(|i| format!("{:>9}", format!("run {i}")))
        .collect();
    println!(
        "| {:<48} | {} | {:>9} | {:<18} |",
        "measure",
        heads.join(" | "),
        "median",
        "target"
    );
    println!(
        "|{:-<50}|{}|{:->11}|{:-<20}|",
        "",
        ["----------:"; COLD_RUNS].join("|"),
        "",
        ""
    );
    let ready = median(col("ready_s"));
    let rss = median(col("rss_settled_per_key"));
    crow(
        "ready: start → table loaded (s)",
        "ready_s",
        2,
        &format!("≤ 3 s: {}", verdict(ready <= READY_TARGET_S)),
    );
    crow(
        "RSS added per key, at ready (bytes)",
        "rss_ready_per_key",
        0,
        "",
    );
    crow(
        "RSS added per key, peak (VmHWM) (bytes)",
        "rss_peak_per_key",
        0,
        "",
    );
    crow(
        "RSS added per key, settled 5 s later (bytes)",
        "rss_settled_per_key",
        0,
        &format!("≤ 150: {}", verdict(rss <= RSS_TARGET_BYTES)),
    );
    crow(
        "RSS added per key, after malloc_trim (bytes)",
        "rss_trimmed_per_key",
        0,
        "",
    );
    crow(
        "RSS of the table alone per key (bytes)",
        "rss_table_only_per_key",
        0,
        "",
    );
    crow("phase: bare HSCAN (ms)", "hscan_ms", 0, "baseline");
    crow(
        "  of which inside Redis (commandstats) (ms)",
        "hscan_server_ms",
        0,
        "",
    );
    crow("phase: UTF-8 + JSON parse (ms)", "parse_ms", 0, "");
    crow("phase: BTreeMap insert (ms)", "btree_ms", 0, "");
    crow(
        "Store::load = HSCAN+parse+insert (ms)",
        "store_load_ms",
        0,
        "",
    );
    crow("phase: Table::build (ms)", "build_ms", 0, "");
    crow("drop of the loaded State (ms)", "state_drop_ms", 0, "");
    crow("drop of the Table (ms)", "table_drop_ms", 0, "");
    crow(
        "Table::with_changes, 1 record (ms)",
        "with_changes_ms",
        1,
        "",
    );
    crow(
        "  drop of the replaced Table clone (ms)",
        "with_changes_drop_ms",
        1,
        "",
    );
    crow(
        "heap: State per key, requested (bytes)",
        "state_req_per_key",
        0,
        "",
    );
    crow(
        "heap: State per key, glibc chunks (bytes)",
        "state_heap_per_key",
        0,
        "",
    );
    crow(
        "heap: State allocations per key",
        "state_allocs_per_key",
        1,
        "",
    );
    crow(
        "heap: Table per key, requested (bytes)",
        "table_req_per_key",
        0,
        "",
    );
    crow(
        "heap: Table per key, glibc chunks (bytes)",
        "table_heap_per_key",
        0,
        "",
    );
    crow(
        "heap: Table allocations per key",
        "table_allocs_per_key",
        1,
        "",
    );
    println!();
    let r0 = &runs[0];
    let f = |k: &str| r0[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "wire: {:.0} bytes of JSON + {:.0} bytes of id per key ({:.0} MB in all) in {} HSCAN \
         round trips; load average at each child's start: {}",
        f("json_bytes_per_key"),
        f("id_bytes_per_key"),
        (f("json_bytes_per_key") + f("id_bytes_per_key")) * COLD_KEYS as f64 / 1e6,
        r0["hscan_round_trips"],
        runs.iter()
            .map(|r| r["loadavg"].as_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(" / "),
    );
    let m = table_model(COLD_KEYS);
    let g = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "table model at {COLD_KEYS} keys: Arc<KeyEntry> {} B requested → {} B chunk \
         (KeyEntry {} B, of which KeyHash {} B; the id inline); {} buckets per index, by id and \
         by digest, {} B/slot → {:.1} B/key each; total {:.0} B/key (KeyRecord in the state: {} B \
         + its strings)",
        m["arc_KeyEntry_request"],
        m["arc_KeyEntry_chunk"],
        m["size_of_KeyEntry"],
        m["size_of_KeyHash"],
        m["buckets"],
        m["slot"],
        g("index_per_key"),
        g("total_per_key"),
        m["size_of_KeyRecord"],
    );
    drop(redis);
}
