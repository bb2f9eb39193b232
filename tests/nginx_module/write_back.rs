//! Usage and last use are written back to the store by the module's workers, as by the
//! sidecar.

use std::time::Duration;

use crate::common::{self, Harness, http_call, wait_until};
use crate::support::{module_on, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_last_use_are_written_back_as_by_the_sidecar() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h, 2).await;
    let key = h.key("live", "acme", None).await;
    synced(&h, &p).await;
    let b = format!("Bearer {}", key.key);
    for _ in 0..6 {
        let r = http_call(p.addr, "GET", "/v1/x", &[("authorization", &b)]).await;
        assert_eq!(r.status, 200);
    }
    // Six allowed by the module's workers, none by the in-process sidecar: what the store
    // holds came from the workers' write-back.
    wait_until(
        "the module's usage in the store",
        Duration::from_secs(20),
        || async {
            let u = common::json(h.manager.usage("acme").await.unwrap());
            u["keys"][0]["total"].as_u64() == Some(6) && u["keys"][0]["lastUsedAt"].is_string()
        },
    )
    .await;
}
