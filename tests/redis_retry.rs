//! A write to Redis retried after its reply was lost: the key it made is found as written,
//! which is the write's success (the caller still shows the secret once), not a duplicate;
//! another record under a taken id still is one.

mod common;

use common::redis_server::RedisServer;
use keygate::core::key::{self, KeyHash, KeyRecord};
use keygate::store::state::{AuditEvent, Change, ChangeError};
use keygate::store::{Store, StoreError};

fn create(id: &str, secret: &str) -> (Change, AuditEvent) {
    let hash = KeyHash::Sha256(key::sha256(secret.as_bytes()));
    let at = 1_800_000_000;
    let record = KeyRecord::new(
        id.into(),
        format!("tk_live_{id}"),
        "acme".into(),
        "live".into(),
        hash,
        at,
    );
    let event = AuditEvent {
        at,
        actor: "test".into(),
        action: "key.created".into(),
        account: "acme".into(),
        key_id: Some(id.into()),
        detail: None,
    };
    let change = Change::CreateKey {
        record,
        max_active: None,
    };
    (change, event)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_applied_again_is_its_own_success_on_redis() {
    let redis = RedisServer::start();
    let h = common::Harness::start_redis(&redis.url(), "", true).await;
    let store = Store::open(&h.settings.store).unwrap();
    let (change, event) = create("retried00001", "tk_live_retried00001_secret");
    let first = store.apply(change.clone(), event.clone()).await.unwrap();
    // What a retry after a lost reply does: the same write again.
    let again = store.apply(change, event).await.unwrap();
    assert!(again >= first, "{again} < {first}");
    // One key, one event.
    let keys = store.keys_of(Some("acme")).await.unwrap();
    assert_eq!(keys.len(), 1);
    let audit = store.audit(Some("acme")).await.unwrap();
    assert_eq!(audit.len(), 1);
    // Another key under the same id is a duplicate.
    let (other, event) = create("retried00001", "tk_live_retried00001_other");
    assert!(matches!(
        store.apply(other, event).await,
        Err(StoreError::Change(ChangeError::DuplicateKey))
    ));
}
