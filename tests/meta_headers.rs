//! A key's metadata through every front, with the shipped configs: the upstream gets each entry
//! as `x-keygate-meta-<key>` and never a client-sent header under that prefix (Envoy and the
//! modules remove them; nginx, which cannot remove headers by prefix, refuses such a request
//! with 400 `bad_header` once the caller is known). Envoy also gets the entries as dynamic
//! metadata, seen by Envoy itself (its access log prints the namespace whole). A change of the
//! metadata is in force within the second.

mod common;
mod proxy;

use std::time::Duration;

use common::wait_until;
use keygate::admin::manage::UpdateKey;
use proxy::fronts::{Front, Setup, bearer, setup, setup_with};
use serde_json::json;

async fn set_meta(s: &Setup, id: &str, meta: serde_json::Value) {
    let update: UpdateKey = serde_json::from_value(json!({ "meta": meta })).unwrap();
    s.h.manager.update_key("test", id, update).await.unwrap();
}

async fn meta(front: Front) {
    let mut s = setup(front).await;
    let live = s.key("live", "acme", None).await;
    set_meta(&s, &live.id, json!({"tier": "gold", "org": "acme"})).await;
    let b = bearer(&live.key);
    let plain = [("authorization", b.as_str())];
    wait_until("the metadata in force", Duration::from_secs(5), || async {
        let r = s.call("GET", "/v1/x", &plain).await;
        r.status == 200 && r.json()["headers"]["x-keygate-meta-tier"] == json!(["gold"])
    })
    .await;
    let up = s.pass("GET", "/v1/x", &plain).await;
    assert_eq!(up.one("x-keygate-meta-tier").as_deref(), Some("gold"));
    assert_eq!(up.one("x-keygate-meta-org").as_deref(), Some("acme"));

    let spoofed = [
        ("authorization", b.as_str()),
        ("x-keygate-meta-tier", "platinum"),
        ("X-Keygate-Meta-Admin", "yes"),
    ];
    if front == Front::Nginx {
        s.deny(
            "a client-sent metadata header",
            ("GET", "/v1/x", &spoofed),
            400,
            None,
            json!({"error": "bad_request", "message": "Request carries a reserved header"}),
        )
        .await;
        // An unauthenticated one is still a 401 first.
        let r = s
            .call("GET", "/v1/x", &[("x-keygate-meta-admin", "yes")])
            .await;
        assert_eq!(r.status, 401, "{r:?}");
    } else {
        let up = s.pass("GET", "/v1/x", &spoofed).await;
        assert_eq!(up.values("x-keygate-meta-tier"), ["gold"], "{front:?}");
        assert_eq!(up.values("x-keygate-meta-admin"), Vec::<String>::new());
    }

    // Cleared: nothing under the prefix reaches the upstream.
    set_meta(&s, &live.id, serde_json::Value::Null).await;
    wait_until("the metadata cleared", Duration::from_secs(5), || async {
        let r = s.call("GET", "/v1/x", &plain).await;
        r.status == 200 && r.json()["headers"].get("x-keygate-meta-tier").is_none()
    })
    .await;
    if front != Front::Nginx {
        let up = s.pass("GET", "/v1/x", &spoofed).await;
        assert_eq!(up.values("x-keygate-meta-tier"), Vec::<String>::new());
        assert_eq!(up.values("x-keygate-meta-admin"), Vec::<String>::new());
    }
    assert!(s.proxy.alive(), "{front:?}");
}

/// A key with every entry it may have, and a request with more spoofed headers than that,
/// forged identity headers among them: the upstream gets exactly the key's entries and
/// identity, whatever the proxy had to remove and rewrite.
async fn many(front: Front) {
    let mut s = setup(front).await;
    let k = s.key("live", "acme", None).await;
    let entries: serde_json::Map<String, serde_json::Value> = (0..16)
        .map(|i| (format!("e{i}"), json!(format!("v{i}"))))
        .collect();
    set_meta(&s, &k.id, serde_json::Value::Object(entries)).await;
    let b = bearer(&k.key);
    // Fewer headers to remove than entries to add, and more (nginx reuses removed elements
    // for added ones in the first case and rebuilds its list in the second).
    for spoofed in [10, 30] {
        let junk: Vec<(String, String)> = (0..spoofed)
            .map(|i| (format!("x-keygate-meta-junk{i}"), "x".to_string()))
            .chain([
                ("x-keygate-key-id".to_string(), "forged".to_string()),
                ("x-keygate-account".to_string(), "victim".to_string()),
                ("x-keygate-meta-e3".to_string(), "spoofed".to_string()),
            ])
            .collect();
        let mut headers: Vec<(&str, &str)> = vec![("authorization", b.as_str())];
        headers.extend(junk.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        wait_until("the metadata in force", Duration::from_secs(5), || async {
            let r = s.call("GET", "/v1/x", &headers).await;
            r.status == 200 && r.json()["headers"]["x-keygate-meta-e15"] == json!(["v15"])
        })
        .await;
        let up = s.pass("GET", "/v1/x", &headers).await;
        for i in 0..16 {
            let want = format!("v{i}");
            assert_eq!(
                up.values(&format!("x-keygate-meta-e{i}")),
                [want],
                "{front:?}"
            );
        }
        for i in 0..spoofed {
            assert!(
                up.values(&format!("x-keygate-meta-junk{i}")).is_empty(),
                "{front:?}"
            );
        }
        assert_eq!(
            up.values("x-keygate-key-id"),
            std::slice::from_ref(&k.id),
            "{front:?}"
        );
        assert_eq!(up.values("x-keygate-account"), ["acme"], "{front:?}");
        assert!(up.values("authorization").is_empty(), "{front:?}");
    }
    assert!(s.proxy.alive(), "{front:?}");
}

#[tokio::test]
async fn envoy_grpc_many_entries_and_spoofed_headers() {
    many(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_many_entries_and_spoofed_headers() {
    many(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn envoy_module_many_entries_and_spoofed_headers() {
    many(Front::EnvoyModule).await;
}

#[tokio::test]
async fn nginx_module_many_entries_and_spoofed_headers() {
    many(Front::NginxModule { workers: 1 }).await;
}

#[tokio::test]
async fn envoy_grpc_meta() {
    meta(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_meta() {
    meta(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_meta() {
    meta(Front::Nginx).await;
}

#[tokio::test]
async fn envoy_module_meta() {
    meta(Front::EnvoyModule).await;
}

#[tokio::test]
async fn nginx_module_meta() {
    meta(Front::NginxModule { workers: 1 }).await;
}

/// The gRPC answer carries the entries as dynamic metadata beside the identity.
#[tokio::test]
async fn grpc_dynamic_metadata_carries_the_entries() {
    let h = common::Harness::start().await;
    let k = h.key("live", "acme", None).await;
    let update: UpdateKey = serde_json::from_value(json!({"meta": {"tier": "gold"}})).unwrap();
    h.manager.update_key("test", &k.id, update).await.unwrap();
    let b = bearer(&k.key);
    let r = h
        .grpc(
            "GET",
            "/v1/x",
            &[("authorization", &b), ("x-keygate-meta-x", "spoof")],
        )
        .await;
    let md = r.dynamic_metadata.unwrap().fields;
    let s = |k: &str| match md.get(k).and_then(|v| v.kind.as_ref()) {
        Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    };
    assert_eq!(s("meta.tier").as_deref(), Some("gold"));
    assert_eq!(s("account").as_deref(), Some("acme"));
    let Some(envoy_types::ext_authz::v3::pb::HttpResponse::OkResponse(ok)) = r.http_response else {
        panic!("not an allow");
    };
    assert!(
        ok.headers_to_remove
            .contains(&"x-keygate-meta-x".to_string())
    );
    assert!(
        ok.headers
            .iter()
            .any(|h| h.header.as_ref().unwrap().key == "x-keygate-meta-tier")
    );
}

/// In every Envoy front the identity and the entries reach Envoy's dynamic metadata: the
/// shipped config with its access log printing the namespace keygate fills, whole.
async fn envoy_dynamic_metadata(front: Front, namespace: &str, names: [&str; 5]) {
    let print = format!("md=%DYNAMIC_METADATA({namespace})% key_id=");
    let s = setup_with(front, &[("key_id=", print)]).await;
    s.h.manager
        .set_account("test", "acme", Some(Some("starter".into())), Some("active"))
        .await
        .unwrap();
    let k = s.key("live", "acme", Some(&["usage:read"])).await;
    set_meta(&s, &k.id, json!({"tier": "gold"})).await;
    let b = bearer(&k.key);
    let plain = [("authorization", b.as_str())];
    wait_until("the metadata in force", Duration::from_secs(5), || async {
        s.pass("GET", "/v1/account/usage", &plain)
            .await
            .one("x-keygate-meta-tier")
            .is_some()
    })
    .await;
    let seen = || {
        let log = s.proxy.access_log();
        log.lines()
            .rev()
            .find(|l| l.contains("\"GET /v1/account/usage "))
            .and_then(|l| l.split("md=").nth(1))
            .and_then(|md| serde_json::Deserializer::from_str(md).into_iter().next())
            .and_then(Result::ok)
    };
    let want = json!({
        names[0]: k.id,
        names[1]: "acme",
        names[2]: "usage:read",
        names[3]: "starter",
        names[4]: "gold",
    });
    wait_until("the access log line", Duration::from_secs(10), || async {
        // Envoy's ext_authz filter adds its own `ext_authz_duration` beside keygate's.
        seen().is_some_and(|mut md: serde_json::Value| {
            md.as_object_mut().unwrap().remove("ext_authz_duration");
            md == want
        })
    })
    .await;
}

#[tokio::test]
async fn envoy_grpc_dynamic_metadata() {
    let names = ["key_id", "account", "scopes", "plan", "meta.tier"];
    envoy_dynamic_metadata(Front::EnvoyGrpc, "envoy.filters.http.ext_authz", names).await;
}

#[tokio::test]
async fn envoy_http_dynamic_metadata() {
    let names = [
        "x-keygate-key-id",
        "x-keygate-account",
        "x-keygate-scopes",
        "x-keygate-plan",
        "x-keygate-meta-tier",
    ];
    envoy_dynamic_metadata(Front::EnvoyHttp, "envoy.filters.http.ext_authz", names).await;
}

#[tokio::test]
async fn envoy_module_dynamic_metadata() {
    let names = ["key_id", "account", "scopes", "plan", "meta.tier"];
    envoy_dynamic_metadata(Front::EnvoyModule, "keygate", names).await;
}
