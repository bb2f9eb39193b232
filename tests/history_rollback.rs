//! A store whose history went back, with the instances that follow it: Redis after a failover
//! that lost writes and then took new ones (the next change has a revision the table already
//! holds), and a store file restored from a backup. Each time the instance takes the store as
//! it is now, instead of ignoring every change until the revisions catch up.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Harness, wait_until};

async fn status(h: &Harness, key: &str) -> u16 {
    h.auth(key, "/v1/x").await.status
}

async fn refused(h: &Harness, key: &str, what: &str) {
    wait_until(what, Duration::from_secs(10), || async {
        status(h, key).await == 401
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_after_redis_lost_writes_is_applied() {
    let redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let kept = h.key("live", "acme", None).await;
    let lost = h.key("live", "acme", None).await;
    wait_until("both keys allowed", Duration::from_secs(10), || async {
        status(&h, &kept.key).await == 200 && status(&h, &lost.key).await == 200
    })
    .await;
    // What a failover that lost the last write leaves: the revision (and the snapshot's)
    // one back, the lost write's key gone.
    let rev: u64 = redis.cmd(&["GET", "{keygate}:rev"]);
    let back = (rev - 1).to_string();
    let _: () = redis.cmd(&["SET", "{keygate}:rev", &back]);
    let _: () = redis.cmd(&["SET", "{keygate}:snap_rev", &back]);
    // A revocation on the new primary takes the revision the instance already holds.
    h.manager.revoke_key("test", &kept.id).await.unwrap();
    let now: u64 = redis.cmd(&["GET", "{keygate}:rev"]);
    assert_eq!(now, rev, "the revocation took the held revision");
    refused(&h, &kept.key, "the revocation applied").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_file_restored_from_a_backup_is_taken_as_it_is() {
    let h = Harness::start().await;
    let old = h.key("live", "acme", None).await;
    let backup = std::fs::read(&h.store_path).unwrap();
    let newer = h.key("live", "acme", None).await;
    h.manager.revoke_key("test", &old.id).await.unwrap();
    refused(&h, &old.key, "the revocation applied").await;
    wait_until("the newer key allowed", Duration::from_secs(10), || async {
        status(&h, &newer.key).await == 200
    })
    .await;
    // Restored: the key made after the backup is gone, and a write after the restore (from
    // the restored revision on) is seen.
    let tmp = h.store_path.with_extension("restore");
    std::fs::write(&tmp, &backup).unwrap();
    std::fs::rename(&tmp, &h.store_path).unwrap();
    refused(&h, &newer.key, "the restored file in force").await;
    assert_eq!(status(&h, &old.key).await, 200, "the backup had it active");
    h.manager.revoke_key("test", &old.id).await.unwrap();
    refused(&h, &old.key, "a revocation after the restore").await;
}
