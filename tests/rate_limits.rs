//! Rate limits through every front: the shipped config's `metered` plan (`burst`: 5 per second
//! per key) through the real Envoy (gRPC and HTTP mode), the real nginx and keygate inside
//! Envoy and inside nginx; `shared: account` budgets through the sidecar.

mod common;
mod proxy;

use std::time::Duration;

use common::{Harness, HttpReply, metric, wait_until};
use keygate::admin::manage::CreateKey;
use keygate::core::credits::Credits;
use keygate::core::limit::{Per, RateLimit, Shared};
use proxy::fronts::{Front, Setup, bearer, setup};
use serde_json::json;

const BURST: usize = 5;
const POLICY: &str = r#""burst";q=5;w=1"#;

/// Keys of a new account on the `metered` plan, usable through the front.
async fn metered_keys(s: &Setup, account: &str, n: usize) -> Vec<String> {
    s.h.manager
        .set_account("test", account, Some(Some("metered".into())), None)
        .await
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..n {
        keys.push(s.key("live", account, None).await.key);
    }
    keys
}

/// `r` of the `RateLimit` field of an allowed answer.
fn remaining(r: &HttpReply) -> Option<u64> {
    let field = r.header("ratelimit")?;
    field
        .strip_prefix(r#""burst";r="#)?
        .strip_suffix(";t=1")?
        .parse()
        .ok()
}

/// Six requests of one key: five allowed with the limit's state, the sixth 429 with the IETF
/// fields and keygate's body, when all six fall in one window. `None` if they did not (the
/// second changed between two of them): the caller tries again with a fresh key.
async fn burst_once(s: &Setup, key: &str) -> Option<()> {
    let auth = bearer(key);
    let headers = [("authorization", auth.as_str())];
    let mut replies = Vec::new();
    for i in 0..=BURST {
        replies.push(s.call("GET", &format!("/v1/items?n={i}"), &headers).await);
    }
    let front = s.front;
    let allowed: Vec<Option<u64>> = replies
        .iter()
        .take_while(|r| r.status == 200)
        .map(remaining)
        .collect();
    if allowed.len() > BURST || allowed.windows(2).any(|w| w[1] >= w[0]) {
        eprintln!("{front:?}: the burst straddled two windows: {allowed:?}");
        return None;
    }
    let expected: Vec<Option<u64>> = (0..BURST as u64).rev().map(Some).collect();
    assert_eq!(allowed, expected, "{front:?}: {replies:?}");
    for r in &replies[..BURST] {
        assert_eq!(
            r.header("ratelimit-policy"),
            Some(POLICY),
            "{front:?}: {r:?}"
        );
        assert!(r.header("x-echo").is_some(), "{front:?}: {r:?}");
        assert!(r.header("retry-after").is_none(), "{front:?}: {r:?}");
    }
    let refused = &replies[BURST];
    assert_eq!(refused.status, 429, "{front:?}: {refused:?}");
    assert!(
        refused.header("x-echo").is_none(),
        "{front:?}: reached the upstream"
    );
    assert_eq!(
        refused.header("retry-after"),
        Some("1"),
        "{front:?}: {refused:?}"
    );
    assert_eq!(
        refused.header("ratelimit"),
        Some(r#""burst";r=0;t=1"#),
        "{front:?}"
    );
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some(POLICY),
        "{front:?}"
    );
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert!(refused.header("www-authenticate").is_none(), "{front:?}");
    assert_eq!(
        refused.json(),
        json!({"error": "rate_limited", "message": "Rate limit exceeded"}),
        "{front:?}"
    );
    // The next window allows again (refusals took nothing from it).
    wait_until("the next window", Duration::from_secs(5), || async {
        s.call("GET", "/v1/items?next", &headers).await.status == 200
    })
    .await;
    Some(())
}

async fn burst(front: Front) {
    let s = setup(front).await;
    let keys = metered_keys(&s, "acme-metered", 3).await;
    let mut proven = false;
    for k in &keys {
        if burst_once(&s, k).await.is_some() {
            proven = true;
            break;
        }
    }
    assert!(proven, "{front:?}: every burst straddled a window");
    let frontend = match front {
        Front::EnvoyModule => {
            // The module adds its counts to Envoy's stats once a second.
            let line = r#"envoy_keygate_decisions{result="deny",reason="rate_limited"}"#;
            wait_until("the module's stats", Duration::from_secs(10), || async {
                s.proxy
                    .envoy_stats()
                    .await
                    .lines()
                    .any(|l| l.starts_with(line))
            })
            .await;
            return;
        }
        Front::NginxModule { .. } => {
            let counted = s.module_decisions("deny", "rate_limited").await;
            let n: f64 = counted
                .as_deref()
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0);
            assert!(
                n >= 1.0,
                "{front:?}: no rate_limited decision counted: {counted:?}"
            );
            return;
        }
        Front::EnvoyGrpc => "envoy_grpc",
        Front::EnvoyHttp => "envoy_http",
        Front::Nginx => "nginx",
    };
    let m = s.h.http("GET", "/metrics", &[]).await.body;
    let name = format!(
        r#"keygate_decisions_total{{frontend="{frontend}",reason="rate_limited",result="deny"}}"#
    );
    assert!(metric(&m, &name) >= 1.0, "{front:?}: {name} missing\n{m}");
}

#[tokio::test]
async fn envoy_grpc_burst() {
    burst(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_burst() {
    burst(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_burst() {
    burst(Front::Nginx).await;
}

#[tokio::test]
async fn envoy_module_burst() {
    burst(Front::EnvoyModule).await;
}

/// One worker: with the file store a rate limit is counted per process, and each nginx worker
/// is one.
#[tokio::test]
async fn nginx_module_burst() {
    burst(Front::NginxModule { workers: 1 }).await;
}

/// `shared: account`: an account's keys draw on one budget; another account's is its own.
#[tokio::test]
async fn account_budgets_are_shared_by_its_keys() {
    let h = Harness::start().await;
    let team = vec![RateLimit {
        name: "team".into(),
        requests: 6,
        per: Per::parse("1d").unwrap(),
        shared: Shared::Account,
    }];
    let key = |account: &'static str| {
        let team = team.clone();
        let h = &h;
        async move {
            let create = CreateKey {
                account: account.into(),
                scheme: Some("live".into()),
                rate_limits: Some(team),
                ..Default::default()
            };
            bearer(&h.manager.create_key("test", create).await.unwrap().key)
        }
    };
    let (a1, a2, other) = (key("acme").await, key("acme").await, key("globex").await);
    let call = |auth: &str| {
        let auth = auth.to_string();
        let h = &h;
        async move {
            h.http(
                "GET",
                "/auth",
                &[("authorization", &auth), ("x-original-uri", "/v1/x")],
            )
            .await
        }
    };
    for (i, auth) in [&a1, &a1, &a1, &a1, &a2, &a2].into_iter().enumerate() {
        let r = call(auth).await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        let left = 5 - i;
        assert!(
            r.header("ratelimit")
                .unwrap()
                .starts_with(&format!(r#""team";r={left};t="#)),
            "request {i}: {r:?}"
        );
    }
    for auth in [&a1, &a2] {
        let r = call(auth).await;
        // nginx's /auth answers a 429 as 403 with the real status beside it.
        assert_eq!(
            (r.status, r.header("x-keygate-status")),
            (403, Some("429")),
            "{r:?}"
        );
        assert!(
            r.header("ratelimit")
                .unwrap()
                .starts_with(r#""team";r=0;t="#)
        );
    }
    let r = call(&other).await;
    assert_eq!(r.status, 200, "another account's budget is its own: {r:?}");
}

/// Credits spent inside Envoy: leases taken from the same file store, the fields on every
/// answer, then 429 `quota`.
#[tokio::test]
async fn envoy_module_spends_credits() {
    let s = setup(Front::EnvoyModule).await;
    let create = CreateKey {
        account: "credited".into(),
        scheme: Some("live".into()),
        credits: Some(Credits {
            remaining: 3,
            refill: None,
            balance_of: None,
        }),
        ..Default::default()
    };
    let k = s.h.manager.create_key("test", create).await.unwrap();
    let auth = bearer(&k.key);
    let headers = [("authorization", auth.as_str())];
    wait_until(
        "the module to see the key",
        Duration::from_secs(5),
        || async { s.call("GET", "/v1/probe/%252e", &headers).await.status == 400 },
    )
    .await;
    for left in (0..3).rev() {
        let r = s.call("GET", "/v1/items", &headers).await;
        assert_eq!(r.status, 200, "{r:?}");
        let field = format!(r#""credits";r={left}"#);
        assert_eq!(r.header("ratelimit"), Some(field.as_str()), "{r:?}");
    }
    let r = s.call("GET", "/v1/items", &headers).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("ratelimit"), Some(r#""credits";r=0"#));
    assert_eq!(
        r.json(),
        json!({"error": "quota_exceeded", "message": "Usage quota exhausted"})
    );
}
