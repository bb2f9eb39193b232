//! keygate inside nginx: `libkeygate_nginx.so` loaded into Debian's nginx with the shipped
//! `config/nginx-module.conf` (only addresses, paths and the worker count replaced). The
//! decision table itself runs through the module in tests/e2e_proxies.rs (the same rows as
//! every other front, with one and with two workers) and the rate limit rows in
//! tests/rate_limits.rs; Redis in tests/nginx_module_redis.rs. Here: that the module fits the
//! binary, refuses a bad config with keygate's message, checks exactly the locations it
//! should, serves the sidecar's metrics, verifies Argon2 off the worker, writes usage back,
//! and survives hostile input with no worker lost.

mod common;
mod proxy;

use std::process::Command;
use std::time::Duration;

use common::raw::{request, send_raw};
use common::{Harness, http_call, wait_until};
use proxy::nginx_module::{metrics, module_conf, nginx_module, settle, start_nginx_module};
use proxy::{Echo, Proxy, nginx_bin, symbols};

#[test]
fn every_nginx_symbol_the_module_imports_is_in_the_binary() {
    let imported = symbols(&nginx_module(), &["-D", "--undefined-only"], "ngx_");
    let nginx = symbols(&nginx_bin(), &["-D", "--defined-only"], "ngx_");
    assert!(imported.len() >= 10, "{imported:?}");
    let missing: Vec<&String> = imported.difference(&nginx).collect();
    assert!(
        missing.is_empty(),
        "symbols nginx does not have: {missing:?}"
    );
    let exported = symbols(&nginx_module(), &["-D", "--defined-only"], "ngx_");
    for table in ["ngx_modules", "ngx_module_names", "ngx_module_order"] {
        assert!(
            exported.contains(table),
            "the module does not export {table}"
        );
    }
}

/// `nginx -t` on the shipped config with the keygate config at `keygate`: its output.
fn nginx_test(keygate: &std::path::Path, edit: impl Fn(String) -> String) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    for d in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let upstream = "127.0.0.1:1".parse().unwrap();
    let text = edit(module_conf(&nginx_module(), keygate, 1, 2, upstream, 1));
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, text).unwrap();
    Command::new(nginx_bin())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .arg("-t")
        .output()
        .unwrap()
}

#[test]
fn nginx_refuses_a_bad_keygate_config_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, common::config_text(&dir.path().join("k.json"))).unwrap();
    let out = nginx_test(&good, |t| t);
    assert!(out.status.success(), "{out:?}");

    let bad = dir.path().join("bad.yaml");
    let text = common::config_text(&dir.path().join("k.json")).replace("hash: sha256", "hash: md5");
    std::fs::write(&bad, text).unwrap();
    let out = nginx_test(&bad, |t| t);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nginx accepted a bad keygate config");
    assert!(said.contains("schemes[1].hash"), "{said}");
    assert!(said.contains("unknown hash `md5`"), "{said}");

    // `keygate on` without `keygate_config` cannot check anything: refused too.
    let out = nginx_test(&good, |t| {
        let line = format!("keygate_config {};", good.display());
        t.replace(&line, "")
    });
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("need \"keygate_config\""), "{said}");
}

/// keygate in-process on a file store, an echo upstream and nginx with the module on
/// `workers` workers following the same store.
async fn module_on(h: &Harness, workers: u8) -> (Proxy, Echo) {
    let echo = Echo::start().await;
    let p = start_nginx_module(&h.config_path, echo.addr, workers).await;
    (p, echo)
}

async fn synced(h: &Harness, p: &Proxy) {
    settle(p, h.running().authorizer.replica.revision()).await;
}

/// No worker died: nginx's master logs every worker it loses.
fn assert_no_worker_lost(p: &Proxy) {
    let logs = p.logs();
    assert!(
        !logs.contains("exited on signal") && !logs.contains("panic in"),
        "a worker crashed or panicked:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_locations_that_reach_the_access_phase_with_keygate_on_are_checked() {
    let h = Harness::start().await;
    let (p, echo) = module_on(&h, 1).await;
    let spoof = [
        ("x-keygate-account", "victim"),
        ("x-keygate-key-id", "forged"),
    ];
    let before = echo.count();
    // `keygate off`: not checked, and a client's identity headers still do not pass.
    let r = http_call(p.addr, "GET", "/healthz", &spoof).await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = echo.seen().pop().unwrap();
    assert!(
        !seen.headers.contains_key("x-keygate-account")
            && !seen.headers.contains_key("x-keygate-key-id"),
        "client identity reached the application: {seen:?}"
    );
    // `keygate on` (inherited from the server): checked.
    let r = http_call(p.addr, "GET", "/v1/x", &spoof).await;
    assert_eq!(r.status, 401, "{r:?}");
    // `return`: answered before the access phase, so never checked, as the config says.
    let r = http_call(p.addr, "GET", "/robots.txt", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.starts_with("User-agent"), "{r:?}");
    assert!(p.config.contains("never checked, `keygate on` or not"));
    assert_eq!(
        echo.count(),
        before + 1,
        "only /healthz reached the application"
    );
}

/// The rewrite of the header list, both ways it is done: in place (fewer headers go than keygate
/// adds) and rebuilt (more go): the application gets every other header, once, and of the
/// identity headers only keygate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_keygates_identity_and_every_other_header() {
    let h = Harness::start().await;
    let (p, echo) = module_on(&h, 1).await;
    let key = h.key("live", "acme", None).await;
    synced(&h, &p).await;
    let bearer = format!("Bearer {}", key.key);
    let other: Vec<(String, String)> = (0..12)
        .map(|i| (format!("x-other-{i}"), format!("v{i}")))
        .collect();
    for spoofed in [0, 1, 3, 12] {
        let mut headers: Vec<(&str, &str)> = vec![("authorization", &bearer)];
        for (i, (k, v)) in other.iter().enumerate() {
            headers.push((k, v));
            if i < spoofed {
                headers.push(("x-keygate-account", "victim"));
                headers.push(("x-keygate-plan", "enterprise"));
            }
        }
        let r = http_call(p.addr, "GET", &format!("/v1/rewrite/{spoofed}"), &headers).await;
        assert_eq!(r.status, 200, "{r:?}");
        let seen = echo.seen().pop().unwrap();
        let one = |name: &str| seen.headers.get(name).cloned().unwrap_or_default();
        assert_eq!(
            one("x-keygate-account"),
            vec!["acme".to_string()],
            "{seen:?}"
        );
        assert_eq!(one("x-keygate-key-id"), vec![key.id.clone()], "{seen:?}");
        assert!(one("x-keygate-plan").is_empty(), "{seen:?}");
        assert!(one("authorization").is_empty(), "{seen:?}");
        for (k, v) in &other {
            assert_eq!(
                one(k),
                vec![v.clone()],
                "{spoofed} spoofed: {k} in {seen:?}"
            );
        }
    }
    assert_no_worker_lost(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_are_the_sidecars_families() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h, 2).await;
    for _ in 0..3 {
        assert_eq!(http_call(p.addr, "GET", "/v1/x", &[]).await.status, 401);
    }
    let m = metrics(&p).await;
    assert!(
        m.contains(
            r#"keygate_decisions_total{frontend="nginx_module",reason="missing",result="deny"} 3"#
        ),
        "{m}"
    );
    // Every family the module serves is the sidecar's, with its help and type, but one.
    let sidecar = h.http("GET", "/metrics", &[]).await.body;
    let described: Vec<&str> = m.lines().filter(|l| l.starts_with("# ")).collect();
    assert!(described.len() >= 20, "{m}");
    for line in described {
        if line.contains("keygate_workers ") {
            continue;
        }
        assert!(
            sidecar.lines().any(|l| l == line),
            "the sidecar has no `{line}`"
        );
    }
    assert!(m.contains("keygate_workers 2"), "{m}");
    assert_no_worker_lost(&p);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_last_use_are_written_back_as_by_the_sidecar() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h, 2).await;
    let key = h.key("live", "acme", None).await;
    synced(&h, &p).await;
    let b = format!("Bearer {}", key.key);
    for _ in 0..6 {
        let r = http_call(p.addr, "GET", "/v1/x", &[("authorization", &b)]).await;
        assert_eq!(r.status, 200);
    }
    // Six allowed by the module's workers, none by the in-process sidecar: what the store
    // holds came from the workers' write-back.
    wait_until(
        "the module's usage in the store",
        Duration::from_secs(20),
        || async {
            let u = common::json(h.manager.usage("acme").await.unwrap());
            u["keys"][0]["total"].as_u64() == Some(6) && u["keys"][0]["lastUsedAt"].is_string()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_answered_as_documented_and_no_worker_is_lost() {
    let h = Harness::start().await;
    let (mut p, echo) = module_on(&h, 2).await;
    let key = h.key("live", "acme", None).await;
    synced(&h, &p).await;
    let bearer = format!("Bearer {}", key.key);
    let b = bearer.as_bytes();
    let big = format!("Bearer {}", "a".repeat(7 * 1024));
    let spoofed: Vec<(&[u8], &[u8])> = (0..200)
        .map(|i| {
            (
                b"x-keygate-account".as_slice(),
                if i % 2 == 0 { b"a".as_slice() } else { b"b" },
            )
        })
        .chain([(b"authorization".as_slice(), b)])
        .collect();
    let body_post = {
        let mut r = request(b"POST", b"/v1/x", &[(b"content-length", b"65536")]);
        r.extend(std::iter::repeat_n(b'x', 65536));
        r
    };
    let rows: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "a 7 KiB credential",
            request(b"GET", b"/v1/x", &[(b"authorization", big.as_bytes())]),
            &[401],
        ),
        (
            "a credential past nginx's header buffers",
            request(
                b"GET",
                b"/v1/x",
                &[(b"authorization", "a".repeat(64 * 1024).as_bytes())],
            ),
            &[400, 494],
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
            "both credential kinds",
            request(
                b"GET",
                b"/v1/x",
                &[
                    (b"authorization", b),
                    (b"x-api-key", b"toon_AAAAAAAAAAAA_x"),
                ],
            ),
            &[401],
        ),
        (
            "a path that is not UTF-8",
            request(b"GET", b"/v1/\xff", &[(b"authorization", b)]),
            &[400, 403],
        ),
        (
            "a NUL in the path",
            request(b"GET", b"/v1/%00", &[(b"authorization", b)]),
            &[400],
        ),
        (
            "an absolute-form target",
            request(b"GET", b"http://api.example/v1/x", &[(b"authorization", b)]),
            &[200],
        ),
        (
            "200 spoofed identity headers",
            request(b"GET", b"/v1/x", &spoofed),
            &[200],
        ),
        ("a refused request with a 64 KiB body", body_post, &[401]),
        ("HEAD, refused", request(b"HEAD", b"/v1/x", &[]), &[401]),
        (
            "an unknown method",
            request(b"BREW", b"/v1/x", &[(b"authorization", b)]),
            &[200, 403, 405],
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
        assert!(p.alive(), "nginx died on {what}:\n{}", p.logs());
    }
    // The spoofed identity never reached the application, only keygate's.
    for seen in echo.seen().into_iter().filter(|s| s.uri.contains("/v1/")) {
        let accounts = seen
            .headers
            .get("x-keygate-account")
            .cloned()
            .unwrap_or_default();
        assert_eq!(accounts, vec!["acme".to_string()], "{seen:?}");
    }
    let ok = http_call(p.addr, "GET", "/v1/x", &[("authorization", &bearer)]).await;
    assert_eq!(ok.status, 200, "a valid request afterwards");
    assert!(!p.logs().contains(&key.key), "the key reached nginx's logs");
    assert_no_worker_lost(&p);
}
