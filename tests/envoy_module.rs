//! keygate inside Envoy: `libkeygate_envoy.so` loaded into the pinned Envoy binary with the
//! shipped `envoy/envoy-module.yaml` (only ports and the config path replaced). The decision
//! table itself runs through the module in tests/e2e_proxies.rs and tests/path_confusion.rs
//! (the same rows as every other front); here: that the module fits the binary, refuses a bad
//! config with keygate's message, follows Redis beside a sidecar (create and revoke within a
//! second on two Envoys, Redis killed under load, cold start), verifies Argon2 off the worker,
//! and survives hostile input.

mod common;
mod proxy;

use std::time::{Duration, Instant};

use common::raw::{request, send_raw};
use common::redis_server::RedisServer;
use common::{Harness, http_call, wait_until};
use proxy::{Echo, Proxy, envoy_bin, envoy_module, start_envoy_module, symbols};

/// A key made through the admin API: its id and the key itself.
struct Created {
    id: String,
    key: String,
}

#[test]
fn every_callback_the_module_imports_is_in_the_pinned_binary() {
    let module = envoy_module();
    let imported = symbols(
        &module,
        &["-D", "--undefined-only"],
        "envoy_dynamic_module_",
    );
    let exported = symbols(&module, &["-D", "--defined-only"], "envoy_dynamic_module_");
    let envoy = symbols(
        &envoy_bin(),
        &["-D", "--defined-only"],
        "envoy_dynamic_module_",
    );
    assert!(imported.len() >= 10, "{imported:?}");
    let missing: Vec<&String> = imported.difference(&envoy).collect();
    assert!(
        missing.is_empty(),
        "callbacks Envoy does not have: {missing:?}"
    );
    for hook in [
        "program_init",
        "http_filter_config_new",
        "http_filter_config_destroy",
        "http_filter_new",
        "http_filter_destroy",
        "http_filter_request_headers",
        "http_filter_request_body",
        "http_filter_request_trailers",
        "http_filter_response_headers",
        "http_filter_response_body",
        "http_filter_response_trailers",
        "http_filter_stream_complete",
        "http_filter_http_callout_done",
        "http_filter_http_stream_headers",
        "http_filter_http_stream_data",
        "http_filter_http_stream_trailers",
        "http_filter_http_stream_complete",
        "http_filter_http_stream_reset",
        "http_filter_scheduled",
        "http_filter_downstream_above_write_buffer_high_watermark",
        "http_filter_downstream_below_write_buffer_low_watermark",
    ] {
        let name = format!("envoy_dynamic_module_on_{hook}");
        assert!(
            exported.contains(&name),
            "the module does not export {name}"
        );
    }
}

/// Envoy's Prometheus stats.
async fn stats(p: &Proxy) -> String {
    http_call(p.admin.unwrap(), "GET", "/stats/prometheus", &[])
        .await
        .body
}

/// A harness (in-process keygate on the file store), an echo upstream and Envoy with the
/// module on the harness's config.
async fn module_on(h: &Harness) -> (Proxy, Echo) {
    let echo = Echo::start().await;
    let p = start_envoy_module(&h.config_path, echo.addr).await;
    (p, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_loads_with_the_binarys_abi_and_serves_stats() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h).await;
    let logs = p.logs();
    assert!(
        logs.contains("Dynamic module ABI version v0.2.0 matched"),
        "the module's ABI version is not the binary's:\n{logs}"
    );
    let r = http_call(p.addr, "GET", "/v1/x", &[]).await;
    assert_eq!(r.status, 401);
    for line in [
        r#"envoy_keygate_decisions{result="deny",reason="missing"} 1"#,
        "envoy_keygate_store_connected{} 1",
        "envoy_keygate_keys{} 0",
    ] {
        // Counts reach Envoy's stats once a second.
        wait_until(
            &format!("the stat {line}"),
            Duration::from_secs(10),
            || async { stats(&p).await.contains(line) },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_with_keygates_message_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let text =
        common::config_text(&dir.path().join("keygate.json")).replace("hash: sha256", "hash: md5");
    std::fs::write(&path, text).unwrap();
    let out = proxy::run_envoy_module_to_exit(&path);
    assert!(
        !out.status.success(),
        "Envoy started with a bad keygate config"
    );
    let logs =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("schemes[1].hash"), "{logs}");
    assert!(logs.contains("unknown hash `md5`"), "{logs}");
}

/// `GET path` with a Bearer key through `p`: the status.
async fn status(p: &Proxy, key: &str, path: &str) -> u16 {
    let b = format!("Bearer {key}");
    http_call(p.addr, "GET", path, &[("authorization", &b)])
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_envoys_and_a_sidecar_share_one_redis() {
    let mut redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    let echo = Echo::start().await;
    let a = start_envoy_module(&h.config_path, echo.addr).await;
    let b = start_envoy_module(&h.config_path, echo.addr).await;

    // A key made through the sidecar's admin API works in both Envoys.
    let made = Instant::now();
    let r = common::http_call_body(
        h.running().admin.unwrap(),
        "POST",
        "/api/keys",
        &[
            ("authorization", &format!("Bearer {}", common::ADMIN_TOKEN)),
            ("content-type", "application/json"),
        ],
        bytes::Bytes::from_static(br#"{"account":"acme","scheme":"live"}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    let key = Created {
        id: v["id"].as_str().unwrap().to_string(),
        key: v["key"].as_str().unwrap().to_string(),
    };
    for p in [&a, &b] {
        wait_until(
            "the key to work in an Envoy",
            Duration::from_secs(10),
            || {
                let key = &key.key;
                async move { status(p, key, "/v1/x").await == 200 }
            },
        )
        .await;
    }
    println!(
        "created key allowed by both Envoys after {:?}",
        made.elapsed()
    );

    // A rate limit counted across both Envoys: 5 a day in all, then 429 in each.
    let create = keygate::admin::manage::CreateKey {
        account: "acme".into(),
        scheme: Some("live".into()),
        rate_limits: Some(vec![keygate::core::limit::RateLimit {
            name: "daily".into(),
            requests: 5,
            per: keygate::core::limit::Per::parse("1d").unwrap(),
            shared: keygate::core::limit::Shared::Key,
        }]),
        ..Default::default()
    };
    let limited = h.manager.create_key("test", create).await.unwrap().key;
    for p in [&a, &b] {
        wait_until(
            "the limited key in an Envoy",
            Duration::from_secs(10),
            || {
                let limited = &limited;
                async move { status(p, limited, "/v1/%252e").await == 400 }
            },
        )
        .await;
    }
    let mut allowed = 0;
    for i in 0..12 {
        let p = if i % 2 == 0 { &a } else { &b };
        match status(p, &limited, "/v1/limited").await {
            200 => allowed += 1,
            429 => {}
            s => panic!("request {i}: {s}"),
        }
    }
    assert_eq!(allowed, 5, "the limit is the fleet's, not each Envoy's");

    // Redis killed and restarted under load: every decision is still made, from the table.
    let load = {
        let (addr_a, addr_b, k) = (a.addr, b.addr, format!("Bearer {}", key.key));
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::new();
            let end = Instant::now() + Duration::from_secs(4);
            while Instant::now() < end {
                for addr in [addr_a, addr_b] {
                    let s = http_call(addr, "GET", "/v1/load", &[("authorization", &k)])
                        .await
                        .status;
                    *statuses.entry(s).or_insert(0u32) += 1;
                }
            }
            statuses
        })
    };
    wait_until("load to start", Duration::from_secs(10), || async {
        echo.count() > 10
    })
    .await;
    redis.kill();
    let before = echo.count();
    wait_until(
        "requests while Redis is down",
        Duration::from_secs(10),
        || async { echo.count() > before + 20 },
    )
    .await;
    redis.restart();
    let statuses = load.await.unwrap();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "decisions failed while Redis was down: {statuses:?}"
    );

    // After the restart, a revocation is refused by both.
    wait_until(
        "the sidecar to reconnect",
        Duration::from_secs(20),
        || async { h.manager.revoke_key("test", &key.id).await.is_ok() },
    )
    .await;
    let revoked = Instant::now();
    for p in [&a, &b] {
        wait_until(
            "the revoked key to be refused",
            Duration::from_secs(10),
            || {
                let key = &key.key;
                async move { status(p, key, "/v1/x").await == 401 }
            },
        )
        .await;
    }
    println!(
        "revoked key refused by both Envoys after {:?}",
        revoked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_module_answers_503_until_it_loads() {
    let mut redis = RedisServer::unstarted();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.yaml");
    std::fs::write(&path, common::redis_config_text(&redis.url(), "", 0.1)).unwrap();
    let echo = Echo::start().await;
    let p = start_envoy_module(&path, echo.addr).await;
    let r = http_call(p.addr, "GET", "/v1/x", &[("authorization", "Bearer x")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        r#"{"error":"unavailable","message":"The key table is not loaded yet"}"#
    );
    redis.restart();
    wait_until("the table to load", Duration::from_secs(20), || async {
        http_call(p.addr, "GET", "/v1/x", &[]).await.status == 401
    })
    .await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_last_use_are_written_back_as_by_the_sidecar() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h).await;
    let key = h.key("live", "acme", None).await;
    wait_until(
        "the module to see the key",
        Duration::from_secs(10),
        || async { status(&p, &key.key, "/v1/x").await == 200 },
    )
    .await;
    for _ in 0..4 {
        assert_eq!(status(&p, &key.key, "/v1/x").await, 200);
    }
    // Five allowed by the module, none by the in-process sidecar: what the store holds came
    // from the module's write-back.
    wait_until(
        "the module's usage in the store",
        Duration::from_secs(20),
        || async {
            let u = common::json(h.manager.usage("acme").await.unwrap());
            u["keys"][0]["total"].as_u64() == Some(5) && u["keys"][0]["lastUsedAt"].is_string()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_answered_as_documented_and_envoy_keeps_running() {
    let h = Harness::start().await;
    let (mut p, _echo) = module_on(&h).await;
    let key = h.key("live", "acme", None).await;
    let bearer = format!("Bearer {}", key.key);
    wait_until("the module to see the key", Duration::from_secs(10), || {
        let bearer = &bearer;
        let addr = p.addr;
        async move {
            http_call(addr, "GET", "/v1/x", &[("authorization", bearer)])
                .await
                .status
                == 200
        }
    })
    .await;
    let big = format!("Bearer {}", "a".repeat(60 * 1024));
    let rows: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "a 60 KiB credential",
            request(b"GET", b"/v1/x", &[(b"authorization", big.as_bytes())]),
            // Envoy's own header limit may refuse it first.
            &[401, 431],
        ),
        (
            "non-UTF-8 bytes in the credential",
            request(
                b"GET",
                b"/v1/x",
                &[(b"authorization", b"Bearer tk_live_\xff\xfe\x80")],
            ),
            &[401, 400],
        ),
        (
            "a duplicated credential",
            request(
                b"GET",
                b"/v1/x",
                &[
                    (b"authorization", bearer.as_bytes()),
                    (b"authorization", bearer.as_bytes()),
                ],
            ),
            &[401],
        ),
        (
            "both credential kinds",
            request(
                b"GET",
                b"/v1/x",
                &[
                    (b"authorization", bearer.as_bytes()),
                    (b"x-api-key", b"toon_AAAAAAAAAAAA_x"),
                ],
            ),
            &[401],
        ),
        (
            "a path that is not UTF-8",
            request(
                b"GET",
                b"/v1/\xff",
                &[(b"authorization", bearer.as_bytes())],
            ),
            &[400, 403],
        ),
    ];
    for (what, bytes, want) in rows {
        let r = send_raw(p.addr, bytes).await;
        assert!(
            r.status.is_some_and(|s| want.contains(&s)),
            "{what}: {:?}\n{}",
            r.status,
            r.head
        );
        assert!(p.alive(), "Envoy died on {what}:\n{}", p.logs());
    }
    let ok = http_call(p.addr, "GET", "/v1/x", &[("authorization", &bearer)]).await;
    assert_eq!(ok.status, 200, "a valid request afterwards");
    assert!(!p.logs().contains(&key.key), "the key reached Envoy's logs");
}
