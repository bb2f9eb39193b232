//! The shipped proxy configs, proven end to end: the real Envoy (ext_authz over gRPC and in HTTP
//! mode, `envoy/envoy.yaml` and `envoy/envoy-http.yaml`) and the real nginx (`auth_request`,
//! `config/nginx.conf`) in front of an echo upstream, with keygate running in-process; and
//! keygate inside each proxy (`envoy/envoy-module.yaml`, `config/nginx-module.conf` with one
//! and with two workers) following the in-process keygate's store. Only addresses (and the
//! modules' paths and worker counts) are substituted in the configs. A missing Envoy or nginx
//! fails the tests.

mod common;
mod proxy;

use std::time::Duration;

use common::wait_until;
use proxy::fronts::{Front, Setup, bearer, setup};
use serde_json::{Value, json};

const IDENTITY: [&str; 4] = [
    "x-keygate-key-id",
    "x-keygate-account",
    "x-keygate-scopes",
    "x-keygate-plan",
];
const CHALLENGE: Option<&str> = Some(r#"Bearer realm="keygate""#);
const INVALID: Option<&str> = Some(r#"Bearer realm="keygate", error="invalid_token""#);
const SCOPE_CHALLENGE: Option<&str> =
    Some(r#"Bearer realm="keygate", error="insufficient_scope", scope="tokens:write""#);

fn unauthorized() -> Value {
    json!({"error": "unauthorized", "message": "Invalid or missing API key"})
}

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
            ],
        )
        .await;
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

/// Envoy's Prometheus stats.
/// No key appears in anything the proxy wrote.
fn assert_no_secret(s: &Setup, keys: &[&str]) {
    let logs = s.proxy.logs();
    for k in keys {
        assert!(
            !logs.contains(k),
            "{:?}: a key reached the proxy's logs",
            s.front
        );
    }
}

/// Every denial row through the proxy: status, WWW-Authenticate, JSON body, and the upstream
/// never sees the request.
async fn denials(front: Front) {
    let s = setup(front).await;
    let h = &s.h;
    let live = s.key("live", "acme", Some(&["usage:read"])).await;
    let b = bearer(&live.key);

    s.deny(
        "missing",
        ("GET", "/v1/account/usage?case=missing", &[]),
        401,
        CHALLENGE,
        unauthorized(),
    )
    .await;
    s.deny(
        "malformed x-api-key",
        ("GET", "/v1/x?case=malformed", &[("x-api-key", "toon_nope")]),
        401,
        None,
        unauthorized(),
    )
    .await;
    s.deny(
        "malformed bearer",
        (
            "GET",
            "/v1/x?case=malformed-bearer",
            &[("authorization", "Bearer not-a-key")],
        ),
        401,
        INVALID,
        unauthorized(),
    )
    .await;
    s.deny(
        "two credential headers",
        (
            "GET",
            "/v1/account/usage?case=two-kinds",
            &[("authorization", &b), ("x-api-key", "toon_AAAAAAAAAAAA_x")],
        ),
        401,
        INVALID,
        unauthorized(),
    )
    .await;
    let twice = [("authorization", b.as_str()), ("authorization", b.as_str())];
    let duplicated = ("GET", "/v1/account/usage?case=duplicated", &twice[..]);
    if matches!(front, Front::Nginx | Front::NginxModule { .. }) {
        // nginx itself refuses a repeated Authorization line with its own 400 page, before
        // auth_request or the access phase: still a refusal that reaches neither keygate nor
        // the upstream.
        let r = s.call(duplicated.0, duplicated.1, duplicated.2).await;
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.header("x-echo").is_none());
    } else {
        s.deny(
            "duplicated authorization",
            duplicated,
            401,
            INVALID,
            unauthorized(),
        )
        .await;
    }
    s.deny(
        "empty bearer",
        (
            "GET",
            "/v1/account/usage?case=empty-bearer",
            &[("authorization", "Bearer ")],
        ),
        401,
        INVALID,
        unauthorized(),
    )
    .await;
    let stranger = bearer("tk_live_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    s.deny(
        "unknown",
        ("GET", "/v1/x?case=unknown", &[("authorization", &stranger)]),
        401,
        INVALID,
        unauthorized(),
    )
    .await;

    // A wrong secret for a real x-api-key key id: 401 without a challenge (keygate's answer for
    // this scheme), and the proxy adds none.
    let toon = s.key("toon", "acme", None).await;
    let mut wrong = toon.key.clone();
    wrong.replace_range(wrong.len() - 4.., "zzzz");
    s.deny(
        "wrong secret",
        ("GET", "/v1/x?case=wrong-secret", &[("x-api-key", &wrong)]),
        401,
        None,
        unauthorized(),
    )
    .await;

    let scope_body = json!({"error": "forbidden", "message": "API key lacks scope tokens:write"});
    s.deny(
        "scope",
        ("POST", "/v1/tokens?case=scope", &[("authorization", &b)]),
        403,
        SCOPE_CHALLENGE,
        scope_body.clone(),
    )
    .await;
    s.deny(
        "scope, percent-encoded path",
        (
            "POST",
            "/v1/%74okens?case=scope-encoded",
            &[("authorization", &b)],
        ),
        403,
        SCOPE_CHALLENGE,
        scope_body.clone(),
    )
    .await;

    // The original method and URI keygate sees are the proxy's, whatever the client claims.
    s.deny(
        "spoofed X-Original-URI and X-Original-Method",
        (
            "POST",
            "/v1/tokens?case=spoofed-original",
            &[
                ("authorization", &b),
                ("x-original-uri", "/v1/account/usage"),
                ("x-original-method", "GET"),
            ],
        ),
        403,
        SCOPE_CHALLENGE,
        scope_body.clone(),
    )
    .await;
    // Encoded slashes: Envoy decodes them before authorizing; nginx passes them on as sent,
    // and keygate authorizes both readings (`/v1/tokens` and a name holding `%2F`).
    for path in [
        "/v1%2Ftokens?case=escaped-slash",
        "/v1%5ctokens?case=escaped-backslash",
    ] {
        s.deny(
            "scope, escaped slash",
            ("POST", path, &[("authorization", &b)]),
            403,
            SCOPE_CHALLENGE,
            scope_body.clone(),
        )
        .await;
    }
    // A malformed path is 400 through every front, nginx's auth_request included.
    s.deny(
        "bad path",
        (
            "GET",
            "/v1/account/usage/%252e%252e/tokens?case=bad-path",
            &[("authorization", &b)],
        ),
        400,
        None,
        json!({"error": "bad_request", "message": "Malformed request path"}),
    )
    .await;

    // Revoked: the same key passes, then is refused once revoked.
    let gone = s.key("live", "other", None).await;
    let gb = bearer(&gone.key);
    s.pass("GET", "/v1/x?before=revoke", &[("authorization", &gb)])
        .await;
    h.manager.revoke_key("test", &gone.id).await.unwrap();
    wait_until(
        "the revoked key to be refused",
        Duration::from_secs(5),
        || {
            let s = &s;
            let gb = &gb;
            async move {
                s.call("GET", "/v1/x?poll=revoked", &[("authorization", gb)])
                    .await
                    .status
                    == 401
            }
        },
    )
    .await;
    s.deny(
        "revoked",
        ("GET", "/v1/x?case=revoked", &[("authorization", &gb)]),
        401,
        INVALID,
        unauthorized(),
    )
    .await;

    // Account past due: 403, no challenge.
    s.pass("GET", "/v1/account/usage", &[("authorization", &b)])
        .await;
    h.manager
        .set_account(
            "test",
            "acme",
            Some(Some("starter".into())),
            Some("past_due"),
        )
        .await
        .unwrap();
    // Every front, nginx included (its config answers with keygate's X-Keygate-Body), gives
    // keygate's own message.
    let message = "API access is suspended: the account is past due";
    wait_until(
        "the past-due account to be refused",
        Duration::from_secs(5),
        || {
            let s = &s;
            let b = &b;
            async move {
                s.call(
                    "GET",
                    "/v1/account/usage?poll=past-due",
                    &[("authorization", b)],
                )
                .await
                .status
                    == 403
            }
        },
    )
    .await;
    s.deny(
        "account past due",
        (
            "GET",
            "/v1/account/usage?case=past-due",
            &[("authorization", &b)],
        ),
        403,
        None,
        json!({"error": "forbidden", "message": message}),
    )
    .await;

    // No denied request reached the upstream.
    let leaked: Vec<String> = s
        .echo
        .seen()
        .into_iter()
        .map(|r| r.uri)
        .filter(|u| u.contains("case="))
        .collect();
    assert_eq!(
        leaked,
        Vec::<String>::new(),
        "{front:?}: denied requests reached the upstream"
    );
    assert_no_secret(&s, &[&live.key, &gone.key, &toon.key]);
}

/// keygate unreachable: the proxy fails closed with 503, never reaching the upstream.
async fn fails_closed(front: Front) {
    let mut s = setup(front).await;
    let live = s.h.key("live", "acme", None).await;
    let b = bearer(&live.key);
    s.pass("GET", "/v1/x", &[("authorization", &b)]).await;
    let running = s.h.running.take().unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .expect("keygate did not shut down");
    let r = s
        .call("GET", "/v1/x?case=keygate-down", &[("authorization", &b)])
        .await;
    assert_eq!(r.status, 503, "{front:?}: {r:?}\n{}", s.proxy.logs());
    assert!(
        r.header("x-echo").is_none(),
        "{front:?}: reached the upstream"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{front:?}"
    );
    assert_eq!(
        r.json(),
        json!({"error": "unavailable", "message": "Authorization service unavailable"}),
        "{front:?}"
    );
    // The public route does not depend on keygate.
    s.pass("GET", "/healthz", &[]).await;
    assert!(s.proxy.alive());
}

#[tokio::test]
async fn envoy_grpc_allow() {
    allow(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_grpc_denials() {
    denials(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_grpc_fails_closed() {
    fails_closed(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_allow() {
    allow(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn envoy_http_denials() {
    denials(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn envoy_http_fails_closed() {
    fails_closed(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_allow() {
    allow(Front::Nginx).await;
}

#[tokio::test]
async fn nginx_denials() {
    denials(Front::Nginx).await;
}

#[tokio::test]
async fn nginx_fails_closed() {
    fails_closed(Front::Nginx).await;
}

#[tokio::test]
async fn envoy_module_allow() {
    allow(Front::EnvoyModule).await;
}

#[tokio::test]
async fn envoy_module_denials() {
    denials(Front::EnvoyModule).await;
}

#[tokio::test]
async fn nginx_module_allow() {
    allow(Front::NginxModule { workers: 1 }).await;
}

#[tokio::test]
async fn nginx_module_denials() {
    denials(Front::NginxModule { workers: 1 }).await;
}

#[tokio::test]
async fn nginx_module_two_workers_allow() {
    allow(Front::NginxModule { workers: 2 }).await;
}

#[tokio::test]
async fn nginx_module_two_workers_denials() {
    denials(Front::NginxModule { workers: 2 }).await;
}
