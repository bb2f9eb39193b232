//! What a key costs inside nginx: every worker process holds its own copy of the table, so a
//! key costs its table entry once per worker. Measured as each worker's resident memory with
//! N keys in Redis less the same with one, started afresh each time, and printed per key and
//! worker (the README's "Inside nginx" quotes a run with `KEYGATE_MEMORY_KEYS=1000000` and
//! the release module in `KEYGATE_NGINX_MODULE`). Asserts that every worker holds every key
//! and that a key costs a worker no more than a bound far above what it does cost.

mod common;
mod proxy;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Harness, wait_until};
use proxy::nginx_module::{gauge, metrics, start_nginx_module};
use proxy::{Echo, Proxy};

const WORKERS: u8 = 2;

/// Far above the measured cost (a few hundred bytes): what the assertion guards against is a
/// table held more than once per worker, or not freed after its load.
const BOUND: f64 = 2_000.0;

/// The resident bytes of each of `p`'s workers (the master's children).
fn workers_rss(p: &Proxy) -> Vec<f64> {
    let master = p.pid();
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .expect("the master's children");
    children
        .split_whitespace()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let kb: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            kb * 1024.0
        })
        .collect()
}

/// nginx with the module on `config`, once every worker holds `keys` keys: its workers'
/// resident memory.
async fn measured(config: &std::path::Path, keys: usize) -> Vec<f64> {
    let echo = Echo::start().await;
    let p = start_nginx_module(config, echo.addr, WORKERS).await;
    wait_until(
        "every worker to load the table",
        Duration::from_secs(300),
        || async { gauge(&metrics(&p).await, "keygate_keys") == Some(keys as f64) },
    )
    .await;
    let rss = workers_rss(&p);
    assert_eq!(rss.len(), usize::from(WORKERS), "{rss:?}");
    rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_holds_the_table_at_its_cost_per_key() {
    let n: usize = std::env::var("KEYGATE_MEMORY_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let real = h.key("live", "acme", None).await;
    let rec = h.manager.store.get_key(&real.id).await.unwrap().unwrap();
    let before = measured(&h.config_path, 1).await;
    redis.fill_like(&rec, n);
    let after = measured(&h.config_path, n + 1).await;
    let per_key: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) / n as f64)
        .collect();
    println!(
        "{n} keys, {WORKERS} workers: resident memory per worker {:?} MiB before, {:?} MiB \
         after; per key and worker {per_key:.0?} bytes; per key for all {WORKERS} workers \
         {:.0} bytes",
        before
            .iter()
            .map(|b| (b / 1048576.0).round())
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|a| (a / 1048576.0).round())
            .collect::<Vec<_>>(),
        per_key.iter().sum::<f64>()
    );
    for b in &per_key {
        assert!(*b < BOUND, "a key costs a worker {b:.0} bytes: {per_key:?}");
    }
}
