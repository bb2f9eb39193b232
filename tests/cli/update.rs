//! `keys create` and `keys update`: limits and credits set and cleared, a key disabled and
//! enabled, metadata.

use crate::common::Harness;
use crate::run::{auth_status, cli, json, wait_status};

/// `keys create` and `keys update` set and clear a key's limits and credits.
#[tokio::test(flavor = "multi_thread")]
async fn cli_sets_and_clears_limits_and_credits() {
    let h = Harness::start().await;
    let created = json(&cli(
        &h,
        &[
            "keys",
            "create",
            "--account",
            "metered",
            "--scheme",
            "live",
            "--rate-limit",
            "daily=1/1d/account",
            "--credits",
            "50",
            "--refill",
            "50/monthly",
        ],
    ));
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let listed = json(&cli(&h, &["keys", "list", "--account", "metered"]));
    let view = &listed["keys"][0];
    assert_eq!(
        view["rateLimits"],
        serde_json::json!([{"name": "daily", "requests": 1, "per": "1d", "shared": "account"}])
    );
    assert_eq!(
        view["credits"],
        serde_json::json!({"remaining": 50, "refill": {"amount": 50, "interval": "monthly"}})
    );
    wait_status(&h, key, "/v1/x", 200).await;
    // The day's one request is spent: 429, given to nginx as 403.
    assert_eq!(auth_status(&h, key, "/v1/x").await, 403);

    let updated = json(&cli(
        &h,
        &[
            "keys",
            "update",
            id,
            "--clear",
            "rate-limits",
            "--name",
            "unlimited",
        ],
    ));
    assert_eq!(updated["name"], "unlimited");
    assert!(updated.get("rateLimits").is_none(), "{updated}");
    // The credits are kept, not started afresh: what is left shows the request spent (and
    // what the running server holds leased).
    let left = updated["credits"]["remaining"].as_u64().unwrap();
    assert!((40..50).contains(&left), "kept: {updated}");
    wait_status(&h, key, "/v1/x", 200).await;

    let bad = cli(&h, &["keys", "update", id, "--rate-limit", "x=5/2d"]);
    assert_eq!(bad.status.code(), Some(2), "a bad limit is a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate-limit"));
}

/// `keys update --disable/--enable/--meta/--clear meta`.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_disabled_enabled_and_given_metadata_from_the_cli() {
    let h = Harness::start().await;
    let created = json(&cli(
        &h,
        &[
            "keys",
            "create",
            "--account",
            "acme",
            "--scheme",
            "live",
            "--meta",
            "tier=gold",
        ],
    ));
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    wait_status(&h, key, "/v1/x", 200).await;
    let v = json(&cli(&h, &["keys", "update", id, "--disable"]));
    assert_eq!(v["enabled"], false);
    assert_eq!(v["meta"], serde_json::json!({"tier": "gold"}));
    wait_status(&h, key, "/v1/x", 401).await;
    let v = json(&cli(
        &h,
        &["keys", "update", id, "--enable", "--clear", "meta"],
    ));
    assert_eq!(v["enabled"], true);
    assert!(v.get("meta").is_none(), "{v}");
    wait_status(&h, key, "/v1/x", 200).await;
    let bad = cli(&h, &["keys", "update", id, "--meta", "Bad Key=x"]);
    assert_eq!(bad.status.code(), Some(2));
    let both = cli(&h, &["keys", "update", id, "--enable", "--disable"]);
    assert_eq!(both.status.code(), Some(2));
}
