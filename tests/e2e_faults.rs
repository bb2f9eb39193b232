//! Faults under load through the real Envoy (shipped gRPC config), the load from `wrk`
//! (Debian's package): Redis killed and restarted while wrk sends a valid key gives zero
//! non-200 answers and no socket error; keygate stopped behind Envoy fails closed (503, never
//! anything else) and traffic resumes when it is back.

mod common;
mod proxy;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Harness, config_text, http_call, metric, wait_until};
use proxy::{Echo, EnvoyMode, start_envoy};

/// Tallies every answer by status across wrk's threads and prints the tally with wrk's own
/// error counts when wrk stops.
const TALLY_LUA: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("socket_errors %d\n", e.connect + e.read + e.write + e.timeout))
  local total = {}
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get("counts")) do total[s] = (total[s] or 0) + n end
  end
  for s, n in pairs(total) do io.write(string.format("status %d %d\n", s, n)) end
end
"#;

/// `wrk` sending `GET /v1/x` with a key through `addr` until `finish` interrupts it (SIGINT:
/// wrk stops and reports). Progress is read from the upstream's count, not from wrk.
struct Wrk {
    child: Child,
    _dir: tempfile::TempDir,
}

/// What wrk saw: answers by status, and connect/read/write/timeout errors.
struct Tally {
    statuses: BTreeMap<u16, u64>,
    socket_errors: u64,
    report: String,
}

impl Wrk {
    fn start(addr: std::net::SocketAddr, key: &str, connections: u32) -> Wrk {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tally.lua");
        std::fs::write(&script, TALLY_LUA).unwrap();
        let child = Command::new("wrk")
            .args([
                "-t1",
                &format!("-c{connections}"),
                "-d600s",
                "--timeout",
                "10s",
            ])
            .arg("-s")
            .arg(&script)
            .args(["-H", &format!("authorization: Bearer {key}")])
            .arg(format!("http://{addr}/v1/x"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wrk (Debian's package; scripts/test.sh installs it)");
        Wrk { child, _dir: dir }
    }

    /// Waits until the upstream has answered `n` more requests.
    async fn advance(echo: &Echo, n: u64, what: &str) {
        let target = echo.count() + n;
        wait_until(what, Duration::from_secs(30), || async {
            echo.count() >= target
        })
        .await;
    }

    async fn finish(mut self) -> Tally {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let d = common::Deadline::new("wrk to stop on SIGINT", Duration::from_secs(30));
        while self.child.try_wait().unwrap().is_none() {
            d.tick().await;
        }
        let out = self.child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let mut tally = Tally {
            statuses: BTreeMap::new(),
            socket_errors: u64::MAX,
            report: report.clone(),
        };
        for line in report.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f[..] {
                ["socket_errors", n] => tally.socket_errors = n.parse().unwrap(),
                ["status", s, n] => {
                    tally
                        .statuses
                        .insert(s.parse().unwrap(), n.parse().unwrap());
                }
                _ => {}
            }
        }
        assert_ne!(
            tally.socket_errors,
            u64::MAX,
            "no tally from wrk:\n{report}"
        );
        eprintln!("wrk:\n{report}");
        tally
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_under_load_through_envoy() {
    let mut redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let k = h.key("live", "acme", None).await;
    let echo = Echo::start().await;
    let envoy = start_envoy(EnvoyMode::Grpc, h.running().grpc.unwrap(), echo.addr).await;

    let wrk = Wrk::start(envoy.addr, &k.key, 8);
    Wrk::advance(&echo, 200, "load before the kill").await;
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
    Wrk::advance(&echo, 200, "load while Redis is down").await;
    redis.restart();
    wait_until("keygate to reconnect", Duration::from_secs(15), || async {
        connected().await == 1.0
    })
    .await;
    Wrk::advance(&echo, 200, "load after Redis is back").await;
    let tally = wrk.finish().await;
    let ok = tally.statuses.get(&200).copied().unwrap_or(0);
    assert!(
        tally.statuses.len() == 1 && ok >= 600 && tally.socket_errors == 0,
        "only 200s, no socket error:\n{}",
        tally.report
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keygate_restarted_behind_envoy_fails_closed_then_resumes() {
    // keygate on fixed ports so Envoy finds the restarted one where it left the first.
    let dir = tempfile::tempdir().unwrap();
    let (g, p, a) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let text = config_text(&dir.path().join("keygate.json"))
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{g}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{p}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{a}"), 1);
    let mut h = Harness::start_with(dir, text.clone()).await;
    let k = h.key("live", "acme", None).await;
    let echo = Echo::start().await;
    let envoy = start_envoy(EnvoyMode::Grpc, h.running().grpc.unwrap(), echo.addr).await;
    let b = format!("Bearer {}", k.key);

    let wrk = Wrk::start(envoy.addr, &k.key, 4);
    Wrk::advance(&echo, 100, "load before the stop").await;

    h.stop().await;
    for _ in 0..50 {
        let r = http_call(envoy.addr, "GET", "/v1/x", &[("authorization", &b)]).await;
        assert_eq!(
            r.status, 503,
            "keygate is down: Envoy must fail closed ({})",
            r.body
        );
    }

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
    Wrk::advance(&echo, 100, "load after the restart").await;
    let tally = wrk.finish().await;
    assert!(
        tally.statuses.keys().all(|s| [200, 503].contains(s)) && tally.statuses[&200] >= 200,
        "200 while keygate is up, 503 while it is down, nothing else:\n{}",
        tally.report
    );
    again.shutdown().await;
}
