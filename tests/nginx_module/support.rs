//! The module as the tests run it: nginx with the module on an in-process keygate's config,
//! waited for until every worker has a change, and checked for lost workers.

use crate::common::Harness;
use crate::proxy::nginx_module::{settle, start_nginx_module};
use crate::proxy::{Echo, Proxy};

/// keygate in-process on a file store, an echo upstream and nginx with the module on
/// `workers` workers following the same store.
pub async fn module_on(h: &Harness, workers: u8) -> (Proxy, Echo) {
    let echo = Echo::start().await;
    let p = start_nginx_module(&h.config_path, echo.addr, workers).await;
    (p, echo)
}

pub async fn synced(h: &Harness, p: &Proxy) {
    settle(p, h.running().authorizer.replica.revision()).await;
}

/// No worker died: nginx's master logs every worker it loses.
pub fn assert_no_worker_lost(p: &Proxy) {
    let logs = p.logs();
    assert!(
        !logs.contains("exited on signal") && !logs.contains("panic in"),
        "a worker crashed or panicked:\n{logs}"
    );
}
