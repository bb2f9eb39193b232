//! The module as the tests run it: Envoy with the module on an in-process keygate's config,
//! its stats, and one call's status.

use crate::common::{Harness, http_call};
use crate::proxy::{Echo, Proxy, start_envoy_module};

/// Envoy's Prometheus stats.
pub async fn stats(p: &Proxy) -> String {
    http_call(p.admin.unwrap(), "GET", "/stats/prometheus", &[])
        .await
        .body
}

/// A harness (in-process keygate on the file store), an echo upstream and Envoy with the
/// module on the harness's config.
pub async fn module_on(h: &Harness) -> (Proxy, Echo) {
    let echo = Echo::start().await;
    let p = start_envoy_module(&h.config_path, echo.addr).await;
    (p, echo)
}

/// `GET path` with a Bearer key through `p`: the status.
pub async fn status(p: &Proxy, key: &str, path: &str) -> u16 {
    let b = format!("Bearer {key}");
    http_call(p.addr, "GET", path, &[("authorization", &b)])
        .await
        .status
}
