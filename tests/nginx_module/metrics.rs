//! The module's metrics are the sidecar's families, counted by every worker.

use crate::common::{Harness, http_call};
use crate::proxy::nginx_module::metrics;
use crate::support::{assert_no_worker_lost, module_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_are_the_sidecars_families() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h, 2).await;
    for _ in 0..3 {
        assert_eq!(http_call(p.addr, "GET", "/v1/x", &[]).await.status, 401);
    }
    let m = metrics(&p).await;
    assert!(
        m.contains(
            r#"keygate_decisions_total{frontend="nginx_module",reason="missing",result="deny"} 3"#
        ),
        "{m}"
    );
    // Every family the module serves is the sidecar's, with its help and type, but one.
    let sidecar = h.http("GET", "/metrics", &[]).await.body;
    let described: Vec<&str> = m.lines().filter(|l| l.starts_with("# ")).collect();
    assert!(described.len() >= 20, "{m}");
    for line in described {
        if line.contains("keygate_workers ") {
            continue;
        }
        assert!(
            sidecar.lines().any(|l| l == line),
            "the sidecar has no `{line}`"
        );
    }
    assert!(m.contains("keygate_workers 2"), "{m}");
    assert_no_worker_lost(&p);
}
