//! Cold loads from Redis at fleet sizes: a table of N SHA-256 keys read from the per-key JSON
//! records (the baseline, in the same run) and from the compact snapshot, each in a fresh
//! process, with its resident memory settled and at the peak; the time to build the snapshot
//! from the records (the migration of an older store); and a management write's latency at
//! each size.
//!
//!   cargo bench --bench snapshot_load -- [keys...]      (bench/snapshot-load.sh)
//!
//! Starts its own redis-server (no persistence) on a free port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keygate::config::Settings;
use keygate::core::key::{self, KeyHash, KeyRecord};
use keygate::store::state::{AuditEvent, Change};
use keygate::store::{Store, redis::RedisStore};

const CHILD: &str = "--load-child";
const RESULT: &str = "LOAD_RESULT ";

fn status(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

/// The server, its port, and its directory (removed with it).
struct Redis(Child, u16, #[allow(dead_code)] tempfile::TempDir);

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temporary directory");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let r = Redis(child, port, dir);
        let end = Instant::now() + Duration::from_secs(20);
        while r.con().is_err() {
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded by the deadline
        }
        r
    }
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.1)
    }
    fn con(&self) -> redis::RedisResult<redis::Connection> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(c)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn settings(url: &str) -> Settings {
    let file = "  backend: file             # embedded default: one local file\n  path: data/keygate.json\n";
    let text = include_str!("../config/keygate.yaml")
        .replace(file, &format!("  backend: redis\n  url: {url}\n"));
    Settings::from_yaml(&text).expect("bench config")
}

fn record(i: usize) -> KeyRecord {
    let mut r = KeyRecord::new(
        format!("{i:012}"),
        format!("tk_live_{i:012}"),
        format!("acct-{:06}", i / 10),
        "live".into(),
        KeyHash::Sha256(key::sha256(format!("tk_live_{i:012}_secret").as_bytes())),
        1_700_000_000,
    );
    r.name = (i % 10 == 3).then(|| "ci-deploy".to_string());
    r.scopes = i
        .is_multiple_of(20)
        .then(|| vec!["tokens:read".to_string()]);
    r
}

/// The records of an older keygate's store, straight into Redis.
fn fill(redis: &Redis, n: usize) {
    let mut con = redis.con().expect("redis");
    redis::cmd("FLUSHALL")
        .query::<()>(&mut con)
        .expect("FLUSHALL");
    for batch in (0..n).step_by(10_000) {
        let mut pipe = redis::pipe();
        for part in (batch..(batch + 10_000).min(n)).step_by(1_000) {
            let mut hset = redis::cmd("HSET");
            hset.arg("{keygate}:keys");
            for i in part..(part + 1_000).min(n) {
                let r = record(i);
                hset.arg(&r.id)
                    .arg(serde_json::to_string(&r).expect("JSON"));
            }
            pipe.add_command(hset).ignore();
        }
        pipe.query::<()>(&mut con).expect("HSET");
    }
    redis::cmd("SET")
        .arg("{keygate}:rev")
        .arg(1)
        .query::<()>(&mut con)
        .expect("SET rev");
}

fn store(url: &str) -> RedisStore {
    match Store::open(&settings(url).store).expect("store") {
        Store::Redis(s) => *s,
        Store::File(_) => unreachable!("a redis config"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// In a fresh process: one load, its time and memory.
fn child(url: &str, from_snapshot: bool, n: usize) {
    let s = settings(url);
    let rss0 = status("VmRSS:");
    let t = Instant::now();
    let (table, _) = runtime()
        .block_on(store(url).load_table(
            s.policy.schemes.clone(),
            s.policy.plans.clone(),
            from_snapshot,
        ))
        .expect("load")
        .expect("the source asked for");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(table.len(), n);
    assert!(
        table
            .by_digest(&key::sha256(
                format!("tk_live_{:012}_secret", n / 2).as_bytes()
            ))
            .is_some()
    );
    // keygate returns the loader's freed buffers to the OS after a full load: so does this.
    // SAFETY: malloc_trim only releases memory that is already free.
    unsafe {
        libc::malloc_trim(0);
    }
    let (rss, peak) = (status("VmRSS:") - rss0, status("VmHWM:") - rss0);
    println!("{RESULT}{secs} {} {}", rss / n as f64, peak / rss);
}

fn run_child(url: &str, from_snapshot: bool, n: usize) -> (f64, f64, f64) {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args([
            CHILD,
            url,
            if from_snapshot { "snapshot" } else { "records" },
            &n.to_string(),
        ])
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
    let v: Vec<f64> = line
        .split(' ')
        .map(|x| x.parse().expect("number"))
        .collect();
    (v[0], v[1], v[2])
}

/// A hash field and its value, as HSCAN returns them.
type Field = (Vec<u8>, Vec<u8>);

/// The floor of a snapshot load: the same HSCAN loop with the values kept and nothing done
/// with them (seconds).
fn bare_scan(redis: &Redis) -> f64 {
    let mut con = redis.con().expect("redis");
    let t = Instant::now();
    let (mut cursor, mut kept) = (0u64, Vec::new());
    loop {
        let (next, items): (u64, Vec<Field>) = redis::cmd("HSCAN")
            .arg("{keygate}:snap")
            .arg(cursor)
            .arg("COUNT")
            .arg(512)
            .query(&mut con)
            .expect("HSCAN");
        kept.extend(items);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    std::hint::black_box(kept);
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median latency of 50 revocations through the store (ms): read what the rules need, apply
/// them, write records, snapshot buckets and the change entry in one script.
fn management_ms(url: &str, n: usize) -> f64 {
    let rt = runtime();
    let s = store(url);
    let times = (0..50)
        .map(|j| {
            let id = format!("{:012}", j * (n / 50));
            let event = AuditEvent {
                at: 1_800_000_000,
                actor: "bench".into(),
                action: "key.revoked".into(),
                account: String::new(),
                key_id: Some(id.clone()),
                detail: None,
            };
            let t = Instant::now();
            rt.block_on(s.apply(
                Change::RevokeKey {
                    id,
                    at: 1_800_000_000,
                },
                event,
            ))
            .expect("revoke");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD) {
        let n = args[i + 3].parse().expect("size");
        return child(&args[i + 1], args[i + 2] == "snapshot", n);
    }
    let sizes: Vec<usize> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 1_000_000]
    } else {
        sizes
    };
    let redis = Redis::start();
    let url = redis.url();
    let mut management = Vec::new();
    for n in sizes {
        let t = Instant::now();
        fill(&redis, n);
        eprintln!("{n} records written in {:.1} s", t.elapsed().as_secs_f64());
        let records = run_child(&url, false, n);
        let t = Instant::now();
        let built = runtime()
            .block_on(store(&url).build_snapshot())
            .expect("build");
        assert!(built);
        let build_s = t.elapsed().as_secs_f64();
        let runs: Vec<(f64, f64, f64)> = (0..3).map(|_| run_child(&url, true, n)).collect();
        let snap = median(runs.iter().map(|r| r.0).collect());
        let bare = median((0..3).map(|_| bare_scan(&redis)).collect());
        let ms = management_ms(&url, n);
        management.push((n, ms));
        println!(
            "{n} keys: load from records {:.2} s, from the snapshot {snap:.2} s (median of 3: {}; \
             {:.2}× the records' time; a bare HSCAN of the snapshot {bare:.2} s); resident {:.1} B/key after a snapshot load, peak {:.2}× \
             settled (records: {:.1} B/key, peak {:.2}×); snapshot built from the records in \
             {build_s:.1} s; a revocation through the store {ms:.2} ms (median of 50)",
            records.0,
            runs.iter()
                .map(|r| format!("{:.2}", r.0))
                .collect::<Vec<_>>()
                .join(", "),
            snap / records.0,
            median(runs.iter().map(|r| r.1).collect()),
            median(runs.iter().map(|r| r.2).collect()),
            records.1,
            records.2,
        );
    }
    if let [(n0, m0), .., (n1, m1)] = management[..] {
        println!(
            "management latency at {n1} keys: {:.2}× that at {n0}",
            m1 / m0
        );
    }
}
