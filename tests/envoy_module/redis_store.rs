//! Redis beside a sidecar: two Envoys and a sidecar share one Redis (create, limit and revoke
//! across them, Redis killed under load), and a cold start without Redis.

use std::time::{Duration, Instant};

use crate::common::redis_server::RedisServer;
use crate::common::{self, Harness, http_call, wait_until};
use crate::proxy::redis_outage::{allowed_through_redis_restart, daily_limited};
use crate::proxy::{Echo, start_envoy_module};
use crate::support::status;

/// A key made through the admin API: its id and the key itself.
struct Created {
    id: String,
    key: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_envoys_and_a_sidecar_share_one_redis() {
    let mut redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let echo = Echo::start().await;
    let a = start_envoy_module(&h.config_path, echo.addr).await;
    let b = start_envoy_module(&h.config_path, echo.addr).await;

    // A key made through the sidecar's admin API works in both Envoys.
    let made = Instant::now();
    let r = common::http_call_body(
        h.running().admin.unwrap(),
        "POST",
        "/api/keys",
        &[
            ("authorization", &format!("Bearer {}", common::ADMIN_TOKEN)),
            ("content-type", "application/json"),
        ],
        bytes::Bytes::from_static(br#"{"account":"acme","scheme":"live"}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    let key = Created {
        id: v["id"].as_str().unwrap().to_string(),
        key: v["key"].as_str().unwrap().to_string(),
    };
    for p in [&a, &b] {
        wait_until(
            "the key to work in an Envoy",
            Duration::from_secs(10),
            || {
                let key = &key.key;
                async move { status(p, key, "/v1/x").await == 200 }
            },
        )
        .await;
    }
    println!(
        "created key allowed by both Envoys after {:?}",
        made.elapsed()
    );

    // A rate limit counted across both Envoys: 5 a day in all, then 429 in each.
    let limited = h
        .manager
        .create_key("test", daily_limited(5))
        .await
        .unwrap()
        .key;
    for p in [&a, &b] {
        wait_until(
            "the limited key in an Envoy",
            Duration::from_secs(10),
            || {
                let limited = &limited;
                async move { status(p, limited, "/v1/%252e").await == 400 }
            },
        )
        .await;
    }
    let mut allowed = 0;
    for i in 0..12 {
        let p = if i % 2 == 0 { &a } else { &b };
        match status(p, &limited, "/v1/limited").await {
            200 => allowed += 1,
            429 => {}
            s => panic!("request {i}: {s}"),
        }
    }
    assert_eq!(allowed, 5, "the limit is the fleet's, not each Envoy's");

    // Redis killed and restarted under load: every decision is still made, from the table.
    let bearer = format!("Bearer {}", key.key);
    allowed_through_redis_restart(&mut redis, &echo, vec![a.addr, b.addr], bearer, 10).await;

    // After the restart, a revocation is refused by both.
    wait_until(
        "the sidecar to reconnect",
        Duration::from_secs(20),
        || async { h.manager.revoke_key("test", &key.id).await.is_ok() },
    )
    .await;
    let revoked = Instant::now();
    for p in [&a, &b] {
        wait_until(
            "the revoked key to be refused",
            Duration::from_secs(10),
            || {
                let key = &key.key;
                async move { status(p, key, "/v1/x").await == 401 }
            },
        )
        .await;
    }
    println!(
        "revoked key refused by both Envoys after {:?}",
        revoked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_module_answers_503_until_it_loads() {
    let mut redis = RedisServer::unstarted();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.yaml");
    std::fs::write(&path, common::redis_config_text(&redis.url(), "", 0.1)).unwrap();
    let echo = Echo::start().await;
    let p = start_envoy_module(&path, echo.addr).await;
    let r = http_call(p.addr, "GET", "/v1/x", &[("authorization", "Bearer x")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        r#"{"error":"unavailable","message":"The key table is not loaded yet"}"#
    );
    redis.restart();
    wait_until("the table to load", Duration::from_secs(20), || async {
        http_call(p.addr, "GET", "/v1/x", &[]).await.status == 401
    })
    .await;
}
