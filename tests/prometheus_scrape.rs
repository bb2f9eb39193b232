//! A real `prometheus` (Debian's package) scraping a running keygate, with the shipped rules
//! loaded: a PromQL query over its HTTP API returns exactly the decisions just made, every
//! recording and alerting rule evaluates without error, a healthy sidecar raises no alert, and
//! every query of the shipped Grafana dashboard is accepted and answers with data.

mod common;
mod prom;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Deadline, Harness};
use prom::{Prometheus, dashboard};

/// `(frontend, result, reason) → value` of an instant query's vector.
fn by_decision(result: &[serde_json::Value]) -> BTreeMap<(String, String, String), f64> {
    result
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let label = |n: &str| m[n].as_str().unwrap_or("").to_string();
            let value = s["value"][1].as_str().unwrap().parse().unwrap();
            ((label("frontend"), label("result"), label("reason")), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_keygate_evaluates_the_rules_and_answers_the_dashboard() {
    let h = Harness::start().await;
    let key = format!("Bearer {}", h.key("live", "acme", None).await.key);
    let uri = ("x-original-uri", "/v1/x");
    for _ in 0..3 {
        let r = h
            .http("GET", "/auth", &[uri, ("authorization", &key)])
            .await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(h.http("GET", "/ext_authz/v1/x", &[]).await.status, 401);
    }
    let p = Prometheus::start(&[h.http_addr()]).await;

    // The decisions just made, as Prometheus scraped them.
    let expected: BTreeMap<(String, String, String), f64> = [
        (("nginx", "allow", "ok"), 3.0),
        (("envoy_http", "deny", "missing"), 2.0),
    ]
    .into_iter()
    .map(|((f, r, why), v)| ((f.into(), r.into(), why.into()), v))
    .collect();
    let query = r#"sum by (frontend, result, reason) (keygate_decisions_total{job="keygate"}) > 0"#;
    let d = Deadline::new(
        "Prometheus to scrape the decisions",
        Duration::from_secs(30),
    );
    loop {
        let got = by_decision(&p.query(query).await);
        if got == expected {
            break;
        }
        assert!(!d.passed(), "{query} answered {got:?}\n{}", p.log());
        d.tick().await;
    }

    // rate() over the dashboard's 1m interval needs two scrapes; three leave no doubt.
    let d = Deadline::new("three scrapes", Duration::from_secs(30));
    while p
        .query(r#"count_over_time(up{job="keygate"}[1m]) >= 3"#)
        .await
        .is_empty()
    {
        d.tick().await;
    }

    // Every rule has been evaluated, and none failed (health "ok"; "unknown" before the first
    // evaluation, "err" with lastError when the query cannot run).
    let d = Deadline::new("every rule evaluated", Duration::from_secs(30));
    loop {
        let (status, v) = p.api("rules", &[]).await;
        assert_eq!(status, 200, "{v}");
        let all: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        assert_eq!(all.len(), prom::rules().len(), "Prometheus loaded: {v}");
        for r in &all {
            assert_ne!(r["health"], "err", "{r}");
        }
        if all.iter().all(|r| r["health"] == "ok") {
            break;
        }
        d.tick().await;
    }
    // A healthy sidecar raises nothing, not even a pending alert.
    let (_, v) = p.api("alerts", &[]).await;
    assert_eq!(v["data"]["alerts"], serde_json::json!([]), "{v}");
    // The recording rules see the traffic.
    let rate = p.query("instance:keygate_decisions:rate5m").await;
    assert_eq!(rate.len(), 1, "{rate:?}");

    // Every dashboard query, with Grafana's variables as a user who picked "All" gets them.
    let (exprs, variables) = dashboard();
    for (title, expr) in &exprs {
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        let result = p.query(&q).await;
        assert!(!result.is_empty(), "panel `{title}`: no data for {q}");
    }
    let instance = h.http_addr().to_string();
    for metric in &variables {
        let (status, v) = p.api("label/instance/values", &[("match[]", metric)]).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["data"],
            serde_json::json!([instance]),
            "the instance variable"
        );
    }
}
