//! Two updates of one account at once, one setting its plan and one its status: both hold,
//! on both stores (each is applied to the account as the store holds it, not as it was read).

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

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_account_updates_both_hold_on_both_stores() {
    both_updates_hold(&Harness::start().await).await;
    let redis = RedisServer::start();
    both_updates_hold(&Harness::start_redis(&redis.url(), "", true).await).await;
}
