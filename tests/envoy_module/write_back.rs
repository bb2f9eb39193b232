//! Usage and last use are written back to the store by the module, as by the sidecar.

use std::time::Duration;

use crate::common::{self, Harness, wait_until};
use crate::support::{module_on, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_last_use_are_written_back_as_by_the_sidecar() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h).await;
    let key = h.key("live", "acme", None).await;
    wait_until(
        "the module to see the key",
        Duration::from_secs(10),
        || async { status(&p, &key.key, "/v1/x").await == 200 },
    )
    .await;
    for _ in 0..4 {
        assert_eq!(status(&p, &key.key, "/v1/x").await, 200);
    }
    // Five allowed by the module, none by the in-process sidecar: what the store holds came
    // from the module's write-back.
    wait_until(
        "the module's usage in the store",
        Duration::from_secs(20),
        || async {
            let u = common::json(h.manager.usage("acme").await.unwrap());
            u["keys"][0]["total"].as_u64() == Some(5) && u["keys"][0]["lastUsedAt"].is_string()
        },
    )
    .await;
}
