//! Every denial row through every front: status, WWW-Authenticate and JSON body, and the
//! upstream never sees the request.

use std::time::Duration;

use serde_json::{Value, json};

use crate::checks::assert_no_secret;
use crate::common::wait_until;
use crate::proxy::fronts::{Front, bearer, setup};

const CHALLENGE: Option<&str> = Some(r#"Bearer realm="keygate""#);
const INVALID: Option<&str> = Some(r#"Bearer realm="keygate", error="invalid_token""#);
const SCOPE_CHALLENGE: Option<&str> =
    Some(r#"Bearer realm="keygate", error="insufficient_scope", scope="tokens:write""#);

fn unauthorized() -> Value {
    json!({"error": "unauthorized", "message": "Invalid or missing API key"})
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

#[tokio::test]
async fn envoy_grpc_denials() {
    denials(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_denials() {
    denials(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_denials() {
    denials(Front::Nginx).await;
}

#[tokio::test]
async fn envoy_module_denials() {
    denials(Front::EnvoyModule).await;
}

#[tokio::test]
async fn nginx_module_denials() {
    denials(Front::NginxModule { workers: 1 }).await;
}

#[tokio::test]
async fn nginx_module_two_workers_denials() {
    denials(Front::NginxModule { workers: 2 }).await;
}
