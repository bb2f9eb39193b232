//! Management calls on Redis do work that does not depend on the table's size: the same calls
//! against a table of 200 keys and of 20,000 send Redis the same commands, the same number of
//! times, and none of them reads the whole table (no HSCAN, HKEYS, HVALS, HGETALL of the key
//! hash, SCAN or KEYS). Counted with Redis's own INFO commandstats.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use common::redis_server::RedisServer;
use keygate::admin::manage::{CreateKey, ImportKey, UpdateKey};
use keygate::core::key::{self, KeyHash, KeyRecord};

/// Writes `n` SHA-256 key records of 100 filler accounts straight into Redis, with their
/// account sets, digest index and snapshot, as keygate stores them.
fn fill(redis: &RedisServer, n: usize) {
    let mut con = redis.client().get_connection().unwrap();
    let mut pipe = redis::pipe();
    let mut recs = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("f{i:011}");
        let digest = key::sha256(id.as_bytes());
        let rec = KeyRecord::new(
            id.clone(),
            format!("tk_live_{id}"),
            format!("filler-{}", i % 100),
            "live".into(),
            KeyHash::Sha256(digest),
            1_700_000_000,
        );
        pipe.hset("{keygate}:keys", &id, serde_json::to_string(&rec).unwrap())
            .ignore()
            .sadd(format!("{{keygate}}:acct:{}", rec.account), &id)
            .ignore()
            .hset("{keygate}:digests", key::to_hex(&digest), &id)
            .ignore();
        recs.push(rec);
    }
    pipe.set("{keygate}:rev", 1).ignore();
    pipe.query::<()>(&mut con).unwrap();
    redis.put_snapshot(&recs);
}

/// The management calls of one account, on a table of `n` other keys: the commands they sent.
async fn calls_on_table_of(n: usize) -> BTreeMap<String, u64> {
    let redis = RedisServer::start();
    fill(&redis, n);
    // Usage written back (and folded) once an hour: that loop's commands stay out of the count
    // (and an instance that has written no usage does not ask to fold).
    let text = common::redis_config_text(&redis.url(), "", 3600.0);
    let h = Harness::start_with(tempfile::tempdir().unwrap(), text).await;
    h.wait_ready().await;
    let m = &h.manager;
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]);
    m.set_account("test", "acme", Some(Some("pro".into())), None)
        .await
        .unwrap();
    let create = CreateKey {
        account: "acme".into(),
        scheme: Some("live".into()),
        ..Default::default()
    };
    let k = m.create_key("test", create).await.unwrap();
    m.get_account("acme").await.unwrap();
    m.list_keys(Some("acme")).await.unwrap();
    let import = ImportKey {
        account: "acme".into(),
        scheme: "live".into(),
        sha256: key::to_hex(&key::sha256(b"tk_live_imported_0123456789abcdef")),
        ..Default::default()
    };
    m.import_key("test", import).await.unwrap();
    let update = UpdateKey {
        name: Some(Some("renamed".into())),
        ..Default::default()
    };
    m.update_key("test", &k.id, update).await.unwrap();
    let rotated = m.rotate_key("test", &k.id, None).await.unwrap();
    m.revoke_key("test", &rotated.id).await.unwrap();
    m.usage("acme").await.unwrap();
    let mut stats = redis.commandstats();
    // What the sidecar does by itself meanwhile (following the change log, heartbeats, the
    // stats call itself) depends on time, not on the calls.
    for background in [
        "xread",
        "ping",
        "info",
        "config|resetstat",
        "zadd",
        "zremrangebyscore",
        "zcard",
        "hello",
        "client|setinfo",
        "select",
    ] {
        stats.remove(background);
    }
    stats
}

#[tokio::test(flavor = "multi_thread")]
async fn management_calls_do_not_grow_with_the_table() {
    let small = calls_on_table_of(200).await;
    let large = calls_on_table_of(20_000).await;
    for whole in ["hscan", "hkeys", "hvals", "scan", "keys", "hlen", "sscan"] {
        assert!(!large.contains_key(whole), "{whole} was sent: {large:?}");
    }
    assert_eq!(
        small, large,
        "the same commands, as many times, at 200 and 20,000 keys"
    );
}
