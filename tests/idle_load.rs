//! An idle instance's load on Redis is its blocking read of the change log: no heartbeat
//! (it counts no limits), no usage write-back (it allowed nothing) and no bid to fold usage.
//! Counted with Redis's own INFO commandstats over several heartbeat periods.

mod common;

use std::time::Duration;

use common::Harness;
use common::redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_only_reads_the_change_log() {
    let redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    // A write it follows, and then nothing.
    h.key("live", "acme", None).await;
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]);
    // Seven change-log reads of a second each: past a heartbeat period (5 s) and many usage
    // intervals (0.1 s in this config).
    common::wait_until(
        "seven change-log reads",
        Duration::from_secs(30),
        || async { redis.commandstats().get("xread").copied().unwrap_or(0) >= 7 },
    )
    .await;
    let mut stats = redis.commandstats();
    for own in ["info", "config|resetstat"] {
        stats.remove(own);
    }
    let xread = stats.remove("xread").unwrap_or(0);
    assert!(xread >= 7);
    assert!(stats.is_empty(), "an idle instance sent {stats:?}");
}
