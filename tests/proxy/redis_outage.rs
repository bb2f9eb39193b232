//! What the modules' Redis tests share: a key with a fleet-wide daily limit, and load through
//! a Redis that is killed and restarted meanwhile, every answer of which must be an allow.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keygate::admin::manage::CreateKey;
use keygate::core::limit::{Per, RateLimit, Shared};

use super::Echo;
use crate::common::redis_server::RedisServer;
use crate::common::{http_call, wait_until};

/// A live key of account acme allowed `requests` a day, counted per key.
pub fn daily_limited(requests: u32) -> CreateKey {
    CreateKey {
        account: "acme".into(),
        scheme: Some("live".into()),
        rate_limits: Some(vec![RateLimit {
            name: "daily".into(),
            requests,
            per: Per::parse("1d").unwrap(),
            shared: Shared::Key,
        }]),
        ..Default::default()
    }
}

/// Sends `bearer` through every proxy in `addrs` in turn for four seconds; once `warm`
/// requests reached the upstream, kills Redis, waits for 20 more requests to pass, and
/// restarts it. Every decision meanwhile is made from the table: nothing but 200.
pub async fn allowed_through_redis_restart(
    redis: &mut RedisServer,
    echo: &Echo,
    addrs: Vec<SocketAddr>,
    bearer: String,
    warm: u64,
) {
    let load = tokio::spawn(async move {
        let mut statuses = BTreeMap::new();
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            for &addr in &addrs {
                let s = http_call(addr, "GET", "/v1/load", &[("authorization", &bearer)])
                    .await
                    .status;
                *statuses.entry(s).or_insert(0u32) += 1;
            }
        }
        statuses
    });
    wait_until("load to start", Duration::from_secs(10), || async {
        echo.count() > warm
    })
    .await;
    redis.kill();
    let before = echo.count();
    wait_until(
        "requests while Redis is down",
        Duration::from_secs(10),
        || async { echo.count() > before + 20 },
    )
    .await;
    redis.restart();
    let statuses = load.await.unwrap();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "decisions failed while Redis was down: {statuses:?}"
    );
}
