//! The Redis backend against real `redis-server` processes on free ports: sidecars sharing a
//! table, Redis killed and restarted, a trimmed change log, a cold start without Redis, and
//! usage write-back.

mod common;

use std::time::Duration;

use common::redis_server::{RedisServer, Sentinel};
use common::{Harness, metric, wait_until};

async fn status(h: &Harness, key: &str) -> u16 {
    h.auth(key, "/v1/x").await.status
}

async fn wait_status(h: &Harness, key: &str, want: u16) {
    h.wait_auth(key, "/v1/x", want, Duration::from_secs(5))
        .await;
}

async fn metrics(h: &Harness) -> String {
    h.http("GET", "/metrics", &[]).await.body
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_share_one_table() {
    let redis = RedisServer::start();
    let a = Harness::start_redis(&redis.url(), "", true).await;
    let b = Harness::start_redis(&redis.url(), "", true).await;

    // Created through A: works on A at once (read your own writes), on B within a second.
    let k1 = a.key("live", "acme", None).await;
    assert_eq!(status(&a, &k1.key).await, 200);
    wait_status(&b, &k1.key, 200).await;
    let k2 = b.key("toon", "acme", None).await;
    wait_status(&a, &k2.key, 200).await;

    // Revoked through A: refused by B.
    a.manager.revoke_key("test", &k1.id).await.unwrap();
    assert_eq!(status(&a, &k1.key).await, 401);
    wait_status(&b, &k1.key, 401).await;

    // Account changes reach every sidecar.
    b.manager
        .set_account("test", "acme", Some(Some("free".into())), None)
        .await
        .unwrap();
    wait_status(&a, &k2.key, 403).await;
    b.manager
        .set_account("test", "acme", Some(Some("pro".into())), None)
        .await
        .unwrap();
    wait_status(&a, &k2.key, 200).await;

    // A sidecar started later sees the whole table.
    let c = Harness::start_redis(&redis.url(), "", true).await;
    assert_eq!(status(&c, &k2.key).await, 200);
    assert_eq!(status(&c, &k1.key).await, 401);
    assert_eq!(metric(&metrics(&c).await, "keygate_keys "), 2.0);

    // The plan limit holds across sidecars.
    a.manager
        .set_account("test", "small", Some(Some("starter".into())), None)
        .await
        .unwrap();
    for i in 0..4 {
        let h = if i % 2 == 0 { &a } else { &b };
        h.key("live", "small", None).await;
    }
    let fifth = c
        .manager
        .create_key(
            "test",
            keygate::admin::manage::CreateKey {
                account: "small".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(
        fifth,
        Err(keygate::admin::manage::ManageError::KeyLimit { max: 4 })
    ));

    // Audit survives in Redis.
    let audit = common::json(a.manager.audit(Some("acme")).await.unwrap());
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.created",
            "key.created",
            "key.revoked",
            "account.updated",
            "account.updated"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_while_requests_flow() {
    let mut redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let good = h.key("live", "acme", None).await;
    let toon = h.key("toon", "acme", None).await;
    let gone = h.key("live", "acme", None).await;
    h.manager.revoke_key("test", &gone.id).await.unwrap();
    let unknown = "tk_live_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    assert_eq!(status(&h, &toon.key).await, 200);

    redis.kill();
    wait_until("store disconnected", Duration::from_secs(10), || async {
        metric(&metrics(&h).await, "keygate_store_connected ") == 0.0
    })
    .await;
    // Decisions continue from the table: known keys allowed, unknown and revoked refused.
    for _ in 0..20 {
        assert_eq!(status(&h, &good.key).await, 200);
        assert_eq!(status(&h, &toon.key).await, 200);
        assert_eq!(status(&h, unknown).await, 401);
        assert_eq!(status(&h, &gone.key).await, 401);
    }
    assert_eq!(
        h.http("GET", "/readyz", &[]).await.status,
        200,
        "a loaded table stays ready"
    );

    redis.restart();
    wait_until("store reconnected", Duration::from_secs(15), || async {
        metric(&metrics(&h).await, "keygate_store_connected ") == 1.0
    })
    .await;
    // Everything written before the crash survived (AOF), and a revocation made after the
    // restart is applied.
    assert_eq!(
        h.manager.list_keys(Some("acme")).await.unwrap().keys.len(),
        3
    );
    h.manager.revoke_key("test", &good.id).await.unwrap();
    wait_status(&h, &good.key, 401).await;
    assert_eq!(status(&h, &toon.key).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn trimmed_change_log_makes_a_disconnected_sidecar_reload() {
    let redis = RedisServer::start();
    let _: () = redis.cmd(&[
        "ACL",
        "SETUSER",
        "sidecar",
        "on",
        ">sidecar-pw",
        "~*",
        "&*",
        "+@all",
    ]);
    let sidecar_url = format!("redis://sidecar:sidecar-pw@127.0.0.1:{}/0", redis.port);
    let small_log = "  max_changes: 3\n";
    let writer = Harness::start_redis(&redis.url(), small_log, true).await;
    let reader = Harness::start_redis(&sidecar_url, small_log, true).await;
    let before = writer.key("live", "acme", None).await;
    wait_status(&reader, &before.key, 200).await;
    let loads = metric(&metrics(&reader).await, "keygate_table_full_loads_total ");

    // Cut the reader off (its user can no longer log in), then write far past the log's length.
    let _: () = redis.cmd(&["ACL", "SETUSER", "sidecar", "off"]);
    let _: i64 = redis.cmd(&["CLIENT", "KILL", "USER", "sidecar"]);
    wait_until("reader disconnected", Duration::from_secs(10), || async {
        metric(&metrics(&reader).await, "keygate_store_connected ") == 0.0
    })
    .await;
    let mut new_keys = vec![];
    for _ in 0..6 {
        new_keys.push(writer.key("live", "acme", None).await);
    }
    writer.manager.revoke_key("test", &before.id).await.unwrap();
    let len: i64 = redis.cmd(&["XLEN", "{keygate}:changes"]);
    assert!(len <= 3, "the change log was not trimmed ({len})");
    // Still deciding from its old table while cut off.
    assert_eq!(status(&reader, &before.key).await, 200);

    let _: () = redis.cmd(&["ACL", "SETUSER", "sidecar", "on"]);
    wait_status(&reader, &before.key, 401).await;
    for k in &new_keys {
        assert_eq!(status(&reader, &k.key).await, 200);
    }
    let m = metrics(&reader).await;
    assert!(
        metric(&m, "keygate_table_full_loads_total ") > loads,
        "no full reload happened"
    );
    assert_eq!(metric(&m, "keygate_keys "), 7.0);
    assert_eq!(
        metric(&m, "keygate_table_revision "),
        metric(&metrics(&writer).await, "keygate_table_revision ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_start_without_redis_is_not_ready_until_it_appears() {
    let mut redis = RedisServer::unstarted();
    let h = Harness::start_redis(&redis.url(), "", false).await;
    let probe = "tk_live_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    assert_eq!(h.http("GET", "/readyz", &[]).await.status, 503);
    assert_eq!(status(&h, probe).await, 503);
    let r = h
        .grpc(
            "GET",
            "/v1/x",
            &[("authorization", &format!("Bearer {probe}"))],
        )
        .await;
    assert_eq!(r.status.unwrap().code, 14, "never allows without a table");

    redis.restart();
    h.wait_ready().await;
    let k = h.key("live", "acme", None).await;
    assert_eq!(status(&h, &k.key).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_written_back_exactly() {
    let redis = RedisServer::start();
    let a = Harness::start_redis(&redis.url(), "", true).await;
    let mut b = Harness::start_redis(&redis.url(), "", true).await;
    let k = a.key("live", "acme", None).await;
    // Wait for B to hold the key without using it, so the burst below is all it counts.
    wait_until("B to load the key", Duration::from_secs(5), || async {
        metric(&metrics(&b).await, "keygate_keys ") == 1.0
    })
    .await;
    let before = 0;
    // A burst split over two sidecars.
    for i in 0..57 {
        let h = if i % 3 == 0 { &a } else { &b };
        assert_eq!(status(h, &k.key).await, 200);
    }
    b.stop().await; // flushes at shutdown
    wait_until("usage written back", Duration::from_secs(10), || async {
        let u = common::json(a.manager.usage("acme").await.unwrap());
        u["keys"][0]["total"].as_u64() == Some(before + 57)
    })
    .await;
    let u = common::json(a.manager.usage("acme").await.unwrap());
    assert!(u["keys"][0]["lastUsedAt"].is_string());
    let listed = a.manager.list_keys(Some("acme")).await.unwrap().keys;
    assert!(listed[0].last_used_at.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_from_a_replica_and_writes_to_the_primary() {
    let primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let extra = format!("  read_url: {}\n", replica.url());
    let h = Harness::start_redis(&primary.url(), &extra, true).await;
    let k = h.key("live", "acme", None).await;
    // The write went to the primary and reached the sidecar through the replica.
    wait_status(&h, &k.key, 200).await;
    let on_primary: i64 = primary.cmd(&["HLEN", "{keygate}:keys"]);
    assert_eq!(on_primary, 1);
    h.manager.revoke_key("test", &k.id).await.unwrap();
    wait_status(&h, &k.key, 401).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_private_ca() {
    let (redis, ca) = RedisServer::start_tls();
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let extra = format!("  tls_ca_file: {}\n", ca.display());
    let h = Harness::start_redis(&url, &extra, true).await;
    let k = h.key("live", "acme", None).await;
    assert_eq!(status(&h, &k.key).await, 200);
    let n: i64 = redis.cmd(&["HLEN", "{keygate}:keys"]);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinel_finds_the_primary_after_a_failover() {
    let primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let sentinel = Sentinel::start(&primary);
    wait_until(
        "sentinel to see the replica",
        Duration::from_secs(20),
        || async { sentinel.replicas() == 1 },
    )
    .await;
    let extra = format!(
        "  sentinel:\n    master: mymaster\n    urls: [{}]\n",
        sentinel.url()
    );
    // The URL's address is not used with Sentinel: point it nowhere to prove it.
    let h = Harness::start_redis("redis://127.0.0.1:1/0", &extra, true).await;
    let k1 = h.key("live", "acme", None).await;
    assert_eq!(status(&h, &k1.key).await, 200);
    // Fail over only once the replica holds the write.
    wait_until("the replica to sync", Duration::from_secs(20), || async {
        let n: i64 = replica.cmd(&["HLEN", "{keygate}:keys"]);
        n == 1
    })
    .await;

    wait_until(
        "sentinel to accept a failover",
        Duration::from_secs(30),
        || async { sentinel.failover() },
    )
    .await;
    wait_until(
        "the replica to be promoted",
        Duration::from_secs(30),
        || async { sentinel.master_port() == Some(replica.port) },
    )
    .await;
    // Sentinel then turns the old primary into a replica; until it has, a client that still
    // talks to it could write there (Redis' own split-brain window), so wait for that.
    wait_until(
        "the old primary to become a replica",
        Duration::from_secs(30),
        || async {
            let info: String = primary.cmd(&["INFO", "replication"]);
            info.contains("role:slave")
        },
    )
    .await;
    // Writes now reach the new primary (the old one refuses them as a replica).
    let d = common::Deadline::new("a write after failover", Duration::from_secs(30));
    let k2 = loop {
        let r = h
            .manager
            .create_key(
                "test",
                keygate::admin::manage::CreateKey {
                    account: "acme".into(),
                    scheme: Some("live".into()),
                    ..Default::default()
                },
            )
            .await;
        match r {
            Ok(c) => break c,
            Err(e) => assert!(!d.passed(), "no write after failover: {e}"),
        }
        d.tick().await;
    };
    let n: i64 = replica.cmd(&["HLEN", "{keygate}:keys"]);
    assert_eq!(n, 2);
    wait_status(&h, &k2.key, 200).await;
    assert_eq!(status(&h, &k1.key).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_larger_than_one_scan_batch_loads_whole() {
    // The loader scans 10,000 records per round trip and asks for the next batch while it
    // parses the last: 25,000 records take three batches.
    const FILLER: usize = 25_000;
    let redis = RedisServer::start();
    let a = Harness::start_redis(&redis.url(), "", true).await;
    let real = a.key("live", "acme", Some(&["tokens:read"])).await;
    let rec = a.manager.store.get_key(&real.id).await.unwrap().unwrap();
    redis.fill_like(&rec, FILLER);

    let b = Harness::start_redis(&redis.url(), "", true).await;
    assert_eq!(
        metric(&metrics(&b).await, "keygate_keys "),
        (FILLER + 1) as f64
    );
    assert_eq!(status(&b, &real.key).await, 200);
    assert_eq!(status(&a, &real.key).await, 200);
}
