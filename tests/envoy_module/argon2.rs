//! Argon2 is verified off Envoy's worker, once per key, and a flood of wrong secrets does not
//! stall valid keys.

use std::time::Duration;

use crate::common::{Harness, http_call, wait_until};
use crate::support::{module_on, stats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_is_verified_off_the_worker_once_and_a_flood_does_not_stall_valid_keys() {
    let h = Harness::start().await;
    let (mut p, _echo) = module_on(&h).await;
    let good = h.key("toon", "acme", None).await;
    let call = |key: String| {
        let addr = p.addr;
        async move {
            http_call(addr, "GET", "/v1/x", &[("x-api-key", &key)])
                .await
                .status
        }
    };
    wait_until("the module to see the key", Duration::from_secs(10), || {
        let k = good.key.clone();
        async move { call(k).await == 200 }
    })
    .await;
    for _ in 0..3 {
        assert_eq!(call(good.key.clone()).await, 200);
    }
    for line in [
        r#"envoy_keygate_hash_verifications{result="ok"} 1"#,
        "envoy_keygate_verify_cache_hits{} 3",
    ] {
        wait_until(
            &format!("the stat {line}"),
            Duration::from_secs(10),
            || async { stats(&p).await.contains(line) },
        )
        .await;
    }

    // Wrong secrets for many Argon2 ids, while the valid key keeps being allowed.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(h.key("toon", &format!("flood{i}"), None).await);
    }
    let flood: Vec<_> = ids
        .iter()
        .flat_map(|k| {
            let wrong = format!("{}{}", &k.key[..k.key.len() - 4], "AAAA");
            (0..3).map(move |_| tokio::spawn(call(wrong.clone())))
        })
        .collect();
    for _ in 0..20 {
        assert_eq!(
            call(good.key.clone()).await,
            200,
            "the valid key was refused"
        );
    }
    for f in flood {
        assert_eq!(f.await.unwrap(), 401);
    }
    assert!(p.alive());
}
