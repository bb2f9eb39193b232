//! A key table load that Redis interrupts resumes where it stopped: the connection of a
//! sidecar loading 200,000 records is killed half-way, and the load goes on from its cursor on
//! a new connection (HSCAN calls of one load, not one and a half) to the whole table; one cut
//! off by a restart of Redis starts over instead.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Deadline, Harness, metric};
use keygate::admin::manage::Created;

const FILLER: usize = 200_000;

fn hscans(redis: &RedisServer) -> u64 {
    redis.commandstats().get("hscan").copied().unwrap_or(0)
}

async fn keys_loaded(h: &Harness) -> f64 {
    metric(&h.http("GET", "/metrics", &[]).await.body, "keygate_keys ")
}

/// A real key and `FILLER` records like it in a fresh Redis, and how many HSCAN batches an
/// uninterrupted load of them takes.
async fn filled(redis: &RedisServer) -> (Created, u64) {
    let a = Harness::start_redis(&redis.url(), "", true).await;
    let real = a.key("live", "acme", None).await;
    let rec = a.manager.store.get_key(&real.id).await.unwrap().unwrap();
    drop(a);
    redis.fill_like(&rec, FILLER);
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]);
    let whole = Harness::start_redis(&redis.url(), "", true).await;
    let full = hscans(redis);
    assert!(
        full >= 10,
        "a load of {FILLER} records takes many batches: {full}"
    );
    assert_eq!(keys_loaded(&whole).await, (FILLER + 1) as f64);
    (real, full)
}

/// A sidecar whose load is half-way through its `full` batches, or `None` if it ran to its
/// end before it could be caught there.
async fn half_loaded(redis: &RedisServer, full: u64) -> Option<Harness> {
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]);
    let b = Harness::start_redis(&redis.url(), "", false).await;
    let half = Deadline::new("the load half-way", Duration::from_secs(30));
    while hscans(redis) < full / 2 {
        half.check();
        std::thread::yield_now();
    }
    (hscans(redis) < full).then_some(b)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_load_resumes_from_its_cursor() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let redis = RedisServer::start();
    let (_, full) = filled(&redis).await;

    // Another, interrupted half-way; tried again if it ran to its end before the kill.
    let mut resumed = false;
    for _ in 0..3 {
        let Some(b) = half_loaded(&redis, full).await else {
            continue;
        };
        let _: () = redis.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        b.wait_ready().await;
        assert_eq!(
            keys_loaded(&b).await,
            (FILLER + 1) as f64,
            "the whole table"
        );
        let calls = hscans(&redis);
        assert!(
            calls <= full + 2,
            "{calls} HSCAN calls where one load takes {full}: the load started over"
        );
        resumed = true;
        break;
    }
    assert!(resumed, "every load ended before it could be interrupted");
}

/// A load cut off by a restart of Redis starts over on the restarted server: its cursor walked
/// the old process's hash table (each process seeds its hashes afresh), so going on from it
/// would skip some records and repeat others.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_cut_off_by_a_redis_restart_starts_over() {
    let mut redis = RedisServer::start();
    let (real, full) = filled(&redis).await;

    let mut restarted = false;
    for _ in 0..3 {
        let Some(b) = half_loaded(&redis, full).await else {
            continue;
        };
        redis.kill();
        redis.restart();
        b.wait_ready().await;
        assert_eq!(
            keys_loaded(&b).await,
            (FILLER + 1) as f64,
            "the whole table, each record once"
        );
        let r = b.auth(&real.key, "/v1/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        restarted = true;
        break;
    }
    assert!(
        restarted,
        "every load ended before Redis could be restarted"
    );
}
