//! Credits: exactly as many allowed requests as a key has, then 429 `quota`; balances kept
//! across restarts of keygate and of Redis; refills; and exact totals across three sidecars
//! hammering one key on one real redis-server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Harness, HttpReply, wait_until};
use keygate::admin::ManageError;
use keygate::admin::manage::{CreateKey, UpdateKey};
use keygate::core::credits::Balance;
use keygate::core::credits::{Credits, Interval, Refill};
use keygate::store::Store;
use keygate::store::state::CreditLease;
use serde_json::json;

async fn credit_key(h: &Harness, credits: Credits) -> (String, String) {
    let create = CreateKey {
        account: "metered".into(),
        scheme: Some("live".into()),
        credits: Some(credits),
        ..Default::default()
    };
    let k = h.manager.create_key("test", create).await.unwrap();
    (k.id, format!("Bearer {}", k.key))
}

fn credits(n: u64) -> Credits {
    Credits {
        remaining: n,
        refill: None,
        balance_of: None,
    }
}

async fn auth(h: &Harness, bearer: &str) -> HttpReply {
    h.http(
        "GET",
        "/auth",
        &[("authorization", bearer), ("x-original-uri", "/v1/x")],
    )
    .await
}

/// Requests until the first refusal: how many were allowed; the refusal must be `quota`.
async fn spend_all(h: &Harness, bearer: &str) -> u64 {
    let mut allowed = 0;
    loop {
        let r = auth(h, bearer).await;
        if r.status == 200 {
            allowed += 1;
            assert!(allowed <= 1_000, "credits never ran out");
            continue;
        }
        assert_eq!(
            (r.status, r.header("x-keygate-status")),
            (403, Some("429")),
            "{r:?}"
        );
        let body: serde_json::Value =
            serde_json::from_str(r.header("x-keygate-body").unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"error": "quota_exceeded", "message": "Usage quota exhausted"})
        );
        assert_eq!(r.header("ratelimit"), Some(r#""credits";r=0"#), "{r:?}");
        let policy = r.header("ratelimit-policy").unwrap_or_default();
        assert!(policy.starts_with(r#""credits";q="#), "{r:?}");
        return allowed;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_the_credits_are_allowed_and_survive_a_restart() {
    let mut h = Harness::start().await;
    let (_, bearer) = credit_key(&h, credits(5)).await;
    let mut left = Vec::new();
    for _ in 0..5 {
        let r = auth(&h, &bearer).await;
        assert_eq!(r.status, 200, "{r:?}");
        left.push(r.header("ratelimit").unwrap().to_string());
    }
    let want: Vec<String> = (0..5)
        .rev()
        .map(|n| format!(r#""credits";r={n}"#))
        .collect();
    assert_eq!(left, want);
    assert_eq!(spend_all(&h, &bearer).await, 0);

    // A key spent in part, keygate restarted: the rest, no more, no less.
    let (ten_id, ten) = credit_key(&h, credits(10)).await;
    assert_eq!(left_of(&h, &ten_id).await, 10);
    for _ in 0..3 {
        assert_eq!(auth(&h, &ten).await.status, 200);
    }
    h.stop().await;
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let h2 = Harness::start_with(tempfile::tempdir().unwrap(), text).await;
    // The key's view shows what is left, not the amount set.
    assert_eq!(left_of(&h2, &ten_id).await, 7);
    assert_eq!(spend_all(&h2, &ten).await, 7);
    assert_eq!(left_of(&h2, &ten_id).await, 0);
}

async fn left_of(h: &Harness, id: &str) -> u64 {
    let list = h.manager.list_keys(Some("metered")).await.unwrap();
    let view = list.keys.iter().find(|k| k.id == id).unwrap();
    view.credits.as_ref().unwrap().remaining
}

/// The store's balance rules, through each backend: never below zero, refilled in a new
/// period, started afresh by a newer setting, unspent credits given back.
async fn balance_rules(store: &Store) {
    let day = 20_000 * 86_400;
    let c = Credits {
        remaining: 3,
        refill: Some(Refill {
            amount: 5,
            interval: Interval::Daily,
        }),
        balance_of: None,
    };
    let lease = |version: u64, now: i64| CreditLease {
        id: "k1".into(),
        credits: c.clone(),
        version,
        period: now.div_euclid(86_400),
        now,
    };
    let b = |version, period, remaining| Balance {
        version,
        period,
        remaining,
    };
    assert_eq!(
        store.take_credits(&lease(1, day), 2).await.unwrap(),
        (2, b(1, 20_000, 1))
    );
    assert_eq!(
        store.take_credits(&lease(1, day), 2).await.unwrap(),
        (1, b(1, 20_000, 0))
    );
    assert_eq!(
        store.take_credits(&lease(1, day), 1).await.unwrap(),
        (0, b(1, 20_000, 0))
    );
    store.give_back_credits(&lease(1, day), 2).await.unwrap();
    // Given back to another period: nothing.
    store
        .give_back_credits(&lease(1, day - 86_400), 9)
        .await
        .unwrap();
    assert_eq!(
        store.take_credits(&lease(1, day), 5).await.unwrap(),
        (2, b(1, 20_000, 0))
    );
    // The next day: refilled to the amount.
    let next = day + 86_400;
    assert_eq!(
        store.take_credits(&lease(1, next), 1).await.unwrap(),
        (1, b(1, 20_001, 4))
    );
    // An instance whose clock still reads the day before takes from the new day's balance: no
    // second refill, however the two alternate.
    for left in [3, 2] {
        assert_eq!(
            store.take_credits(&lease(1, next - 1), 1).await.unwrap(),
            (1, b(1, 20_001, left))
        );
        assert_eq!(
            store.take_credits(&lease(1, next), 0).await.unwrap(),
            (0, b(1, 20_001, left))
        );
    }
    // Set again: the set amount; an instance that has not seen it yet keeps the new balance.
    assert_eq!(
        store.take_credits(&lease(2, next), 1).await.unwrap(),
        (1, b(2, 20_001, 2))
    );
    assert_eq!(
        store.take_credits(&lease(1, next), 1).await.unwrap(),
        (1, b(2, 20_001, 1))
    );
}

#[tokio::test]
async fn balances_follow_the_same_rules_on_both_stores() {
    let h = Harness::start().await;
    balance_rules(&Store::open(&h.settings.store).unwrap()).await;
    let redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    balance_rules(&Store::open(&h.settings.store).unwrap()).await;
}

/// Three sidecars on one Redis, one key hammered on all three at once: exactly its credits
/// are allowed in total. Then keygate and Redis restarted (Redis by SIGKILL): the balance is
/// what it was.
#[tokio::test(flavor = "multi_thread")]
async fn credits_are_exact_across_sidecars_and_survive_redis_restarts() {
    let mut redis = RedisServer::start();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(Arc::new(Harness::start_redis(&redis.url(), "", true).await));
    }
    let (_, bearer) = credit_key(&fleet[0], credits(100)).await;
    for h in &fleet {
        let b = bearer.clone();
        wait_until(
            "the key on every sidecar",
            Duration::from_secs(5),
            || async {
                h.http(
                    "GET",
                    "/auth",
                    &[("authorization", &b), ("x-original-uri", "/%252e")],
                )
                .await
                .status
                    == 403
            },
        )
        .await;
    }
    let mut set = tokio::task::JoinSet::new();
    for h in &fleet {
        for _ in 0..2 {
            let (h, b) = (h.clone(), bearer.clone());
            set.spawn(async move { spend_all(&h, &b).await });
        }
    }
    let total: u64 = set.join_all().await.into_iter().sum();
    assert_eq!(total, 100, "allowed across three sidecars");

    // Part of a new key spent; every keygate and Redis restarted; the rest is there.
    let (fifty_id, fifty) = credit_key(&fleet[0], credits(50)).await;
    for _ in 0..20 {
        assert_eq!(auth(&fleet[1], &fifty).await.status, 200);
    }
    for h in fleet.drain(..) {
        Arc::into_inner(h).unwrap().stop().await;
    }
    redis.kill();
    redis.restart();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    assert_eq!(left_of(&h, &fifty_id).await, 30);
    assert_eq!(spend_all(&h, &fifty).await, 30);
}

/// `GET uri` through the sidecar's nginx front with `bearer`.
async fn auth_at(h: &Harness, bearer: &str, uri: &str) -> HttpReply {
    h.http(
        "GET",
        "/auth",
        &[("authorization", bearer), ("x-original-uri", uri)],
    )
    .await
}

/// A key rotated with a grace period: the old key and its replacement spend one balance (what
/// was left, never refilled by the rotation), a second rotation keeps it, setting credits on
/// the replacement starts its own; the replacement keeps the key's metadata and, when the key
/// was disabled, stays disabled.
async fn rotation_keeps_the_balance(h: &Harness) {
    let create = CreateKey {
        account: "metered".into(),
        scheme: Some("live".into()),
        scopes: Some(vec!["usage:read".into()]),
        credits: Some(credits(10)),
        meta: Some([("tier".to_string(), "gold".to_string())].into()),
        ..Default::default()
    };
    let old = h.manager.create_key("test", create).await.unwrap();
    let old_bearer = format!("Bearer {}", old.key);
    for _ in 0..4 {
        assert_eq!(
            auth_at(h, &old_bearer, "/v1/account/usage").await.status,
            200
        );
    }
    let new = h
        .manager
        .rotate_key("test", &old.id, Some(3600))
        .await
        .unwrap();
    let new_bearer = format!("Bearer {}", new.key);
    // Known to the table once a route outside its scopes is refused for scope (spending
    // nothing), not as unknown.
    wait_until(
        "the replacement in the table",
        Duration::from_secs(5),
        || async { auth_at(h, &new_bearer, "/v1/tokens").await.status == 403 },
    )
    .await;
    let mut allowed = 0;
    for i in 0..16 {
        let b = if i % 2 == 0 { &old_bearer } else { &new_bearer };
        let r = auth_at(h, b, "/v1/account/usage").await;
        match (r.status, r.header("x-keygate-status")) {
            (200, _) => allowed += 1,
            (403, Some("429")) => {}
            other => panic!("request {i}: {other:?} {r:?}"),
        }
    }
    assert_eq!(allowed, 6, "the two keys share the 6 credits left");
    // Credits set again on the first key: the balance they share starts afresh, and the
    // replacement spends from it too.
    let update: UpdateKey = serde_json::from_value(json!({"credits": {"remaining": 4}})).unwrap();
    h.manager.update_key("test", &old.id, update).await.unwrap();
    wait_until(
        "the new balance in force",
        Duration::from_secs(5),
        || async { auth_at(h, &new_bearer, "/v1/account/usage").await.status == 200 },
    )
    .await;
    assert_eq!(spend_all_at(h, &new_bearer).await, 3);
    let view = |id: String| async move {
        let list = h.manager.list_keys(Some("metered")).await.unwrap();
        list.keys.into_iter().find(|k| k.id == id).unwrap()
    };
    let v = view(new.id.clone()).await;
    let c = v.credits.as_ref().unwrap();
    assert_eq!(
        (c.remaining, c.balance_of.as_deref()),
        (0, Some(old.id.as_str()))
    );
    assert_eq!(common::json(&v)["meta"], json!({"tier": "gold"}));

    // A second rotation: still the first key's balance.
    let newer = h.manager.rotate_key("test", &new.id, None).await.unwrap();
    let c = view(newer.id.clone()).await.credits.unwrap();
    assert_eq!((c.remaining, c.balance_of), (0, Some(old.id.clone())));

    // Credits set on it: a balance of its own, of exactly that amount.
    let update: UpdateKey = serde_json::from_value(json!({"credits": {"remaining": 3}})).unwrap();
    h.manager
        .update_key("test", &newer.id, update)
        .await
        .unwrap();
    let newer_bearer = format!("Bearer {}", newer.key);
    wait_until(
        "the new credits in force",
        Duration::from_secs(5),
        || async { auth_at(h, &newer_bearer, "/v1/account/usage").await.status == 200 },
    )
    .await;
    assert_eq!(spend_all_at(h, &newer_bearer).await, 2);
    let c = view(newer.id.clone()).await.credits.unwrap();
    assert_eq!((c.remaining, c.balance_of), (0, None));

    // Nobody sets a balance of another key.
    let create = CreateKey {
        account: "metered".into(),
        credits: Some(Credits {
            balance_of: Some(old.id.clone()),
            ..credits(1)
        }),
        ..Default::default()
    };
    assert!(matches!(
        h.manager.create_key("test", create).await,
        Err(ManageError::BadRequest {
            field: "credits",
            ..
        })
    ));

    // A disabled key's replacement is disabled too.
    let update: UpdateKey = serde_json::from_value(json!({"enabled": false})).unwrap();
    h.manager
        .update_key("test", &newer.id, update)
        .await
        .unwrap();
    let last = h.manager.rotate_key("test", &newer.id, None).await.unwrap();
    assert_eq!(
        common::json(view(last.id.clone()).await)["enabled"],
        json!(false)
    );
}

/// Requests to a scoped route until the first refusal: how many were allowed.
async fn spend_all_at(h: &Harness, bearer: &str) -> u64 {
    let mut allowed = 0;
    while auth_at(h, bearer, "/v1/account/usage").await.status == 200 {
        allowed += 1;
        assert!(allowed <= 1_000, "credits never ran out");
    }
    allowed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_shares_its_balance_on_both_stores() {
    rotation_keeps_the_balance(&Harness::start().await).await;
    let redis = RedisServer::start();
    rotation_keeps_the_balance(&Harness::start_redis(&redis.url(), "", true).await).await;
}
