//! Management calls racing each other, on both stores: two updates of one account at once
//! (its plan, its status) both hold, each applied to the account as the store holds it; two
//! imports of one digest at once make one key, not two.

use keygate::admin::ManageError;
use keygate::admin::manage::ImportKey;
use keygate::core::key;

use crate::common::redis_server::RedisServer;
use crate::common::{Harness, json};

async fn both_updates_hold(h: &Harness) {
    for i in 0..10 {
        let id = format!("concurrent-{i}");
        let m = &h.manager;
        m.set_account("test", &id, Some(Some("starter".into())), Some("active"))
            .await
            .unwrap();
        let (plan, status) = tokio::join!(
            m.set_account("test", &id, Some(Some("pro".into())), None),
            m.set_account("test", &id, None, Some("past_due")),
        );
        plan.unwrap();
        status.unwrap();
        let v = json(m.get_account(&id).await.unwrap());
        assert_eq!(
            (&v["plan"], &v["status"]),
            (&"pro".into(), &"past_due".into()),
            "{v}"
        );
        // The last event names the account as it ended up.
        let audit = json(m.audit(Some(&id)).await.unwrap());
        let last = audit["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last["detail"],
            serde_json::json!({"plan": "pro", "status": "past_due"}),
            "{audit}"
        );
    }
}

async fn one_key_per_digest(h: &Harness) {
    let m = &h.manager;
    for i in 0..10 {
        let digest = key::to_hex(&key::sha256(format!("tk_live_raced-{i}").as_bytes()));
        let req = || ImportKey {
            account: "raced".into(),
            scheme: "live".into(),
            sha256: digest.clone(),
            ..Default::default()
        };
        let (a, b) = tokio::join!(m.import_key("test", req()), m.import_key("test", req()));
        let made = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(made, 1, "{a:?} {b:?}");
        assert!(
            [a, b]
                .into_iter()
                .any(|r| matches!(r, Err(ManageError::Conflict(_)))),
            "the other is a conflict"
        );
    }
    let keys = m.list_keys(Some("raced")).await.unwrap().keys;
    assert_eq!(keys.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_account_updates_both_hold_on_both_stores() {
    both_updates_hold(&Harness::start().await).await;
    let redis = RedisServer::start();
    both_updates_hold(&Harness::start_redis(&redis.url(), "", true).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_imports_of_one_digest_make_one_key_on_both_stores() {
    one_key_per_digest(&Harness::start().await).await;
    let redis = RedisServer::start();
    one_key_per_digest(&Harness::start_redis(&redis.url(), "", true).await).await;
}
