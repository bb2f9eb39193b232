//! The core scenario on the file store and on Redis, and the audit trail, keys and decisions
//! across restarts of keygate (and a kill -9 of Redis).

use std::time::Duration;

use serde_json::json;

use crate::client::*;
use crate::common::redis_server::RedisServer;
use crate::common::{Harness, wait_until};
use crate::core_scenario::{Outcome, core_scenario};

/// The restart checks: the same audit trail, keys and decisions from a new keygate.
async fn check_after_restart(api: &Api, before: &Outcome) {
    assert_eq!(api.ok("GET", "/api/audit", None, 200).await, before.audit);
    let keys = api.ok("GET", "/api/keys", None, 200).await;
    assert_eq!(ids(&keys), ids(&before.keys));
    for (a, b) in keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .zip(before.keys["keys"].as_array().unwrap())
    {
        assert_eq!(a["revokedAt"], b["revokedAt"]);
        assert_eq!(a["expiresAt"], b["expiresAt"]);
    }
    api.wait_auth(&before.live, "/v1/account/usage", 200).await;
    assert_eq!(api.auth(&before.revoked, "/v1/tokens").await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_on_file_store_and_audit_survives_restart() {
    let log = new_log();
    let mut h = Harness::start().await;
    let api = Api::new(&h, &log);
    let before = core_scenario(&api).await;

    // A new keygate on the same state file (the old one's directory stays).
    h.stop().await;
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let h2 = Harness::start_with(tempfile::tempdir().unwrap(), text).await;
    let api2 = Api::new(&h2, &log);
    check_after_restart(&api2, &before).await;
    api2.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_on_redis_and_audit_survives_restarts() {
    let log = new_log();
    let mut redis = RedisServer::start();
    let mut h = Harness::start_redis(&redis.url(), "", true).await;
    let api = Api::new(&h, &log);
    let before = core_scenario(&api).await;

    // keygate restarted.
    h.stop().await;
    let h2 = Harness::start_redis(&redis.url(), "", true).await;
    let api2 = Api::new(&h2, &log);
    check_after_restart(&api2, &before).await;

    // Redis killed with SIGKILL and restarted: its AOF keeps the trail.
    redis.kill();
    redis.restart();
    wait_until(
        "audit after the Redis restart",
        Duration::from_secs(30),
        || {
            let want = before.audit.clone();
            let api2 = &api2;
            async move {
                let r = api2.call("GET", "/api/audit", None).await;
                r.status == 200 && r.json() == want
            }
        },
    )
    .await;
    check_after_restart(&api2, &before).await;
    // And takes writes again.
    api2.ok(
        "PUT",
        "/api/accounts/acme",
        Some(r#"{"status":"disabled"}"#),
        200,
    )
    .await;
    api2.wait_auth(&before.live, "/v1/account/usage", 403).await;
    let audit = api2.ok("GET", "/api/audit", None, 200).await;
    let n = before.audit["events"].as_array().unwrap().len();
    assert_eq!(audit["events"].as_array().unwrap().len(), n + 1);
    assert_eq!(audit["events"][n]["action"], "account.updated");
    assert_eq!(
        audit["events"][n]["detail"],
        json!({"plan": "pro", "status": "disabled"})
    );
    api2.assert_no_key_leaked();
}
