//! Argon2 is verified off nginx's worker, once per key, and a flood of wrong secrets does not
//! stall valid keys.

use crate::common::{Harness, http_call};
use crate::proxy::nginx_module::metrics;
use crate::support::{assert_no_worker_lost, module_on, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_is_verified_off_the_worker_once_and_a_flood_does_not_stall_valid_keys() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h, 1).await;
    let good = h.key("toon", "acme", None).await;
    synced(&h, &p).await;
    let call = |key: String| {
        let addr = p.addr;
        async move {
            http_call(addr, "GET", "/v1/x", &[("x-api-key", &key)])
                .await
                .status
        }
    };
    for _ in 0..4 {
        assert_eq!(call(good.key.clone()).await, 200);
    }
    let m = metrics(&p).await;
    for line in [
        r#"keygate_hash_verifications_total{result="ok"} 1"#,
        "keygate_verify_cache_hits_total 3",
    ] {
        assert!(m.contains(line), "no `{line}` in\n{m}");
    }

    // Wrong secrets for many Argon2 ids, while the valid key keeps being allowed: the worker
    // serves it while the verifications run elsewhere.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(h.key("toon", &format!("flood{i}"), None).await);
    }
    synced(&h, &p).await;
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
    assert_no_worker_lost(&p);
}
