//! `PATCH /api/keys/{id}`: fields changed in place and in force at once, `null` clearing,
//! disabling and enabling, metadata, the errors, the audit trail with what changed, and the
//! usage report's refusals by reason; on both stores.

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
    assert_eq!(v["enabled"], true);

    // Disabled: 401 until enabled again (`null` is enabled); unlike a revocation, reversible.
    let v = patch(api, id, json!({"enabled": false}), 200).await;
    assert_eq!(v["enabled"], false);
    api.wait_auth(key, "/v1/x", 401).await;
    patch(api, id, json!({"enabled": null}), 200).await;
    api.wait_auth(key, "/v1/x", 200).await;

    // Metadata: set, shown, replaced whole; bad entries name the field.
    let v = patch(
        api,
        id,
        json!({"meta": {"tier": "gold", "org": "Acme, Inc."}}),
        200,
    )
    .await;
    assert_eq!(v["meta"], json!({"org": "Acme, Inc.", "tier": "gold"}));
    let v = patch(api, id, json!({"meta": null}), 200).await;
    assert!(v.get("meta").is_none(), "{v}");

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
        (json!({"meta": {"Tier": "gold"}}), "meta"),
        (json!({"meta": {"tier": "a\nb"}}), "meta"),
        (json!({"meta": {"tier": 5}}), "meta"),
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
    let updates: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.updated")
        .collect();
    assert_eq!(updates.len(), 8, "one event per accepted update: {audit}");
    // Each says what it changed.
    assert_eq!(updates[4]["detail"], json!({"changed": {"enabled": false}}));
    assert_eq!(updates[0]["detail"], json!({"changed": {"rateLimits": []}}));

    // The usage report counts the refusals of this known key by reason: the 429 of the
    // hourly limit and the 401s while it was disabled.
    let usage = "/api/accounts/patchy/usage";
    crate::common::wait_until(
        "refusals in the usage report",
        std::time::Duration::from_secs(10),
        || async {
            let u = api.ok("GET", usage, None, 200).await;
            let k = &u["keys"][0];
            k["denied"]["rate_limited"] == 1
                && k["denied"]["disabled"].as_u64() >= Some(1)
                && k["deniedDays"].as_object().is_some_and(|d| d.len() == 1)
        },
    )
    .await;
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
