//! Argon2 verification: the cache and a record change dropping it, the per-key budget for
//! wrong secrets (one at a time and all at once), the hash threads' priority, revocation.

use crate::common::{self, Harness};

#[tokio::test]
async fn argon2_failures_are_capped_and_the_cache_follows_the_record() {
    let h = Harness::start().await;
    let toon = h.key("toon", "acme", None).await;
    let good = [("x-api-key", toon.key.as_str())];
    let metric = |body: &str, name: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let ok_runs = |h: &Harness| {
        let h = h.http_addr();
        async move {
            let body = common::http_call(h, "GET", "/metrics", &[]).await.body;
            metric(&body, r#"keygate_hash_verifications_total{result="ok"}"#)
        }
    };
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);
    assert_eq!(
        ok_runs(&h).await,
        1,
        "the second request is served from the cache"
    );

    // A change of the record (rotation with grace) drops the cached verification: the next
    // request verifies again.
    h.manager
        .rotate_key("test", &toon.id, Some(3600))
        .await
        .unwrap();
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);
    assert_eq!(ok_runs(&h).await, 2);

    // Far more wrong secrets than the per-key budget (10 a minute by default): Argon2 runs
    // for the budget only; the rest are refused without hashing.
    let mut wrong = toon.key.clone();
    wrong.replace_range(wrong.len() - 4.., "0000");
    let bad = [("x-api-key", wrong.as_str())];
    for _ in 0..40 {
        assert_eq!(h.grpc("GET", "/x", &bad).await.status.unwrap().code, 16);
    }
    let m = h.http("GET", "/metrics", &[]).await.body;
    let failed = metric(&m, r#"keygate_hash_verifications_total{result="failed"}"#);
    let throttled = metric(
        &m,
        r#"keygate_hash_verifications_total{result="throttled"}"#,
    );
    // The budget is per minute: a window may turn over once during the loop.
    assert!(failed <= 20, "{failed} Argon2 runs for wrong secrets");
    assert_eq!(failed + throttled, 40);
    // The valid key, cached, still passes during the flood.
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);

    // The same flood sent all at once, for another id: wrong secrets that queued for the hash
    // pool together are checked against the budget again before they run.
    let other = h.key("toon", "acme", None).await;
    let mut wrong = other.key.clone();
    wrong.replace_range(wrong.len() - 4.., "0000");
    let before = metric(
        &h.http("GET", "/metrics", &[]).await.body,
        r#"keygate_hash_verifications_total{result="failed"}"#,
    );
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (addr, wrong) = (h.running().grpc.unwrap(), wrong.clone());
        calls.spawn(
            async move { common::grpc_call(addr, "GET", "/x", &[("x-api-key", &wrong)]).await },
        );
    }
    for r in calls.join_all().await {
        assert_eq!(r.status.unwrap().code, 16);
    }
    let failed = metric(
        &h.http("GET", "/metrics", &[]).await.body,
        r#"keygate_hash_verifications_total{result="failed"}"#,
    ) - before;
    // Hashes already running when the budget ran out finish; a window may turn over once.
    let running = h.settings.verify_concurrency as u64;
    assert!(
        failed <= 2 * (10 + running - 1),
        "{failed} Argon2 runs for 40 concurrent wrong secrets"
    );
    assert_hash_threads_at_lowest_priority();

    // Revocation: refused at once, cached or not.
    h.manager.revoke_key("test", &toon.id).await.unwrap();
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 16);
}

/// Every hash thread of this process runs at nice 19, so decisions keep the CPU first.
fn assert_hash_threads_at_lowest_priority() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let mut seen = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
        let Some((name, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !name.ends_with("(keygate-hash-0") {
            continue;
        }
        // After the name: state, then fields 4.. of proc(5); nice is field 19.
        let nice: i32 = rest.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        assert_eq!(nice, 19, "{stat}");
        seen += 1;
    }
    assert!(seen > 0, "no hash thread found");
}
