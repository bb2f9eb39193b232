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

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use keygate::admin::manage::{CreateKey, Manager};
use keygate::config::Settings;
use keygate::core::decide::Reason;
use keygate::core::key::{self, KeyHash, KeyRecord};
use keygate::core::request::Request;
use keygate::core::table::{KeyEntry, Table};
use keygate::metrics::Frontend;
use keygate::service::Authorizer;
use keygate::store::Store;
use keygate::store::replica::Replica;
use serde_json::{Value, json};

/// Keys revoked and timed in the propagation benchmark, after `PROP_WARMUP` untimed ones.
const PROP_KEYS: usize = 200;
const PROP_WARMUP: usize = 10;
/// Revocations timed (after the untimed ones) with the 1M-key table loaded.
const BIG_PROP_KEYS: usize = 20;
const BIG_PROP_WARMUP: usize = 2;
/// Samples of each Redis round-trip baseline, after `RTT_WARMUP` untimed ones.
const RTT_SAMPLES: usize = 1_000;
const RTT_WARMUP: usize = 100;
/// Keys of the cold-load benchmark, their accounts, and records per pipelined round trip.
const COLD_KEYS: usize = 1_000_000;
const COLD_ACCOUNTS: usize = 10_000;
const WRITE_BATCH: usize = 10_000;
/// Fresh child processes that each load the table once.
const COLD_RUNS: usize = 3;
const CHILD_FLAG: &str = "--cold-load-child";
const RESULT_TAG: &str = "COLD_LOAD_RESULT ";

const PROP_TARGET_MS: f64 = 50.0;
const READY_TARGET_S: f64 = 3.0;
const RSS_TARGET_BYTES: f64 = 150.0;

// ---------------------------------------------------------------------------------------------
// A counting allocator: off (one relaxed load per call) except around the heap accounting of
// the cold-load child, where it sums requested bytes and what glibc really hands out.

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Live bytes as requested by Rust.
static LIVE_REQUESTED: AtomicIsize = AtomicIsize::new(0);
/// Live bytes as glibc holds them: usable size plus the 8-byte chunk header.
static LIVE_HEAP: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn malloc_usable_size(p: *mut std::ffi::c_void) -> usize;
    fn malloc_trim(pad: usize) -> i32;
}

/// Heap bytes a live allocation takes in glibc (usable size and chunk header).
fn heap_size(p: *mut u8, requested: usize) -> isize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let _ = requested;
        // SAFETY: `p` is a live allocation from the system allocator (malloc family).
        (unsafe { malloc_usable_size(p.cast()) } + 8) as isize
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = p;
        requested as isize
    }
}

/// Returns free heap memory to the OS (glibc keeps it otherwise), so RSS shows live data.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        malloc_trim(0);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() && COUNTING.load(Relaxed) {
            LIVE_REQUESTED.fetch_add(l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_add(heap_size(p, l.size()), Relaxed);
            LIVE_ALLOCS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() && COUNTING.load(Relaxed) {
            LIVE_REQUESTED.fetch_add(l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_add(heap_size(p, l.size()), Relaxed);
            LIVE_ALLOCS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Relaxed) {
            LIVE_REQUESTED.fetch_sub(l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_sub(heap_size(p, l.size()), Relaxed);
            LIVE_ALLOCS.fetch_sub(1, Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let counting = COUNTING.load(Relaxed);
        let before = if counting { heap_size(p, l.size()) } else { 0 };
        // SAFETY: forwarded as is.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() && counting {
            LIVE_REQUESTED.fetch_add(new as isize - l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_add(heap_size(q, new) - before, Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live (requested bytes, heap bytes, allocations) since the last `count_start`.
fn count_start() {
    LIVE_REQUESTED.store(0, Relaxed);
    LIVE_HEAP.store(0, Relaxed);
    LIVE_ALLOCS.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
}

fn count_stop() -> (f64, f64, f64) {
    COUNTING.store(false, Relaxed);
    (
        LIVE_REQUESTED.load(Relaxed) as f64,
        LIVE_HEAP.load(Relaxed) as f64,
        LIVE_ALLOCS.load(Relaxed) as f64,
    )
}

// ---------------------------------------------------------------------------------------------
// Machine, process and Redis helpers.

/// A `kB` line of /proc/self/status, in bytes: `VmRSS` (resident now), `VmHWM` (peak).
fn proc_status(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

fn rss_bytes() -> f64 {
    proc_status("VmRSS:")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or_else(
            || "unknown".into(),
            |v| v.trim_start_matches([' ', '\t', ':']).to_string(),
        )
}

fn redis_bin() -> PathBuf {
    for p in [
        "redis-server",
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
    ] {
        if Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok()
        {
            return PathBuf::from(p);
        }
    }
    panic!("redis-server not found: install it (scripts/test.sh does)");
}

/// A `redis-server` on a free port without persistence, killed on drop (also on panic).
struct RedisServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temporary directory");
        let child = Command::new(redis_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer {
            port,
            child,
            _dir: dir,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let pong = redis::Client::open(server.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok_and(|p| p == "PONG") {
                return server;
            }
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded by the deadline
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn version(&self) -> String {
        let info: String = redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("INFO").arg("server").query(&mut c))
            .unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Async connections that tolerate a busy machine (the client's default response timeout is
/// 500 ms).
fn conn_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(60)))
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis URL")
        .get_multiplexed_async_connection_with_config(&conn_config())
        .await
        .expect("connect to redis")
}

/// The shipped example config on port 0 with the Redis backend at `url`.
fn settings_for(url: &str) -> Settings {
    let file_store = "  backend: file             # embedded default: one local file\n  path: data/keygate.json\n";
    let example = include_str!("../config/keygate.yaml");
    assert!(
        example.contains(file_store),
        "config/keygate.yaml changed: update the store replacement in benches/redis.rs"
    );
    let text = example
        .replace("127.0.0.1:9001", "127.0.0.1:0")
        .replace("127.0.0.1:9002", "127.0.0.1:0")
        .replace("127.0.0.1:9003", "127.0.0.1:0")
        .replace(file_store, &format!("  backend: redis\n  url: {url}\n"));
    Settings::from_yaml(&text).expect("bench config")
}

/// Polls until the replica holds a loaded table; the time it took.
async fn wait_loaded(replica: &Replica, deadline: Duration) -> Duration {
    let start = Instant::now();
    while !replica.is_loaded() {
        assert!(start.elapsed() < deadline, "the key table did not load");
        tokio::time::sleep(Duration::from_millis(1)).await; // poll interval, bounded by the deadline
    }
    start.elapsed()
}

/// Decides `GET /v1/x` with `Authorization: Bearer <key>` on a sidecar's authorizer.
async fn decide(auth: &Authorizer, bearer: &str) -> Result<(), Reason> {
    let headers = [("authorization", bearer)];
    let req = Request {
        method: "GET",
        path: "/v1/x",
        host: None,
        headers: &headers[..],
    };
    auth.check(&req, Frontend::EnvoyGrpc)
        .await
        .map(|_| ())
        .map_err(|d| d.reason)
}

// ---------------------------------------------------------------------------------------------
// Statistics and output.

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    sorted[i]
}

struct Dist {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn dist(mut v: Vec<f64>) -> Dist {
    v.sort_by(f64::total_cmp);
    Dist {
        p50: pct(&v, 0.50),
        p90: pct(&v, 0.90),
        p99: pct(&v, 0.99),
        max: v[v.len() - 1],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

// ---------------------------------------------------------------------------------------------
// Deterministic realistic key records (the child regenerates any of them from its index).

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// splitmix64: fast, and enough for ids and secrets that only have to look real.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn base62(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| BASE62[(self.next() % 62) as usize] as char)
            .collect()
    }
}

/// Key number `i` of the cold-load table (scheme `live`, SHA-256) and the key itself: a
/// 12-character base62 id, one of 10,000 accounts, no scopes for 93 % of keys and one of three
/// lists for the rest, a name on 10 %.
fn cold_record(i: usize) -> (KeyRecord, String) {
    let mut rng = Rng(0x6b65_7967_6174_6500 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let id = rng.base62(12);
    let key = format!("tk_live_{id}_{}", rng.base62(32));
    let scopes = match i % 100 {
        0..=4 => Some(vec!["tokens:read".to_string()]),
        5 => Some(vec!["tokens:read".to_string(), "tokens:write".to_string()]),
        6 => Some(vec!["usage:read".to_string()]),
        _ => None,
    };
    let mut rec = KeyRecord::new(
        id.clone(),
        format!("tk_live_{id}"),
        format!("acct-{:05}", i % COLD_ACCOUNTS),
        "live".into(),
        KeyHash::Sha256(key::sha256(key.as_bytes())),
        1_700_000_000 + (i as i64 % 31_536_000),
    );
    rec.name = (i % 10 == 3).then(|| "ci-deploy".to_string());
    rec.scopes = scopes;
    (rec, key)
}

/// Writes the cold-load table straight into Redis as keygate stores it: `{keygate}:keys` id →
/// record JSON, `{keygate}:rev` = 1. Pipelined: `WRITE_BATCH` records per round trip.
fn write_cold_table(url: &str) -> Duration {
    let start = Instant::now();
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect to redis");
    redis::cmd("FLUSHALL")
        .query::<()>(&mut con)
        .expect("FLUSHALL");
    for batch in (0..COLD_KEYS).step_by(WRITE_BATCH) {
        let mut pipe = redis::pipe();
        for part in (batch..(batch + WRITE_BATCH).min(COLD_KEYS)).step_by(1_000) {
            let mut hset = redis::cmd("HSET");
            hset.arg("{keygate}:keys");
            for i in part..(part + 1_000).min(COLD_KEYS) {
                let (rec, _) = cold_record(i);
                hset.arg(&rec.id)
                    .arg(serde_json::to_string(&rec).expect("record JSON"));
            }
            pipe.add_command(hset).ignore();
        }
        pipe.query::<()>(&mut con).expect("HSET batch");
    }
    redis::cmd("SET")
        .arg("{keygate}:rev")
        .arg(1)
        .query::<()>(&mut con)
        .expect("SET rev");
    let n: usize = redis::cmd("HLEN")
        .arg("{keygate}:keys")
        .query(&mut con)
        .expect("HLEN");
    assert_eq!(n, COLD_KEYS, "id collision in the generated table");
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Benchmark 1: baselines and revocation propagation.

struct Baselines {
    ping: Dist,
    xadd_xread: Dist,
    xadd_wake: Dist,
}

async fn baselines(url: &str) -> Baselines {
    let mut con = connect(url).await;
    let mut ping = Vec::new();
    for i in 0..RTT_WARMUP + RTT_SAMPLES {
        let t = Instant::now();
        let p: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
        assert_eq!(p, "PONG");
        if i >= RTT_WARMUP {
            ping.push(ms(t.elapsed()));
        }
    }

    // XADD then XREAD of the entry just added: two round trips, the write and the read of the
    // change log without the blocking wake-up.
    let stream = "bench:stream";
    let mut pair = Vec::new();
    let mut last = "0-0".to_string();
    for i in 0..RTT_WARMUP + RTT_SAMPLES {
        let t = Instant::now();
        let id: String = redis::cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(1_000)
            .arg("*")
            .arg("data")
            .arg("x")
            .query_async(&mut con)
            .await
            .unwrap();
        let r: redis::streams::StreamReadReply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(stream)
            .arg(&last)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(r.keys[0].ids.len(), 1);
        last = id;
        if i >= RTT_WARMUP {
            pair.push(ms(t.elapsed()));
        }
    }

    // XADD on one connection woken up a reader blocked in XREAD on another: how keygate's
    // followers hear of a change, and the floor of propagation through Redis.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let reader_url = url.to_string();
    let from = last.clone();
    let reader = tokio::spawn(async move {
        let mut con = connect(&reader_url).await;
        let mut last = from;
        loop {
            let r: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1_000)
                .arg("BLOCK")
                .arg(1_000)
                .arg("STREAMS")
                .arg(stream)
                .arg(&last)
                .query_async(&mut con)
                .await
                .unwrap();
            for e in r.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
                if e.get::<String>("data").as_deref() == Some("stop") {
                    return;
                }
                last = e.id.clone();
                let _ = tx.send(Instant::now());
            }
        }
    });
    let mut wake = Vec::new();
    for i in 0..RTT_WARMUP + RTT_SAMPLES / 5 {
        // Let the reader block again before the next write.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg("x")
            .query_async(&mut con)
            .await
            .unwrap();
        let woke = rx.recv().await.expect("reader alive");
        if i >= RTT_WARMUP {
            wake.push(ms(woke.duration_since(t)));
        }
    }
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("data")
        .arg("stop")
        .query_async(&mut con)
        .await
        .unwrap();
    reader.await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(&mut con)
        .await
        .unwrap();
    Baselines {
        ping: dist(ping),
        xadd_xread: dist(pair),
        xadd_wake: dist(wake),
    }
}

struct Propagation {
    /// From just before `revoke_key` on A until B first refuses.
    from_start: Dist,
    /// From `revoke_key` returning until B first refuses (0 when B already refused).
    from_return: Dist,
    /// The `revoke_key` call itself (A's write, and A's follower applying it).
    revoke_call: Dist,
    refused_before_return: usize,
    samples: usize,
    /// Time to create one key through A (`None` for keys already in Redis).
    create_ms: Option<f64>,
}

/// The keys a propagation run revokes.
enum Keys {
    /// Created through A's management: this many, spread over 50 accounts.
    Create(usize),
    /// Already in Redis: (id, `Bearer <key>`).
    Existing(Vec<(String, String)>),
}

/// Two sidecars A and B on `url`; each key is revoked through A and timed until B refuses it.
/// The first `warmup` revocations are not timed.
async fn propagation(url: &str, keys: Keys, warmup: usize, load_deadline: Duration) -> Propagation {
    let settings = settings_for(url);
    let a = keygate::server::start(settings.clone(), None)
        .await
        .expect("start sidecar A");
    let b = keygate::server::start(settings.clone(), None)
        .await
        .expect("start sidecar B");
    wait_loaded(&a.authorizer.replica, load_deadline).await;
    wait_loaded(&b.authorizer.replica, load_deadline).await;
    let store = Store::open(&settings.store).expect("open store");
    let manager = Manager::new(
        Arc::new(settings),
        store,
        Some(a.authorizer.replica.clone()),
    );

    let (keys, create_ms) = match keys {
        Keys::Existing(keys) => (keys, None),
        Keys::Create(n) => {
            let started = Instant::now();
            let mut keys = Vec::new();
            for i in 0..n {
                let created = manager
                    .create_key(
                        "bench",
                        CreateKey {
                            account: format!("acct-{:03}", i % 50),
                            scheme: Some("live".into()),
                            ..CreateKey::default()
                        },
                    )
                    .await
                    .expect("create key");
                keys.push((created.id, format!("Bearer {}", created.key)));
            }
            let create_ms = ms(started.elapsed()) / keys.len() as f64;
            (keys, Some(create_ms))
        }
    };
    let samples = keys.len() - warmup;

    // B has them all: its revision caught up with A's and it allows every key.
    let rev = a.authorizer.replica.revision();
    assert!(
        b.authorizer
            .replica
            .wait_for(rev, Duration::from_secs(10))
            .await,
        "sidecar B did not catch up"
    );
    for (_, bearer) in &keys {
        assert_eq!(decide(&b.authorizer, bearer).await, Ok(()), "B allows");
    }

    let (mut from_start, mut from_return, mut revoke_call) = (Vec::new(), Vec::new(), Vec::new());
    let mut refused_before_return = 0;
    for (n, (id, bearer)) in keys.into_iter().enumerate() {
        // B is polled by its own task from before the revocation starts, so the moment it
        // first refuses is seen whether or not revoke_key has returned by then.
        let auth = b.authorizer.clone();
        let poller = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Err(reason) = decide(&auth, &bearer).await {
                    return (Instant::now(), reason);
                }
                assert!(Instant::now() < deadline, "B never refused a revoked key");
                tokio::task::yield_now().await;
            }
        });
        let t0 = Instant::now();
        manager.revoke_key("bench", &id).await.expect("revoke");
        let returned = Instant::now();
        let (refused, reason) = poller.await.expect("poller");
        assert_eq!(reason, Reason::Revoked);
        if n < warmup {
            continue;
        }
        from_start.push(ms(refused.duration_since(t0)));
        revoke_call.push(ms(returned.duration_since(t0)));
        if refused <= returned {
            refused_before_return += 1;
        }
        from_return.push(ms(refused.saturating_duration_since(returned)));
    }
    a.shutdown().await;
    b.shutdown().await;
    Propagation {
        from_start: dist(from_start),
        from_return: dist(from_return),
        revoke_call: dist(revoke_call),
        refused_before_return,
        samples,
        create_ms,
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmark 2: the cold load, measured in a fresh child process.

/// Theoretical bytes per key of the table at `n` keys, from the type sizes and hashbrown's
/// growth (buckets double when 7/8 full) and glibc's chunk rounding.
fn table_model(n: usize) -> Value {
    fn buckets(n: usize) -> usize {
        // Grown one insert at a time: the smallest power of two whose 7/8 holds `n`.
        let mut b = 8;
        while b / 8 * 7 < n {
            b *= 2;
        }
        b
    }
    fn chunk(request: usize) -> usize {
        (request + 8).div_ceil(16).max(2) * 16
    }
    let entry = size_of::<KeyEntry>();
    let arc_entry = 16 + entry;
    // Each index holds bare entry pointers (the key is read from the entry).
    let slot = size_of::<Arc<KeyEntry>>();
    let b = buckets(n);
    let index = (b * (slot + 1) + 16) as f64 / n as f64;
    let total = chunk(arc_entry) as f64 + 2.0 * index;
    json!({
        "size_of_KeyEntry": entry,
        "size_of_KeyHash": size_of::<KeyHash>(),
        "arc_KeyEntry_request": arc_entry,
        "arc_KeyEntry_chunk": chunk(arc_entry),
        "buckets": b,
        "slot": slot,
        "index_per_key": index,
        "total_per_key": total,
        "size_of_KeyRecord": size_of::<KeyRecord>(),
    })
}

/// One cold load, in this (fresh) process: the end-to-end time to ready and RSS, then each
/// phase on its own, then the heap bytes of the loaded state and of the table.
async fn cold_child(url: &str) -> Value {
    let settings = settings_for(url);
    let n = COLD_KEYS as f64;
    let load_at_start = loadavg();

    // End to end: a sidecar started cold, polled until its table is loaded.
    trim();
    let rss_before = rss_bytes();
    let t0 = Instant::now();
    let running = keygate::server::start(settings.clone(), None)
        .await
        .expect("start sidecar");
    let replica = running.authorizer.replica.clone();
    wait_loaded(&replica, Duration::from_secs(300)).await;
    let ready_s = t0.elapsed().as_secs_f64();
    let rss_ready = rss_bytes();
    let table: Arc<Table> = Arc::clone(&replica.snapshot());
    assert_eq!(table.len(), COLD_KEYS);
    let (rec0, key0) = cold_record(0);
    assert_eq!(
        decide(&running.authorizer, &format!("Bearer {key0}")).await,
        Ok(()),
        "a loaded key is allowed"
    );
    let rss_peak = proc_status("VmHWM:");
    // The follower drops the loaded state right after publishing the table (about a second
    // for 1M records, measured below): wait well past that, then read RSS as the process
    // keeps it, and again once glibc has returned its free pages.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_settled = rss_bytes();
    trim();
    let rss_trimmed = rss_bytes();

    // What one change costs a follower at this size (the table is cloned, then patched).
    let mut revoked = rec0.clone();
    revoked.revoked_at = Some(1_800_000_000);
    revoked.version = 2;
    let (mut change_ms, mut drop_ms) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let next = table.with_changes(
            &settings.policy.schemes,
            &settings.policy.plans,
            std::slice::from_ref(&revoked),
            &[],
        );
        change_ms.push(ms(t.elapsed()));
        let t = Instant::now();
        drop(next);
        drop_ms.push(ms(t.elapsed()));
    }
    drop(table);
    running.shutdown().await;
    drop(replica);
    trim();

    // Phase 1: a bare HSCAN with COUNT 10000 as keygate issues it, values kept as bytes.
    let mut con = connect(url).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await
        .expect("CONFIG RESETSTAT");
    let t = Instant::now();
    let mut raw: Vec<Vec<u8>> = Vec::with_capacity(2 * COLD_KEYS);
    let (mut cursor, mut round_trips) = (0u64, 0usize);
    loop {
        let (next, items): (u64, Vec<Vec<u8>>) = redis::cmd("HSCAN")
            .arg("{keygate}:keys")
            .arg(cursor)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut con)
            .await
            .expect("HSCAN");
        raw.extend(items);
        round_trips += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let hscan_ms = ms(t.elapsed());
    // What Redis itself spent in those HSCANs (the rest is transfer and the client).
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .expect("INFO commandstats");
    let hscan_server_ms = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_hscan:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec=")))
        .and_then(|u| u.parse::<f64>().ok())
        .map_or(f64::NAN, |us| us / 1e3);
    let json_bytes: usize = raw.iter().skip(1).step_by(2).map(Vec::len).sum();
    let id_bytes: usize = raw.iter().step_by(2).map(Vec::len).sum();
    assert_eq!(raw.len(), 2 * COLD_KEYS);

    // Phase 2: UTF-8 check and JSON parse of every record (keygate parses `String`s).
    let t = Instant::now();
    let mut parsed: Vec<(String, KeyRecord)> = Vec::with_capacity(COLD_KEYS);
    let mut it = raw.into_iter();
    while let (Some(id), Some(js)) = (it.next(), it.next()) {
        let id = String::from_utf8(id).expect("UTF-8 id");
        let js = String::from_utf8(js).expect("UTF-8 record");
        let rec: KeyRecord = serde_json::from_str(&js).expect("record JSON");
        parsed.push((id, rec));
    }
    let parse_ms = ms(t.elapsed());

    // Phase 3: the records into the state's BTreeMap, as keygate's loader does.
    let t = Instant::now();
    let mut keys = BTreeMap::new();
    for (id, rec) in parsed {
        keys.insert(id, rec);
    }
    let btree_ms = ms(t.elapsed());
    drop(keys);
    trim();

    // Phase 1+2+3 as keygate runs them (interleaved per batch): Store::load.
    let store = Store::open(&settings.store).expect("open store");
    let t = Instant::now();
    let state = store.load().await.expect("Store::load");
    let store_load_ms = ms(t.elapsed());
    assert_eq!(state.keys.len(), COLD_KEYS);

    // Phase 4: the decision table from the state.
    let t = Instant::now();
    let built = Table::build(
        &settings.policy.schemes,
        &settings.policy.plans,
        state.keys.values(),
        state.accounts.values(),
        None,
    );
    let build_ms = ms(t.elapsed());
    let t = Instant::now();
    drop(built);
    let table_drop_ms = ms(t.elapsed());
    let t = Instant::now();
    drop(state);
    let state_drop_ms = ms(t.elapsed());
    trim();

    // Heap accounting (counting allocator on; not timed): the loaded state, then the table.
    count_start();
    let state = store.load().await.expect("Store::load");
    // Let the connection's driver task notice it was dropped and free its buffers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (state_req, state_heap, state_allocs) = count_stop();
    count_start();
    let built = Table::build(
        &settings.policy.schemes,
        &settings.policy.plans,
        state.keys.values(),
        state.accounts.values(),
        None,
    );
    let (table_req, table_heap, table_allocs) = count_stop();
    assert_eq!(built.len(), COLD_KEYS);
    drop(state);
    trim();
    let rss_table_only = rss_bytes();
    drop(built);
    trim();
    let rss_none = rss_bytes();

    json!({
        "loadavg": load_at_start,
        "ready_s": ready_s,
        "rss_before_mb": rss_before / 1e6,
        "rss_ready_mb": rss_ready / 1e6,
        "rss_ready_per_key": (rss_ready - rss_before) / n,
        "rss_peak_per_key": (rss_peak - rss_before) / n,
        "rss_settled_per_key": (rss_settled - rss_before) / n,
        "rss_trimmed_per_key": (rss_trimmed - rss_before) / n,
        "rss_table_only_per_key": (rss_table_only - rss_none) / n,
        "with_changes_ms": median(change_ms),
        "with_changes_drop_ms": median(drop_ms),
        "hscan_ms": hscan_ms,
        "hscan_server_ms": hscan_server_ms,
        "hscan_round_trips": round_trips,
        "json_bytes_per_key": json_bytes as f64 / n,
        "id_bytes_per_key": id_bytes as f64 / n,
        "parse_ms": parse_ms,
        "btree_ms": btree_ms,
        "store_load_ms": store_load_ms,
        "build_ms": build_ms,
        "table_drop_ms": table_drop_ms,
        "state_drop_ms": state_drop_ms,
        "state_req_per_key": state_req / n,
        "state_heap_per_key": state_heap / n,
        "state_allocs_per_key": state_allocs / n,
        "table_req_per_key": table_req / n,
        "table_heap_per_key": table_heap / n,
        "table_allocs_per_key": table_allocs / n,
    })
}

fn run_cold_child(url: &str) -> Value {
    let exe = std::env::current_exe().expect("path of this benchmark");
    let out = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the cold-load child");
    assert!(out.status.success(), "cold-load child failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_TAG))
        .expect("the child printed its result");
    serde_json::from_str(line).expect("child result JSON")
}

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
