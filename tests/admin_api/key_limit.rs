//! The plan's key limit at its boundary and under concurrent creates, on both stores.

use serde_json::json;

use crate::client::*;
use crate::common::Harness;
use crate::common::redis_server::RedisServer;
use keygate::admin::manage::rfc3339;
use keygate::service::unix_now;

/// The plan's `max_keys` (starter: 4) at the boundary, under concurrent creation, and counting
/// only active keys.
async fn key_limit_scenario(api: &Api) {
    api.ok(
        "PUT",
        "/api/accounts/small",
        Some(r#"{"plan":"starter"}"#),
        200,
    )
    .await;
    let body = r#"{"account":"small","scheme":"live"}"#;
    let mut keys = vec![];
    for _ in 0..4 {
        keys.push(api.ok("POST", "/api/keys", Some(body), 201).await);
    }
    let msg = api
        .err("POST", "/api/keys", Some(body), 409, "key_limit_reached")
        .await;
    assert!(msg.contains('4'), "{msg}");
    // Another account is not limited by small's plan.
    api.ok("POST", "/api/keys", Some(r#"{"account":"other"}"#), 201)
        .await;
    assert_eq!(
        ids(&api.ok("GET", "/api/keys?account=small", None, 200).await).len(),
        4
    );
    let first = keys[0]["id"].as_str().unwrap();
    api.ok("DELETE", &format!("/api/keys/{first}"), None, 200)
        .await;
    let fifth = api.ok("POST", "/api/keys", Some(body), 201).await;
    assert_eq!(api.auth(fifth["key"].as_str().unwrap(), "/v1/x").await, 200);
    api.err("POST", "/api/keys", Some(body), 409, "key_limit_reached")
        .await;
    // A plan change lifts the limit.
    api.ok("PUT", "/api/accounts/small", Some(r#"{"plan":"pro"}"#), 200)
        .await;
    api.ok("POST", "/api/keys", Some(body), 201).await;
    // Refused creations leave no audit event.
    let audit = api.ok("GET", "/api/audit?account=small", None, 200).await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "account.updated",
            "key.created",
            "key.created",
            "key.created",
            "key.created",
            "key.revoked",
            "key.created",
            "account.updated",
            "key.created"
        ]
    );

    // Concurrent creations: exactly the plan's number succeed.
    api.ok(
        "PUT",
        "/api/accounts/racing",
        Some(r#"{"plan":"starter"}"#),
        200,
    )
    .await;
    let racing = r#"{"account":"racing","scheme":"live"}"#;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let api = api.clone();
        set.spawn(async move { api.call("POST", "/api/keys", Some(racing)).await.status });
    }
    let mut statuses = set.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201, 201, 201, 409, 409, 409, 409, 409, 409]);
    assert_eq!(
        ids(&api.ok("GET", "/api/keys?account=racing", None, 200).await).len(),
        4
    );

    // An expired key no longer counts.
    api.ok(
        "PUT",
        "/api/accounts/brief",
        Some(r#"{"plan":"starter"}"#),
        200,
    )
    .await;
    let brief = r#"{"account":"brief","scheme":"live"}"#;
    for _ in 0..3 {
        api.ok("POST", "/api/keys", Some(brief), 201).await;
    }
    let soon = rfc3339(unix_now() + 3);
    let body = json!({"account": "brief", "scheme": "live", "expiresAt": soon}).to_string();
    let short = api.ok("POST", "/api/keys", Some(&body), 201).await;
    api.err("POST", "/api/keys", Some(brief), 409, "key_limit_reached")
        .await;
    api.wait_auth(short["key"].as_str().unwrap(), "/v1/x", 401)
        .await;
    api.ok("POST", "/api/keys", Some(brief), 201).await;
    api.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn key_limit_applies_at_the_boundary_on_file_store() {
    let h = Harness::start().await;
    key_limit_scenario(&Api::new(&h, &new_log())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_limit_applies_at_the_boundary_on_redis() {
    let redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    key_limit_scenario(&Api::new(&h, &new_log())).await;
}
