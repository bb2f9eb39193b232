//! A table never loaded: 503 on every frontend and on `/readyz`.

use std::sync::Arc;

use keygate::core::key::AccountStatus;
use keygate::frontend::envoy_grpc::EnvoyGrpc;
use keygate::metrics::Metrics;
use keygate::service::Authorizer;
use keygate::store::replica::Replica;

use crate::common::{Harness, check_request};
use crate::expect::{bearer, denied_parts};

#[tokio::test]
async fn never_loaded_table_is_not_ready_on_every_frontend() {
    let h = Harness::start().await;
    let live = h.key("live", "acme", None).await;
    // An authorizer whose replica has never loaded (as a sidecar whose store is unreachable).
    let s = h.settings.clone();
    let auth = Arc::new(Authorizer::new(
        s.clone(),
        Arc::new(Replica::new(s.policy.clone())),
        Arc::new(Metrics::new()),
    ));
    let b = bearer(&live.key);
    let r = EnvoyGrpc::new(auth.clone())
        .decide(&check_request("GET", "/v1/x", &[("authorization", &b)]))
        .await;
    assert_eq!(r.status.as_ref().unwrap().code, 14);
    assert_eq!(denied_parts(&r).0, 503);
    for uri in ["/ext_authz/v1/x", "/auth"] {
        let req = http::Request::builder()
            .uri(uri)
            .header("x-original-uri", "/v1/x")
            .header("authorization", &b)
            .body(())
            .unwrap();
        let resp = keygate::frontend::http::handle(auth.clone(), req)
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{uri}");
    }
    let req = http::Request::builder().uri("/readyz").body(()).unwrap();
    assert_eq!(
        keygate::frontend::http::handle(auth.clone(), req)
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(h.http("GET", "/readyz", &[]).await.status, 200);
    assert_eq!(h.http("GET", "/healthz", &[]).await.status, 200);
    let _ = AccountStatus::Active;
}
