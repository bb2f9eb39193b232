//! Allowed requests through every front: keygate's identity reaches the upstream, the
//! client's does not, and the metrics and access log count and name the caller.

use std::time::Duration;

use crate::checks::assert_no_secret;
use crate::common::wait_until;
use crate::proxy;
use crate::proxy::fronts::{Front, bearer, setup};

const IDENTITY: [&str; 4] = [
    "x-keygate-key-id",
    "x-keygate-account",
    "x-keygate-scopes",
    "x-keygate-plan",
];

/// Allow: the upstream answers, with keygate's identity and without the credential, whatever
/// identity headers the client sent. The public route needs no key and passes no identity.
async fn allow(front: Front) {
    let s = setup(front).await;
    let h = &s.h;
    h.manager
        .set_account("test", "acme", Some(Some("starter".into())), Some("active"))
        .await
        .unwrap();
    let live = s
        .key("live", "acme", Some(&["usage:read", "tokens:read"]))
        .await;
    let b = bearer(&live.key);
    let up = s
        .pass(
            "GET",
            "/v1/account/usage?day=1",
            &[
                ("authorization", &b),
                ("x-keygate-key-id", "forged"),
                ("x-keygate-account", "victim"),
                ("x-keygate-scopes", "admin"),
                ("x-keygate-plan", "enterprise"),
                // The same names as many applications read them (HTTP_X_KEYGATE_ACCOUNT).
                ("x_keygate_account", "victim"),
                ("x_keygate_key_id", "forged"),
            ],
        )
        .await;
    assert_eq!(up.values("x_keygate_account"), Vec::<String>::new());
    assert_eq!(up.values("x_keygate_key_id"), Vec::<String>::new());
    assert_eq!(up.one("x-keygate-key-id"), Some(live.id.clone()));
    assert_eq!(up.one("x-keygate-account").as_deref(), Some("acme"));
    assert_eq!(
        up.one("x-keygate-scopes").as_deref(),
        Some("usage:read tokens:read")
    );
    assert_eq!(up.one("x-keygate-plan").as_deref(), Some("starter"));
    assert_eq!(up.values("authorization"), Vec::<String>::new());
    assert_eq!(up.values("x-api-key"), Vec::<String>::new());

    // An unrestricted Argon2 key (x-api-key) of an account with no record: no scopes, no plan,
    // so the client's spoofed ones must be removed. Twice: the second is a cache hit.
    let toon = s.key("toon", "solo", None).await;
    for _ in 0..2 {
        let up = s
            .pass_body(
                "POST",
                "/v1/tokens/7",
                &[
                    ("x-api-key", &toon.key),
                    ("content-type", "application/json"),
                    ("x-keygate-account", "victim"),
                    ("x-keygate-scopes", "admin"),
                    ("x-keygate-plan", "enterprise"),
                ],
                r#"{"name":"a body the upstream must get"}"#,
            )
            .await;
        assert_eq!(up.one("x-keygate-key-id"), Some(toon.id.clone()));
        assert_eq!(up.one("x-keygate-account").as_deref(), Some("solo"));
        assert_eq!(up.one("x-keygate-scopes"), None, "spoofed scopes passed");
        assert_eq!(up.one("x-keygate-plan"), None, "spoofed plan passed");
        assert_eq!(up.values("x-api-key"), Vec::<String>::new());
        assert_eq!(up.values("authorization"), Vec::<String>::new());
    }

    // The public route: no key, and no client-sent identity reaches the upstream.
    let up = s
        .pass(
            "GET",
            "/healthz",
            &[
                ("x-keygate-account", "victim"),
                ("x-keygate-key-id", "forged"),
            ],
        )
        .await;
    for name in IDENTITY {
        assert_eq!(up.one(name), None, "{front:?}: {name} on the public route");
    }

    // keygate decided each authorized request exactly once (the public route not at all).
    let (m, line) = match front {
        Front::EnvoyModule => {
            // The module adds its counts to Envoy's stats once a second.
            let line = r#"envoy_keygate_decisions{result="allow",reason="ok"} 3"#.to_string();
            wait_until("the module's stats", Duration::from_secs(10), || async {
                s.proxy.envoy_stats().await.contains(&line)
            })
            .await;
            (s.proxy.envoy_stats().await, line)
        }
        // The module's own metrics, counted by every worker in nginx's shared zone.
        Front::NginxModule { .. } => (
            proxy::nginx_module::metrics(&s.proxy).await,
            r#"keygate_decisions_total{frontend="nginx_module",reason="ok",result="allow"} 3"#
                .to_string(),
        ),
        _ => {
            let frontend = match front {
                Front::EnvoyGrpc => "envoy_grpc",
                Front::EnvoyHttp => "envoy_http",
                _ => "nginx",
            };
            (
                h.http("GET", "/metrics", &[]).await.body,
                format!(
                    r#"keygate_decisions_total{{frontend="{frontend}",reason="ok",result="allow"}} 3"#
                ),
            )
        }
    };
    assert!(m.contains(&line), "{front:?}: metrics lack {line}\n{m}");

    // The access log names the caller keygate identified.
    for who in [
        format!(
            r#""GET /v1/account/usage HTTP/1.1" 200 key_id={} account=acme "#,
            live.id
        ),
        format!(
            r#""POST /v1/tokens/7 HTTP/1.1" 200 key_id={} account=solo "#,
            toon.id
        ),
        r#""GET /healthz HTTP/1.1" 200 key_id=- account=- "#.to_string(),
    ] {
        wait_until(
            &format!("{front:?} to log {who}"),
            Duration::from_secs(10),
            || {
                let s = &s;
                let who = &who;
                async move { s.proxy.access_log().contains(who.as_str()) }
            },
        )
        .await;
    }
    assert!(
        !s.proxy.access_log().contains("day=1"),
        "{front:?}: the access log has the query string"
    );
    assert_no_secret(&s, &[&live.key, &toon.key]);
}

#[tokio::test]
async fn envoy_grpc_allow() {
    allow(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_allow() {
    allow(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_allow() {
    allow(Front::Nginx).await;
}

#[tokio::test]
async fn envoy_module_allow() {
    allow(Front::EnvoyModule).await;
}

#[tokio::test]
async fn nginx_module_allow() {
    allow(Front::NginxModule { workers: 1 }).await;
}

#[tokio::test]
async fn nginx_module_two_workers_allow() {
    allow(Front::NginxModule { workers: 2 }).await;
}
