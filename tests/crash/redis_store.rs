//! Redis: acknowledged writes survive SIGKILL of redis-server and its restart.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::{self, redis_server::RedisServer};
use crate::writers::{Rng, Shared, admin_writer, check_acked, cli_writer, seed, wait_count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeps_every_acknowledged_write_through_kill_9() {
    let mut rng = Rng(seed());
    let mut redis = RedisServer::start();
    let h = common::Harness::start_redis(&redis.url(), "", true).await;
    let admin = h.running().admin.unwrap();
    let config = h.dir.path().join("cli.yaml");
    std::fs::write(&config, common::redis_config_text(&redis.url(), "", 0.1)).unwrap();
    let all = Shared::default();

    for round in 0..2 {
        let sh = all.round();
        // Two admin API writers and one CLI writer, until told to stop.
        let mut writers = Vec::new();
        for w in 0..2 {
            let s = sh.clone();
            writers.push(tokio::task::spawn_blocking(move || {
                admin_writer(admin, format!("admin{w}-r{round}"), s, false)
            }));
        }
        let (config, s, seed) = (config.clone(), sh.clone(), rng.next());
        writers.push(tokio::task::spawn_blocking(move || {
            cli_writer(config, format!("cli-r{round}"), seed, s)
        }));
        let acks = sh.acks.clone();
        tokio::task::spawn_blocking(move || {
            wait_count(
                "writes before the crash",
                &acks,
                30,
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap();
        redis.kill();
        sh.stop.store(true, Ordering::Relaxed);
        for t in writers {
            t.await.unwrap();
        }
        redis.restart();

        // Every acknowledged write is there after the restart.
        let when = format!("round {round}");
        let d = common::Deadline::new(
            format!("{when}: the store to load"),
            Duration::from_secs(20),
        );
        let mut state = loop {
            match h.manager.store.load().await {
                Ok(s) => break s,
                Err(e) => assert!(!d.passed(), "{when}: loading failed: {e}"),
            }
            d.tick().await;
        };
        state.audit = h.manager.store.audit(None).await.unwrap();
        let listed = h.manager.list_keys(None).await.unwrap();
        let acked = all.acked.lock().unwrap();
        check_acked(&state, &acked, &when);
        for id in acked.created.keys() {
            assert!(
                listed.keys.iter().any(|k| &k.id == id),
                "{when}: keys list lacks {id}"
            );
        }
        eprintln!("{when}: {} acknowledged writes survived", acked.count());
    }
}
