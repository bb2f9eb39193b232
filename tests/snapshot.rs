//! The compact snapshot on Redis: a table loaded from it equals one built from the records —
//! after creates, revocations, rotations, updates, change-log trims and a Redis restart — and
//! a store written without one (an older keygate's layout) gets one built by the first
//! instance that loads it, after which loads read the snapshot.

mod common;

use std::time::Duration;

use common::Harness;
use common::redis_server::RedisServer;
use keygate::admin::manage::UpdateKey;
use keygate::core::key::{KeyHash, KeyRecord};
use keygate::core::table::Table;
use keygate::store::Store;

/// Everything a decision reads of every key, one line a key, sorted.
fn dump(t: &Table) -> Vec<String> {
    let mut v: Vec<String> = t
        .iter()
        .map(|e| {
            format!(
                "{} {} {:?} {:?} {} {} {} {:?} {:?} digest={}",
                e.id(),
                e.account(),
                e.scopes().map(|s| &s.joined),
                e.hash(),
                e.scheme(),
                e.revoked(),
                e.version(),
                e.limits()
                    .map(|l| l.iter().map(|l| l.requests).collect::<Vec<_>>()),
                e.credits().map(|c| (c.0.remaining, c.1)),
                e.digest()
                    .is_some_and(|d| t.by_digest(d).is_some_and(|f| f.id() == e.id())),
            )
        })
        .collect();
    v.sort();
    v
}

/// The table from the snapshot (which must be in step) and from the records.
async fn both(h: &Harness) -> (Vec<String>, Vec<String>) {
    let Store::Redis(store) = Store::open(&h.settings.store).unwrap() else {
        panic!("a redis store")
    };
    let schemes = h.settings.policy.schemes.clone();
    let plans = h.settings.policy.plans.clone();
    let (snap, r1) = store
        .load_table(schemes.clone(), plans.clone(), true)
        .await
        .unwrap()
        .expect("a snapshot in step with the records");
    let (recs, r2) = store
        .load_table(schemes, plans, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r1, r2);
    assert_eq!(snap.len(), recs.len());
    (dump(&snap), dump(&recs))
}

fn in_step(redis: &RedisServer) -> bool {
    let rev: Option<String> = redis.cmd(&["GET", "{keygate}:rev"]);
    let snap: Option<String> = redis.cmd(&["GET", "{keygate}:snap_rev"]);
    snap.is_some() && snap == rev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_follows_every_write_and_equals_the_records() {
    let mut redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "  max_changes: 3\n", true).await;
    let m = &h.manager;
    let mut ids = Vec::new();
    for i in 0..12 {
        let scopes: &[&str] = if i % 2 == 0 {
            &["images"]
        } else {
            &["images", "data"]
        };
        let scheme = if i % 5 == 0 { "toon" } else { "live" };
        ids.push(
            h.key(scheme, &format!("acct{}", i % 3), Some(scopes))
                .await
                .id,
        );
    }
    assert!(
        in_step(&redis),
        "a new store keeps its snapshot from the first write"
    );
    m.revoke_key("test", &ids[1]).await.unwrap();
    m.rotate_key("test", &ids[2], Some(60)).await.unwrap();
    let update: UpdateKey = serde_json::from_value(serde_json::json!({
        "scopes": null,
        "rateLimits": [{"name": "burst", "requests": 5, "per": "1s"}],
        "credits": {"remaining": 40},
    }))
    .unwrap();
    m.update_key("test", &ids[3], update).await.unwrap();
    m.set_account("test", "acct0", None, Some("past_due"))
        .await
        .unwrap();
    // Far more writes than the change log keeps (max_changes: 3).
    for id in &ids[4..8] {
        m.revoke_key("test", id).await.unwrap();
    }
    assert!(in_step(&redis));
    let (snap, recs) = both(&h).await;
    assert_eq!(snap, recs);
    assert_eq!(snap.len(), 13, "twelve keys and one rotation: {snap:#?}");

    // A restart of Redis (from its append-only file) keeps the two in step.
    redis.kill();
    redis.restart();
    let (snap2, recs2) = both(&h).await;
    assert_eq!((&snap2, &recs2), (&snap, &recs));
    // And the writes after it keep them so.
    m.revoke_key("test", &ids[9]).await.unwrap();
    let (snap3, recs3) = both(&h).await;
    assert_eq!(snap3, recs3);
    assert_ne!(snap3, snap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_snapshot_gets_one_from_its_first_load() {
    let redis = RedisServer::start();
    // The layout of a keygate before snapshots: records and revision only.
    let first = Harness::start_redis(&redis.url(), "", true).await;
    let key = first.key("live", "acme", None).await;
    let before = first.key("live", "acme", Some(&["images"])).await;
    let filler: KeyRecord = serde_json::from_value(serde_json::json!({
        "id": "x", "prefix": "tk_live_x", "account": "filler", "scheme": "live",
        "scopes": ["data"], "hash": KeyHash::Sha256([0; 32]), "createdAt": 1_700_000_000,
        "version": 1,
    }))
    .unwrap();
    redis.fill_like(&filler, 2_500);
    let _: () = redis.cmd(&["DEL", "{keygate}:snap", "{keygate}:snap_rev"]);
    assert!(!in_step(&redis));
    // Writes while there is no snapshot in step leave it so (they bring no buckets).
    first.manager.revoke_key("test", &before.id).await.unwrap();
    assert!(!in_step(&redis));

    // A new instance loads the records, then builds the snapshot for the next ones.
    let second = Harness::start_redis(&redis.url(), "", true).await;
    common::wait_until("the snapshot built", Duration::from_secs(20), || async {
        in_step(&redis)
    })
    .await;
    let (snap, recs) = both(&second).await;
    assert_eq!(snap, recs);
    assert_eq!(snap.len(), 2_502);
    // Writes keep it in step from now on, and both instances decide alike.
    second.manager.revoke_key("test", &key.id).await.unwrap();
    assert!(in_step(&redis));
    let (snap, recs) = both(&second).await;
    assert_eq!(snap, recs);
    for h in [&first, &second] {
        common::wait_until(
            "the revocation applied",
            Duration::from_secs(10),
            || async {
                let bearer = format!("Bearer {}", key.key);
                let headers = [
                    ("x-original-uri", "/v1/images/1"),
                    ("authorization", &*bearer),
                ];
                h.http("GET", "/auth", &headers).await.status == 401
            },
        )
        .await;
    }
}
