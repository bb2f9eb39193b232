//! The admin token: no listener without one; every call refused without the right one.

use serde_json::Value;

use crate::client::*;
use crate::common::{self, ADMIN_TOKEN, Harness};

#[tokio::test(flavor = "multi_thread")]
async fn admin_listener_does_not_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::config_text(&dir.path().join("keygate.json"));
    for token in [None, Some(String::new())] {
        let settings = keygate::config::Settings::from_yaml(&text).unwrap();
        assert!(
            settings.admin.is_some(),
            "the config names an admin address"
        );
        let running = keygate::server::start(settings, token.clone())
            .await
            .unwrap();
        assert!(running.http.is_some() && running.grpc.is_some());
        assert_eq!(running.admin, None, "admin listener started with {token:?}");
        running.shutdown().await;
    }
    // With a token it does start.
    let settings = keygate::config::Settings::from_yaml(&text).unwrap();
    let running = keygate::server::start(settings, Some(ADMIN_TOKEN.into()))
        .await
        .unwrap();
    assert!(running.admin.is_some());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_needs_the_admin_token() {
    // 88 wrong tokens from one address: past the default budget of failures they would be
    // slowed (tests/limits.rs covers that); here every one must be a plain 401.
    let dir = tempfile::tempdir().unwrap();
    let text = common::config_text(&dir.path().join("keygate.json"))
        + "\nlimits:\n  admin_failures_per_minute: 1000\n";
    let h = Harness::start_with(dir, text).await;
    let log = new_log();
    let api = Api::new(&h, &log);
    let key = api
        .ok("POST", "/api/keys", Some(r#"{"account":"acme"}"#), 201)
        .await;
    let id = key["id"].as_str().unwrap().to_string();
    let calls: Vec<(&str, String, Option<&str>)> = vec![
        ("POST", "/api/keys".into(), Some(r#"{"account":"acme"}"#)),
        ("GET", "/api/keys?account=acme".into(), None),
        ("GET", "/api/keys".into(), None),
        ("DELETE", format!("/api/keys/{id}"), None),
        ("POST", format!("/api/keys/{id}/rotate"), Some("{}")),
        (
            "PUT",
            "/api/accounts/acme".into(),
            Some(r#"{"status":"disabled"}"#),
        ),
        ("GET", "/api/accounts/acme".into(), None),
        ("GET", "/api/accounts/acme/usage".into(), None),
        ("GET", "/api/audit?account=acme".into(), None),
        ("GET", "/api/audit".into(), None),
        ("GET", "/api/nothing".into(), None),
    ];
    let wrong = [
        vec![],
        vec![("authorization", "Bearer wrong-token")],
        vec![("authorization", "Bearer test-admin-token-012345678")],
        vec![("authorization", "Bearer test-admin-token-0123456789x")],
        vec![("authorization", "Bearer ")],
        vec![("authorization", "Basic test-admin-token-0123456789")],
        vec![("authorization", ADMIN_TOKEN)],
        vec![("x-api-key", ADMIN_TOKEN)],
    ];
    for (method, uri, body) in &calls {
        for headers in &wrong {
            let r = api.raw(method, uri, headers, *body).await;
            check_error(
                &r,
                401,
                "unauthorized",
                &format!("{method} {uri} {headers:?}"),
            );
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer realm="keygate-admin""#)
            );
        }
    }
    // Nothing happened: one key, not revoked nor rotated, no account, one audit event.
    let list = api.ok("GET", "/api/keys", None, 200).await;
    assert_eq!(ids(&list), [id.as_str()]);
    assert_eq!(list["keys"][0]["revokedAt"], Value::Null);
    assert!(list["keys"][0].get("replacedBy").is_none());
    api.err("GET", "/api/accounts/acme", None, 404, "not_found")
        .await;
    let audit = api.ok("GET", "/api/audit", None, 200).await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
    // The scheme name is case-insensitive.
    let r = api
        .raw(
            "GET",
            "/api/audit",
            &[("authorization", "bearer test-admin-token-0123456789")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    api.assert_no_key_leaked();
}
