//! Day-2 operations on `keygate serve` as a process: SIGHUP reloads the config (a bad one is
//! refused and the running one stays), SIGTERM drains (not ready first, then exit), and
//! `--log-format json` writes one JSON object per line.

mod common;

use std::time::Duration;

use common::process::Proc;
use common::{http_call, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_valid_config_and_refuses_a_bad_one() {
    let p = Proc::start("", &[]).await;
    let key = p.create_key(&["usage:read"]);
    wait_until("key usable", Duration::from_secs(5), || async {
        p.status(&key, "/v1/account/usage").await == 200
    })
    .await;
    assert_eq!(
        p.status(&key, "/v1/reports").await,
        200,
        "the catch-all takes any valid key"
    );

    // A valid change: /v1/reports now needs reports:read.
    let original = std::fs::read_to_string(&p.config).unwrap();
    let scoped = original.replace(
        "routes:                     # first match wins\n",
        "routes:                     # first match wins\n  - path_prefix: /v1/reports\n    scope: reports:read\n",
    );
    assert_ne!(scoped, original);
    std::fs::write(&p.config, &scoped).unwrap();
    p.signal("HUP");
    wait_until("the new route", Duration::from_secs(5), || async {
        p.status(&key, "/v1/reports").await == 403
    })
    .await;
    assert!(p.log().contains("config reloaded"));
    assert_eq!(
        p.status(&key, "/v1/account/usage").await,
        200,
        "keys survive the reload"
    );

    // An invalid config is refused; the running one stays.
    std::fs::write(&p.config, scoped.replace("hash: sha256", "hash: md5")).unwrap();
    p.signal("HUP");
    wait_until("the refusal logged", Duration::from_secs(5), || async {
        p.log().contains("config reload refused")
    })
    .await;
    assert!(
        p.log().contains("schemes[1].hash"),
        "the refusal names the field"
    );
    assert_eq!(p.status(&key, "/v1/reports").await, 403);
    assert_eq!(p.status(&key, "/v1/account/usage").await, 200);

    // Listener changes need a restart: refused too.
    std::fs::write(
        &p.config,
        scoped.replacen("grpc: 127.0.0.1:0", "grpc: 127.0.0.1:1", 1),
    )
    .unwrap();
    p.signal("HUP");
    wait_until("the second refusal", Duration::from_secs(5), || async {
        p.log().matches("config reload refused").count() == 2
    })
    .await;
    assert_eq!(p.status(&key, "/v1/account/usage").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_goes_unready_first_then_exits() {
    let mut p = Proc::start("\nshutdown:\n  drain_delay_seconds: 2\n", &[]).await;
    let key = p.create_key(&[]);
    wait_until("key usable", Duration::from_secs(5), || async {
        p.status(&key, "/x").await == 200
    })
    .await;
    assert_eq!(http_call(p.http, "GET", "/readyz", &[]).await.status, 200);
    p.signal("TERM");
    wait_until(
        "readyz 503 while draining",
        Duration::from_secs(5),
        || async { http_call(p.http, "GET", "/readyz", &[]).await.status == 503 },
    )
    .await;
    // Still deciding while draining.
    assert_eq!(p.status(&key, "/x").await, 200);
    assert_eq!(http_call(p.http, "GET", "/healthz", &[]).await.status, 200);
    let d = common::Deadline::new("keygate to exit", Duration::from_secs(20));
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        d.tick().await;
    };
    assert!(status.success(), "{status}");
    assert!(p.log().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let p = Proc::start("", &["--log-format", "json"]).await;
    let log = p.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
}
