//! Benchmark 1: revocation propagation between two sidecars on one Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate::admin::manage::{CreateKey, Manager};
use keygate::core::decide::Reason;
use keygate::store::Store;

use crate::measure::{Dist, dist, ms};
use crate::sidecar::{decide, settings_for, wait_loaded};

pub(crate) struct Propagation {
    /// From just before `revoke_key` on A until B first refuses.
    pub(crate) from_start: Dist,
    /// From `revoke_key` returning until B first refuses (0 when B already refused).
    pub(crate) from_return: Dist,
    /// The `revoke_key` call itself (A's write, and A's follower applying it).
    pub(crate) revoke_call: Dist,
    pub(crate) refused_before_return: usize,
    pub(crate) samples: usize,
    /// Time to create one key through A (`None` for keys already in Redis).
    pub(crate) create_ms: Option<f64>,
}

/// The keys a propagation run revokes.
pub(crate) enum Keys {
    /// Created through A's management: this many, spread over 50 accounts.
    Create(usize),
    /// Already in Redis: (id, `Bearer <key>`).
    Existing(Vec<(String, String)>),
}

/// Two sidecars A and B on `url`; each key is revoked through A and timed until B refuses it.
/// The first `warmup` revocations are not timed.
pub(crate) async fn propagation(
    url: &str,
    keys: Keys,
    warmup: usize,
    load_deadline: Duration,
) -> Propagation {
    let settings = settings_for(url);
    let a = keygate::server::start(settings.clone(), None)
        .await
        .expect("start sidecar A");
    let b = keygate::server::start(settings.clone(), None)
        .await
        .expect("start sidecar B");
    wait_loaded(&a.authorizer.replica, load_deadline).await;
    wait_loaded(&b.authorizer.replica, load_deadline).await;
    let store = Store::open(&settings.store).expect("open store");
    let manager = Manager::new(
        Arc::new(settings),
        store,
        Some(a.authorizer.replica.clone()),
    );

    let (keys, create_ms) = match keys {
        Keys::Existing(keys) => (keys, None),
        Keys::Create(n) => {
            let started = Instant::now();
            let mut keys = Vec::new();
            for i in 0..n {
                let created = manager
                    .create_key(
                        "bench",
                        CreateKey {
                            account: format!("acct-{:03}", i % 50),
                            scheme: Some("live".into()),
                            ..CreateKey::default()
                        },
                    )
                    .await
                    .expect("create key");
                keys.push((created.id, format!("Bearer {}", created.key)));
            }
            let create_ms = ms(started.elapsed()) / keys.len() as f64;
            (keys, Some(create_ms))
        }
    };
    let samples = keys.len() - warmup;

    // B has them all: its revision caught up with A's and it allows every key.
    let rev = a.authorizer.replica.revision();
    assert!(
        b.authorizer
            .replica
            .wait_for(rev, Duration::from_secs(10))
            .await,
        "sidecar B did not catch up"
    );
    for (_, bearer) in &keys {
        assert_eq!(decide(&b.authorizer, bearer).await, Ok(()), "B allows");
    }

    let (mut from_start, mut from_return, mut revoke_call) = (Vec::new(), Vec::new(), Vec::new());
    let mut refused_before_return = 0;
    for (n, (id, bearer)) in keys.into_iter().enumerate() {
        // B is polled by its own task from before the revocation starts, so the moment it
        // first refuses is seen whether or not revoke_key has returned by then.
        let auth = b.authorizer.clone();
        let poller = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Err(reason) = decide(&auth, &bearer).await {
                    return (Instant::now(), reason);
                }
                assert!(Instant::now() < deadline, "B never refused a revoked key");
                tokio::task::yield_now().await;
            }
        });
        let t0 = Instant::now();
        manager.revoke_key("bench", &id).await.expect("revoke");
        let returned = Instant::now();
        let (refused, reason) = poller.await.expect("poller");
        assert_eq!(reason, Reason::Revoked);
        if n < warmup {
            continue;
        }
        from_start.push(ms(refused.duration_since(t0)));
        revoke_call.push(ms(returned.duration_since(t0)));
        if refused <= returned {
            refused_before_return += 1;
        }
        from_return.push(ms(refused.saturating_duration_since(returned)));
    }
    a.shutdown().await;
    b.shutdown().await;
    Propagation {
        from_start: dist(from_start),
        from_return: dist(from_return),
        revoke_call: dist(revoke_call),
        refused_before_return,
        samples,
        create_ms,
    }
}
