//! keygate unreachable: every ext_authz front fails closed.

use std::time::Duration;

use serde_json::json;

use crate::proxy::fronts::{Front, bearer, setup};

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
async fn envoy_grpc_fails_closed() {
    fails_closed(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_fails_closed() {
    fails_closed(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_fails_closed() {
    fails_closed(Front::Nginx).await;
}
