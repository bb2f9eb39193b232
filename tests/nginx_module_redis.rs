//! keygate inside nginx on Redis: two worker processes, each with its own table and follower,
//! beside a sidecar on the same Redis. A key made and revoked through the sidecar reaches every
//! worker (revocation timed), a rate limit is counted across the workers, Redis killed under
//! load fails no decision, and a module that has never loaded answers 503 until Redis comes.

mod common;
mod proxy;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{Harness, http_call, wait_until};
use proxy::nginx_module::{gauge, metrics, settle, start_nginx_module};
use proxy::redis_outage::{allowed_through_redis_restart, daily_limited};
use proxy::{Echo, Proxy};

async fn status(p: &Proxy, key: &str, path: &str) -> u16 {
    let b = format!("Bearer {key}");
    http_call(p.addr, "GET", path, &[("authorization", &b)])
        .await
        .status
}

/// The workers (pids) that logged `status` for a request to a path starting with `prefix`.
fn workers_answering(p: &Proxy, prefix: &str, status: u16) -> BTreeSet<String> {
    let needle = format!("\"GET {prefix}");
    let code = format!(" {status} key_id=");
    p.access_log()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains(&code))
        .filter_map(|l| {
            l.split("worker=")
                .nth(1)?
                .split(' ')
                .next()
                .map(String::from)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_follow_redis_beside_a_sidecar() {
    let mut redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let echo = Echo::start().await;
    let p = start_nginx_module(&h.config_path, echo.addr, 2).await;
    let revision = || h.running().authorizer.replica.revision();

    // A key made through the sidecar works in both workers.
    let key = h.key("live", "acme", None).await;
    settle(&p, revision()).await;
    for i in 0..20 {
        assert_eq!(status(&p, &key.key, &format!("/v1/made/{i}")).await, 200);
    }

    // A rate limit on Redis is the fleet's: 5 a day in all across the two workers.
    let limited = h
        .manager
        .create_key("test", daily_limited(5))
        .await
        .unwrap()
        .key;
    settle(&p, revision()).await;
    let mut allowed = 0;
    for i in 0..14 {
        match status(&p, &limited, &format!("/v1/limited/{i}")).await {
            200 => allowed += 1,
            429 => {}
            s => panic!("request {i}: {s}"),
        }
    }
    assert_eq!(allowed, 5, "the limit is the fleet's, not each worker's");

    // Redis killed and restarted under load: every decision is still made, from the tables.
    let bearer = format!("Bearer {}", key.key);
    allowed_through_redis_restart(&mut redis, &echo, vec![p.addr], bearer, 40).await;
    assert_eq!(
        workers_answering(&p, "/v1/load", 200).len(),
        2,
        "both workers served the load"
    );

    // Revoked through the sidecar (another process): refused by every worker.
    wait_until(
        "the sidecar to reconnect",
        Duration::from_secs(20),
        || async { h.manager.revoke_key("test", &key.id).await.is_ok() },
    )
    .await;
    let revoked = Instant::now();
    let mut n = 0;
    let d = common::Deadline::new(
        "every worker to refuse the revoked key",
        Duration::from_secs(10),
    );
    while workers_answering(&p, "/v1/revoked/", 401).len() < 2 {
        status(&p, &key.key, &format!("/v1/revoked/{n}")).await;
        n += 1;
        d.check();
    }
    println!(
        "revoked key refused by both workers after {:?} ({n} requests)",
        revoked.elapsed()
    );
    for i in 0..20 {
        assert_eq!(status(&p, &key.key, &format!("/v1/after/{i}")).await, 401);
    }
    assert!(!p.logs().contains("exited on signal"), "{}", p.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_module_answers_503_until_it_loads() {
    let mut redis = RedisServer::unstarted();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.yaml");
    std::fs::write(&path, common::redis_config_text(&redis.url(), "", 0.1)).unwrap();
    let echo = Echo::start().await;
    let p = start_nginx_module(&path, echo.addr, 2).await;
    let r = http_call(p.addr, "GET", "/v1/x", &[("authorization", "Bearer x")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.body,
        r#"{"error":"unavailable","message":"The key table is not loaded yet"}"#
    );
    redis.restart();
    // Loaded by every worker: the least current one's table has an age.
    wait_until("every worker to load", Duration::from_secs(20), || async {
        gauge(&metrics(&p).await, "keygate_replication_age_seconds").is_some_and(f64::is_finite)
    })
    .await;
    for _ in 0..10 {
        assert_eq!(http_call(p.addr, "GET", "/v1/x", &[]).await.status, 401);
    }
}
