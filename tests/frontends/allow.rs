//! Allows: the identity set, credentials and client-sent identity headers stripped, and the
//! gRPC allow on the wire equal to the message keygate builds.

use envoy_types::ext_authz::v3::pb::{CheckResponse, HeaderAppendAction, HttpResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use keygate::frontend::envoy_grpc::EnvoyGrpc;

use crate::common::{Harness, check_request};
use crate::expect::bearer;

#[tokio::test]
async fn allow_sets_identity_and_strips_credentials() {
    let h = Harness::start().await;
    h.manager
        .set_account("test", "acme", Some(Some("starter".into())), Some("active"))
        .await
        .unwrap();
    let live = h
        .key("live", "acme", Some(&["usage:read", "tokens:read"]))
        .await;
    let b = bearer(&live.key);
    let spoof = [
        ("authorization", b.as_str()),
        ("x-keygate-account", "victim"),
        ("x-keygate-plan", "enterprise"),
    ];

    // gRPC
    let r = h.grpc("GET", "/v1/account/usage?day=1", &spoof).await;
    assert_eq!(r.status.as_ref().unwrap().code, 0);
    let HttpResponse::OkResponse(ok) = r.http_response.as_ref().unwrap() else {
        panic!("{r:?}")
    };
    let set: Vec<(String, String, i32)> = ok
        .headers
        .iter()
        .map(|o| {
            let h = o.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone(), o.append_action)
        })
        .collect();
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    assert_eq!(
        set,
        vec![
            ("x-keygate-key-id".into(), live.id.clone(), overwrite),
            ("x-keygate-account".into(), "acme".into(), overwrite),
            (
                "x-keygate-scopes".into(),
                "usage:read tokens:read".into(),
                overwrite
            ),
            ("x-keygate-plan".into(), "starter".into(), overwrite),
        ]
    );
    assert_eq!(
        ok.headers_to_remove,
        vec!["x-api-key".to_string(), "authorization".to_string()]
    );
    let md = &r.dynamic_metadata.as_ref().unwrap().fields;
    let s = |k: &str| match md.get(k).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(
        (s("key_id"), s("account"), s("scopes"), s("plan")),
        (
            live.id.clone(),
            "acme".into(),
            "usage:read tokens:read".into(),
            "starter".into()
        )
    );

    // nginx
    let r = h
        .http(
            "GET",
            "/auth",
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/v1/tokens/7"),
                ("authorization", &b),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-keygate-key-id"), Some(live.id.as_str()));
    assert_eq!(r.header("x-keygate-account"), Some("acme"));
    assert_eq!(r.header("x-keygate-scopes"), Some("usage:read tokens:read"));
    assert_eq!(r.header("x-keygate-plan"), Some("starter"));

    // Envoy HTTP mode
    let r = h.http("GET", "/ext_authz/v1/tokens/7", &spoof).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-keygate-account"), Some("acme"));
    assert_eq!(
        r.header("x-envoy-auth-headers-to-remove"),
        Some("x-api-key,authorization")
    );

    // An unrestricted Argon2 key on an account with no record: scopes and plan are not set,
    // so a client-sent value for them must be removed.
    let toon = h.key("toon", "solo", None).await;
    let hdrs = [
        ("x-api-key", toon.key.as_str()),
        ("x-keygate-scopes", "admin"),
    ];
    for _ in 0..2 {
        // The second call is served from the verification cache.
        let r = h.grpc("GET", "/anything", &hdrs).await;
        assert_eq!(r.status.as_ref().unwrap().code, 0);
        let HttpResponse::OkResponse(ok) = r.http_response.unwrap() else {
            panic!()
        };
        assert_eq!(ok.headers.len(), 2);
        assert_eq!(
            ok.headers_to_remove,
            [
                "x-api-key",
                "authorization",
                "x-keygate-scopes",
                "x-keygate-plan"
            ]
            .map(String::from)
            .to_vec()
        );
    }
    let r = h.http("DELETE", "/ext_authz/anything?x=1", &hdrs).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-envoy-auth-headers-to-remove"),
        Some("x-api-key,authorization,x-keygate-scopes,x-keygate-plan")
    );
    let m = h.http("GET", "/metrics", &[]).await;
    assert!(
        m.body
            .contains(r#"keygate_hash_verifications_total{result="ok"} 1"#),
        "{}",
        m.body
    );
    assert!(m.body.contains("keygate_verify_cache_hits_total 2"));
}

/// The allow goes on the wire encoded straight from the decision; decoded, it must be the
/// very message `EnvoyGrpc::decide` builds, for every shape of identity.
#[tokio::test]
async fn grpc_allow_on_the_wire_is_the_built_message() {
    let h = Harness::start().await;
    h.manager
        .set_account("test", "acme", Some(Some("starter".into())), Some("active"))
        .await
        .unwrap();
    let keys = [
        h.key("live", "acme", Some(&["usage:read", "tokens:read"]))
            .await,
        h.key("live", "acme", None).await,
        h.key("toon", "solo", None).await,
        h.key("live", "solo", Some(&["tokens:read"])).await,
    ];
    let grpc = EnvoyGrpc::new(h.running().authorizer.clone());
    for k in &keys {
        let b = bearer(&k.key);
        let presented: [(&str, &str); 2] = if k.key.starts_with("toon_") {
            [("x-api-key", &k.key), ("x-keygate-plan", "enterprise")]
        } else {
            [("authorization", &b), ("x-keygate-scopes", "admin")]
        };
        let wire = h.grpc("GET", "/v1/tokens/1", &presented).await;
        assert_eq!(wire.status.as_ref().unwrap().code, 0, "{wire:?}");
        let req = check_request("GET", "/v1/tokens/1", &presented);
        let built = grpc.decide(&req).await;
        assert_eq!(wire, built);
        let answer = grpc.answer(&req).await;
        let bytes = prost::Message::encode_to_vec(&answer);
        assert_eq!(prost::Message::encoded_len(&answer), bytes.len());
        assert_eq!(
            <CheckResponse as prost::Message>::decode(&bytes[..]).unwrap(),
            built
        );
    }
}
