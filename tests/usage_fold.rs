//! Usage write-back across a fleet on one real redis-server: five sidecars count one key's
//! requests, each writes one stream entry per interval, one of them folds every entry into the
//! counts exactly once, and a read in between sees folded and pending counts together.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Harness, metric, wait_until};

async fn status(h: &Harness, key: &str) -> u16 {
    h.auth(key, "/v1/x").await.status
}

fn total(u: &serde_json::Value) -> u64 {
    u["keys"][0]["total"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn five_sidecars_fold_usage_exactly_once() {
    let redis = RedisServer::start();
    let mut fleet = Vec::new();
    for _ in 0..5 {
        fleet.push(Harness::start_redis(&redis.url(), "", true).await);
    }
    let k = fleet[0].key("live", "acme", None).await;
    for h in &fleet {
        wait_until(
            "every sidecar to hold the key",
            Duration::from_secs(5),
            || async {
                let m = h.http("GET", "/metrics", &[]).await.body;
                metric(&m, "keygate_keys ") == 1.0
            },
        )
        .await;
    }
    // 3 + 5 + 7 + 11 + 13 = 39 allowed requests, each sidecar its own share.
    let shares = [3, 5, 7, 11, 13];
    for (h, n) in fleet.iter().zip(shares) {
        for _ in 0..n {
            assert_eq!(status(h, &k.key).await, 200);
        }
    }
    let want: u64 = shares.iter().sum();
    // Never more than was allowed, at any moment, and all of it once every batch is in.
    let m = &fleet[0].manager;
    wait_until(
        "every count written back",
        Duration::from_secs(10),
        || async {
            let u = common::json(m.usage("acme").await.unwrap());
            let t = total(&u);
            assert!(t <= want, "counted {t} of {want}: {u}");
            // A count without its last use would be a fold seen half.
            assert!(t == 0 || u["keys"][0]["lastUsedAt"].is_string(), "{u}");
            t == want
        },
    )
    .await;
    // Folded: the stream drains, and the per-key hash alone holds the whole count.
    wait_until("every batch folded", Duration::from_secs(10), || async {
        redis.cmd::<i64>(&["XLEN", "{keygate}:usage_in"]) == 0
    })
    .await;
    let day = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400)
        .to_string();
    let hash = format!("{{keygate}}:usage:{}", k.id);
    let folded: Option<u64> = redis.cmd(&["HGET", &hash, &day]);
    assert_eq!(folded, Some(want));
    // The store's usage read alone carries the folded last use, so a report never depends
    // on when the key's record was read.
    let store = keygate_store::Store::open(&fleet[0].settings.store).unwrap();
    let read = store.usage(std::slice::from_ref(&k.id)).await.unwrap();
    assert!(read[&k.id].last_used.is_some(), "{read:?}");
    assert!(store.usage(&[]).await.unwrap().is_empty());
    let holder: Option<String> = redis.cmd(&["GET", "{keygate}:usage_folder"]);
    assert!(holder.is_some(), "one sidecar holds the folder's lease");

    for h in &mut fleet {
        h.stop().await;
    }
}
