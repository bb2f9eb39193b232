//! Faults under load through the real Envoy (shipped gRPC config): Redis killed and restarted
//! while a valid key is used without pause gives zero non-200 answers; keygate stopped behind
//! Envoy fails closed (503, never 200) and traffic resumes when it is back.

mod common;
mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Harness, config_text, http_call, wait_until};
use proxy::{Echo, EnvoyMode, start_envoy};

/// Requests sent by `workers` loops until `stop`, counting answers by status.
struct Load {
    ok: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(u16, String)>>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, key: &str, workers: usize) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|_| {
                let (ok, stop) = (ok.clone(), stop.clone());
                let b = format!("Bearer {key}");
                tokio::spawn(async move {
                    let mut bad = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = http_call(addr, "GET", "/v1/x", &[("authorization", &b)]).await;
                        if r.status == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            bad.push((r.status, r.body));
                        }
                    }
                    bad
                })
            })
            .collect();
        Load { ok, stop, tasks }
    }

    /// Waits until `n` more answers of 200 have arrived.
    async fn advance(&self, n: u64, what: &str) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        wait_until(what, Duration::from_secs(30), || async {
            self.ok.load(Ordering::Relaxed) >= target
        })
        .await;
    }

    async fn finish(self) -> (u64, Vec<(u16, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut bad = Vec::new();
        for t in self.tasks {
            bad.extend(t.await.unwrap());
        }
        (self.ok.load(Ordering::Relaxed), bad)
    }
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_under_load_through_envoy() {
    let mut redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let k = h.key("live", "acme", None).await;
    let echo = Echo::start().await;
    let envoy = start_envoy(EnvoyMode::Grpc, h.running().grpc.unwrap(), echo.addr).await;

    let load = Load::start(envoy.addr, &k.key, 4);
    load.advance(200, "load before the kill").await;
    redis.kill();
    let connected = || async {
        metric(
            &http_call(h.http_addr(), "GET", "/metrics", &[]).await.body,
            "keygate_store_connected ",
        )
    };
    wait_until("keygate to notice", Duration::from_secs(10), || async {
        connected().await == 0.0
    })
    .await;
    load.advance(200, "load while Redis is down").await;
    redis.restart();
    wait_until("keygate to reconnect", Duration::from_secs(15), || async {
        connected().await == 1.0
    })
    .await;
    load.advance(200, "load after Redis is back").await;
    let (ok, bad) = load.finish().await;
    assert!(
        bad.is_empty(),
        "{} non-200 answers of {}: {:?}",
        bad.len(),
        ok + bad.len() as u64,
        &bad[..bad.len().min(3)]
    );
    assert!(ok >= 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn keygate_restarted_behind_envoy_fails_closed_then_resumes() {
    // keygate on fixed ports so Envoy finds the restarted one where it left the first.
    let dir = tempfile::tempdir().unwrap();
    let (g, p, a) = (proxy::free_port(), proxy::free_port(), proxy::free_port());
    let text = config_text(&dir.path().join("keygate.json"))
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{g}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{p}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{a}"), 1);
    let mut h = Harness::start_with(dir, text.clone()).await;
    let k = h.key("live", "acme", None).await;
    let echo = Echo::start().await;
    let envoy = start_envoy(EnvoyMode::Grpc, h.running().grpc.unwrap(), echo.addr).await;
    let b = format!("Bearer {}", k.key);

    let load = Load::start(envoy.addr, &k.key, 2);
    load.advance(100, "load before the stop").await;
    let (_, bad) = load.finish().await;
    assert!(bad.is_empty(), "{bad:?}");

    h.stop().await;
    let seen_before = echo.seen().len();
    for _ in 0..50 {
        let r = http_call(envoy.addr, "GET", "/v1/x", &[("authorization", &b)]).await;
        assert_eq!(
            r.status, 503,
            "keygate is down: Envoy must fail closed ({})",
            r.body
        );
    }
    assert_eq!(
        echo.seen().len(),
        seen_before,
        "nothing reached the upstream while keygate was down"
    );

    // The same config (same ports, same file store) again.
    let settings = keygate::config::Settings::from_yaml(&text).unwrap();
    let again = keygate::server::start(settings, None).await.unwrap();
    wait_until("traffic to resume", Duration::from_secs(30), || async {
        http_call(envoy.addr, "GET", "/v1/x", &[("authorization", &b)])
            .await
            .status
            == 200
    })
    .await;
    let load = Load::start(envoy.addr, &k.key, 2);
    load.advance(100, "load after the restart").await;
    let (_, bad) = load.finish().await;
    assert!(bad.is_empty(), "{bad:?}");
    again.shutdown().await;
}
