//! `PATCH /api/keys/{id}`: fields changed in place and in force at once, `null` clearing,
//! the errors, and the audit trail; on both stores.

use serde_json::{Value, json};

use crate::client::*;
use crate::common::Harness;
use crate::common::redis_server::RedisServer;

async fn patch(api: &Api, id: &str, body: Value, status: u16) -> Value {
    api.ok(
        "PATCH",
        &format!("/api/keys/{id}"),
        Some(&body.to_string()),
        status,
    )
    .await
}

async fn update_scenario(api: &Api) {
    let body = json!({
        "account": "patchy",
        "scheme": "live",
        "rateLimits": [{"name": "hourly", "requests": 2, "per": "1h"}],
    });
    let k = api
        .ok("POST", "/api/keys", Some(&body.to_string()), 201)
        .await;
    let (id, key) = (k["id"].as_str().unwrap(), k["key"].as_str().unwrap());
    assert_eq!(api.auth(key, "/v1/x").await, 200);
    assert_eq!(api.auth(key, "/v1/x").await, 200);
    // The third in the hour is 429, which /auth gives nginx as 403 (X-Keygate-Status: 429).
    assert_eq!(api.auth(key, "/v1/x").await, 403);

    // `[]`: no limits at all; the key passes again.
    let v = patch(api, id, json!({"rateLimits": []}), 200).await;
    assert_eq!(v["rateLimits"], json!([]));
    api.wait_auth(key, "/v1/x", 200).await;

    // Scopes restrict at once and `null` lifts the restriction; the name changes alone.
    let v = patch(
        api,
        id,
        json!({"scopes": ["usage:read"], "name": "renamed"}),
        200,
    )
    .await;
    assert_eq!(
        (v["name"].as_str(), &v["scopes"]),
        (Some("renamed"), &json!(["usage:read"]))
    );
    assert_eq!(v["rateLimits"], json!([]), "fields not sent are kept");
    api.wait_auth(key, "/v1/tokens", 403).await;
    let v = patch(api, id, json!({"scopes": null, "rateLimits": null}), 200).await;
    assert_eq!(
        (&v["scopes"], v["name"].as_str()),
        (&Value::Null, Some("renamed"))
    );
    assert!(v.get("rateLimits").is_none(), "{v}");
    api.wait_auth(key, "/v1/tokens", 200).await;

    // Credits are set and shown; a bad value names its field.
    let credits = json!({"remaining": 10, "refill": {"amount": 10, "interval": "daily"}});
    let v = patch(api, id, json!({"credits": credits}), 200).await;
    assert_eq!(v["credits"], credits);

    let uri = format!("/api/keys/{id}");
    for (bad, field) in [
        (
            json!({"rateLimits": [{"name": "x", "requests": 0, "per": "1s"}]}),
            "rateLimits",
        ),
        (
            json!({"rateLimits": [{"name": "x", "requests": 1, "per": "2d"}]}),
            "per",
        ),
        (
            json!({"credits": {"remaining": 1, "refill": {"amount": 0, "interval": "daily"}}}),
            "credits",
        ),
        (json!({"expiresAt": "2001-01-01T00:00:00Z"}), "expiresAt"),
        (json!({"enabled": "sometimes"}), "enabled"),
    ] {
        let msg = api
            .err("PATCH", &uri, Some(&bad.to_string()), 400, "bad_request")
            .await;
        assert!(msg.contains(field), "{bad}: {msg}");
    }
    api.err(
        "PATCH",
        "/api/keys/nosuchkey000",
        Some("{}"),
        404,
        "not_found",
    )
    .await;
    api.ok("DELETE", &uri, None, 200).await;
    api.err("PATCH", &uri, Some(r#"{"name":"late"}"#), 409, "conflict")
        .await;

    let audit = api.ok("GET", "/api/audit?account=patchy", None, 200).await;
    let updates = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.updated")
        .count();
    assert_eq!(updates, 4, "one event per accepted update: {audit}");
    api.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_change_in_place_on_file_store() {
    let h = Harness::start().await;
    update_scenario(&Api::new(&h, &new_log())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_change_in_place_on_redis() {
    let redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    update_scenario(&Api::new(&h, &new_log())).await;
}
