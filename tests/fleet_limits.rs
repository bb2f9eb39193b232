//! Rate limits across a fleet: three sidecars on one real redis-server count one key's limit
//! together (admitted per window at most the limit, and at least 0.95 of it when demand
//! exceeds it); with Redis killed, each keeps deciding by its share, with no error answers.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::redis_server::RedisServer;
use common::{Deadline, Harness, wait_until};
use keygate::admin::manage::CreateKey;
use keygate::core::limit::{Per, RateLimit, Shared};

fn secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn limited_key(h: &Harness, requests: u32, per: &str) -> String {
    let create = CreateKey {
        account: "fleet".into(),
        scheme: Some("live".into()),
        rate_limits: Some(vec![RateLimit {
            name: "fleet".into(),
            requests,
            per: Per::parse(per).unwrap(),
            shared: Shared::Key,
        }]),
        ..Default::default()
    };
    let k = h.manager.create_key("test", create).await.unwrap();
    format!("Bearer {}", k.key)
}

async fn fleet(redis: &RedisServer, n: usize) -> Vec<Arc<Harness>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Arc::new(Harness::start_redis(&redis.url(), "", true).await));
    }
    v
}

/// `/auth` status: 200, or 429 (which /auth gives nginx as 403 with X-Keygate-Status).
async fn status(h: &Harness, bearer: &str) -> u16 {
    let r = h
        .http(
            "GET",
            "/auth",
            &[("authorization", bearer), ("x-original-uri", "/v1/x")],
        )
        .await;
    match (r.status, r.header("x-keygate-status")) {
        (403, Some("429")) => 429,
        (s, _) => s,
    }
}

async fn wait_known(fleet: &[Arc<Harness>], bearer: &str) {
    for h in fleet {
        wait_until(
            "the key on every sidecar",
            Duration::from_secs(5),
            || async {
                h.http(
                    "GET",
                    "/auth",
                    &[("authorization", bearer), ("x-original-uri", "/%252e")],
                )
                .await
                .header("x-keygate-status")
                    == Some("400")
            },
        )
        .await;
    }
}

/// Requests until `until`: (sent, answered, status) of each.
async fn hammer(h: Arc<Harness>, bearer: String, until: f64) -> Vec<(f64, f64, u16)> {
    let mut out = Vec::new();
    while secs() < until {
        let sent = secs();
        let s = status(&h, &bearer).await;
        out.push((sent, secs(), s));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_sidecars_admit_one_limit_together() {
    const LIMIT: u32 = 60;
    const PER: f64 = 2.0;
    let redis = RedisServer::start();
    let fleet = fleet(&redis, 3).await;
    let bearer = limited_key(&fleet[0], LIMIT, "2s").await;
    wait_known(&fleet, &bearer).await;
    let until = secs() + 4.0 * PER;
    let mut set = tokio::task::JoinSet::new();
    for h in &fleet {
        for _ in 0..2 {
            set.spawn(hammer(h.clone(), bearer.clone(), until));
        }
    }
    let answers: Vec<(f64, f64, u16)> = set.join_all().await.into_iter().flatten().collect();
    assert!(
        answers.iter().all(|a| matches!(a.2, 200 | 429)),
        "only allows and 429s"
    );
    let window = |t: f64| (t / PER).floor() as i64;
    let first = window(answers.iter().map(|a| a.0).fold(f64::MAX, f64::min));
    let last = window(until);
    let mut checked = 0;
    for w in first + 1..last {
        let allowed = |sure: bool| {
            answers
                .iter()
                .filter(|a| a.2 == 200)
                .filter(|a| {
                    let (s, r) = (window(a.0), window(a.1));
                    if sure {
                        s == w && r == w
                    } else {
                        s == w || r == w
                    }
                })
                .count()
        };
        let (sure, maybe) = (allowed(true), allowed(false));
        assert!(
            sure <= LIMIT as usize,
            "window {w}: {sure} admitted of {LIMIT}"
        );
        let refused = answers
            .iter()
            .filter(|a| a.2 == 429 && window(a.0) == w)
            .count();
        assert!(refused > 0, "window {w}: demand did not exceed the limit");
        assert!(
            maybe as f64 >= 0.95 * f64::from(LIMIT),
            "window {w}: only {maybe} admitted of {LIMIT}"
        );
        checked += 1;
    }
    assert!(checked >= 2, "too few whole windows");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_killed_each_sidecar_decides_by_its_share() {
    let mut redis = RedisServer::start();
    let fleet = fleet(&redis, 2).await;
    let bearer = limited_key(&fleet[0], 10, "1s").await;
    wait_known(&fleet, &bearer).await;
    for h in &fleet {
        assert_eq!(status(h, &bearer).await, 200);
    }
    redis.kill();
    // Every answer is a decision (an allow or a 429), never an error, on both sidecars, and
    // both keep allowing in new windows.
    let deadline = Deadline::new(
        "allows in two windows after the kill",
        Duration::from_secs(20),
    );
    let mut allowed_windows = std::collections::BTreeSet::new();
    while allowed_windows.len() < 3 {
        for (i, h) in fleet.iter().enumerate() {
            let s = status(h, &bearer).await;
            assert!(matches!(s, 200 | 429), "sidecar {i}: {s}");
            if s == 200 {
                allowed_windows.insert((secs() as i64, i));
            }
        }
        let per_sidecar = |i| allowed_windows.iter().filter(|(_, j)| *j == i).count();
        if per_sidecar(0) >= 2 && per_sidecar(1) >= 2 {
            break;
        }
        deadline.tick().await;
    }
    redis.restart();
    // Back on Redis: the fleet-wide counter of the window is written again.
    let client = redis.client();
    wait_until(
        "leases from Redis again",
        Duration::from_secs(20),
        || async {
            let _ = status(&fleet[0], &bearer).await;
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("{keygate}:rl:*")
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            !keys.is_empty()
        },
    )
    .await;
}
