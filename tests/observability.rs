//! keygate's metrics held to Prometheus's own tools and to the shipped rules and dashboard:
//! `promtool check metrics` on a live sidecar's `/metrics` and on the Envoy module's stats;
//! `promtool check rules` and `promtool test rules` on `deploy/prometheus/keygate-rules.yaml`
//! (each alert fired from synthetic series, each with a runbook section in
//! docs/operations.md); and every metric name the rules and `deploy/grafana/keygate.json` read
//! is one keygate exports. tests/prometheus_scrape.rs runs a real Prometheus against them.

mod common;
mod prom;
mod proxy;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Harness, http_call, wait_until};
use prom::{
    check_metrics, dashboard, exposition_names, promql::metric_names, promtool, repo, rules, yaml,
};
use proxy::{Echo, start_envoy_module};

/// Makes decisions on every sidecar frontend (allowed and refused, a Bearer key and an Argon2
/// key twice, so that a verification and a cache hit are counted), then returns `/metrics`.
async fn exercised_metrics(h: &Harness) -> String {
    let live = format!("Bearer {}", h.key("live", "acme", None).await.key);
    let toon = h.key("toon", "acme", None).await.key;
    let uri = ("x-original-uri", "/v1/x");
    assert_eq!(
        h.http("GET", "/auth", &[uri, ("authorization", &live)])
            .await
            .status,
        200
    );
    assert_eq!(h.http("GET", "/auth", &[uri]).await.status, 401);
    for _ in 0..2 {
        assert_eq!(
            h.http("GET", "/auth", &[uri, ("x-api-key", &toon)])
                .await
                .status,
            200
        );
    }
    assert_eq!(
        h.http("GET", "/ext_authz/v1/x", &[("authorization", &live)])
            .await
            .status,
        200
    );
    let r = h.grpc("GET", "/v1/x", &[]).await;
    assert_ne!(
        r.status.unwrap().code,
        0,
        "a gRPC check without a key is refused"
    );
    h.http("GET", "/metrics", &[]).await.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_sidecars_live_metrics() {
    let h = Harness::start().await;
    let text = exercised_metrics(&h).await;
    for line in [
        r#"keygate_decisions_total{frontend="nginx",reason="ok",result="allow"} 3"#,
        r#"keygate_hash_verifications_total{result="ok"} 1"#,
        "keygate_verify_cache_hits_total 1",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    check_metrics(&text).unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));
    // The check can fail: promtool refuses a counter without `_total` and a broken line.
    assert!(check_metrics("# HELP k_x x\n# TYPE k_x counter\nk_x 1\n").is_err());
    assert!(check_metrics(&text.replace("keygate_keys 2", "keygate_keys{ 2")).is_err());
}

/// The families of a Prometheus exposition whose names start with `prefix`.
fn families(text: &str, prefix: &str) -> String {
    let name = |l: &str| -> String {
        let l = l
            .strip_prefix("# TYPE ")
            .or_else(|| l.strip_prefix("# HELP "))
            .unwrap_or(l);
        l.split(['{', ' ']).next().unwrap_or("").to_string()
    };
    text.lines()
        .filter(|l| name(l).starts_with(prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_envoy_modules_stats() {
    let h = Harness::start().await;
    let echo = Echo::start().await;
    let envoy = start_envoy_module(&h.config_path, echo.addr).await;
    let key = format!("Bearer {}", h.key("live", "acme", None).await.key);
    wait_until(
        "the key to work in Envoy",
        Duration::from_secs(10),
        || async {
            http_call(envoy.addr, "GET", "/v1/x", &[("authorization", &key)])
                .await
                .status
                == 200
        },
    )
    .await;
    assert_eq!(http_call(envoy.addr, "GET", "/v1/x", &[]).await.status, 401);
    // An Argon2 key, so that verification stats exist too.
    let toon = h.key("toon", "acme", None).await.key;
    wait_until(
        "the Argon2 key to work in Envoy",
        Duration::from_secs(10),
        || async {
            http_call(envoy.addr, "GET", "/v1/x", &[("x-api-key", &toon)])
                .await
                .status
                == 200
        },
    )
    .await;
    let admin = envoy.admin.unwrap();
    let stats = || async move {
        let all = http_call(admin, "GET", "/stats/prometheus", &[]).await.body;
        families(&all, "envoy_keygate_")
    };
    // Counts reach Envoy's stats once a second.
    wait_until(
        "the module's counts in Envoy's stats",
        Duration::from_secs(10),
        || async {
            let s = stats().await;
            s.contains(r#"envoy_keygate_decisions{result="deny",reason="missing"} 1"#)
                && s.contains(r#"envoy_keygate_hash_verifications{result="ok"} 1"#)
        },
    )
    .await;
    let text = stats().await;
    let names = exposition_names(&text);
    for family in [
        "envoy_keygate_decisions",
        "envoy_keygate_decision_duration_us",
        "envoy_keygate_keys",
        "envoy_keygate_replication_age_seconds",
        "envoy_keygate_store_connected",
        "envoy_keygate_hash_verifications",
        "envoy_keygate_verify_cache_hits",
    ] {
        assert!(names.contains(family), "no {family} in:\n{text}");
    }
    // promtool must parse it; of its lint findings, only those Envoy's exposition imposes are
    // accepted, each named: Envoy writes no HELP lines; the module's counter names (documented
    // in README) have no `_total`; Envoy histograms hold integers, so latency is in µs.
    let out = promtool(&["check", "metrics"], &text);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(3),
        "promtool could not parse it: {out:?}\n{text}"
    );
    let counters = ["decisions", "hash_verifications", "verify_cache_hits"];
    let findings = String::from_utf8_lossy(&out.stdout).into_owned();
    let unexpected: Vec<&str> = findings
        .lines()
        .filter(|l| {
            let (family, finding) = l.split_once(' ').unwrap_or((l, ""));
            let short = family.trim_start_matches("envoy_keygate_");
            !(finding == "no help text"
                || (finding == r#"counter metrics should have "_total" suffix"#
                    && counters.contains(&short))
                || (finding == "metric names should not contain abbreviated units"
                    && short == "decision_duration_us"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool check metrics: {unexpected:?}\n{text}"
    );
}

fn promtool_ok(args: &[&str]) {
    let out = promtool(args, "");
    assert!(out.status.success(), "promtool {args:?}: {out:?}");
}

#[test]
fn the_rules_pass_promtool_and_every_alert_fires_in_a_unit_test_and_has_a_runbook() {
    let rules_path = prom::rules_file();
    let tests_path = repo().join("tests/prom/keygate-rules.test.yaml");
    promtool_ok(&["check", "rules", rules_path.to_str().unwrap()]);
    promtool_ok(&["test", "rules", tests_path.to_str().unwrap()]);

    let alerts: Vec<serde_json::Value> = rules()
        .into_iter()
        .filter(|r| r.get("alert").is_some())
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    let cases = yaml("tests/prom/keygate-rules.test.yaml");
    let fired: BTreeSet<&str> = cases["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .map(|c| c["alertname"].as_str().unwrap())
        .collect();
    let runbooks = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        assert!(fired.contains(name), "no unit test fires {name}");
        assert!(
            a["labels"]["severity"].is_string(),
            "{name} has no severity"
        );
        assert!(
            a["annotations"]["summary"].is_string(),
            "{name} has no summary"
        );
        let runbook = format!("docs/operations.md#{}", name.to_lowercase());
        assert_eq!(a["annotations"]["runbook_url"], runbook.as_str(), "{name}");
        assert!(
            runbooks.contains(&format!("\n### {name}\n")),
            "no runbook for {name}"
        );
    }

    // The unit tests catch a broken rule: the same cases on rules reading a misspelt metric fail.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&rules_path).unwrap();
    let broken = text.replace(
        "keygate_store_connected == 0",
        "keygate_store_conected == 0",
    );
    assert_ne!(broken, text);
    let rules_copy = dir.path().join("rules.yaml");
    std::fs::write(&rules_copy, broken).unwrap();
    let cases_text = std::fs::read_to_string(&tests_path).unwrap();
    let cases_copy = dir.path().join("cases.yaml");
    let moved = cases_text.replace(
        "../../deploy/prometheus/keygate-rules.yaml",
        rules_copy.to_str().unwrap(),
    );
    std::fs::write(&cases_copy, moved).unwrap();
    let out = promtool(&["test", "rules", cases_copy.to_str().unwrap()], "");
    assert!(
        !out.status.success(),
        "a misspelt metric passed the unit tests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_and_the_dashboard_read_only_metrics_keygate_exports() {
    let h = Harness::start().await;
    let exported = exposition_names(&exercised_metrics(&h).await);
    // `up` is the series Prometheus itself writes for every scrape target.
    let known = |n: &str| exported.contains(n) || n == "up";
    let rules = rules();
    let recorded: BTreeSet<&str> = rules.iter().filter_map(|r| r["record"].as_str()).collect();
    for r in &rules {
        let expr = r["expr"].as_str().unwrap();
        for name in metric_names(expr) {
            assert!(
                known(&name) || recorded.contains(name.as_str()),
                "rule reads {name}: {expr}"
            );
        }
    }
    let (exprs, variables) = dashboard();
    assert!(exprs.len() >= 15, "{exprs:?}");
    let mut read = variables.clone();
    for (title, expr) in &exprs {
        for name in metric_names(expr) {
            assert!(
                known(&name),
                "panel `{title}` reads {name}, which keygate does not export"
            );
            read.insert(name);
        }
    }
    for v in &variables {
        assert!(known(v), "a dashboard variable reads {v}");
    }
    // What the dashboard is for: each of these has a panel.
    for name in [
        "keygate_decisions_total",
        "keygate_decision_duration_seconds_bucket",
        "keygate_keys",
        "keygate_replication_age_seconds",
        "keygate_store_connected",
        "keygate_hash_verifications_total",
        "keygate_verify_cache_hits_total",
        "keygate_usage_flushes_total",
        "keygate_usage_flush_failures_total",
    ] {
        assert!(read.contains(name), "no panel reads {name}");
    }
}
