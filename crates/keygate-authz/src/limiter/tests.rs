use std::collections::BTreeMap;

use keygate_core::key::{KeyHash, KeyRecord, sha256};
use keygate_core::limit::Per;
use keygate_core::scheme::{HashKind, Scheme};
use keygate_core::table::{KeyRef, Table};

use super::*;

fn limit(name: &str, requests: u32, per: &str, shared: Shared) -> RateLimit {
    RateLimit {
        name: name.into(),
        requests,
        per: Per::parse(per).unwrap(),
        shared,
    }
}

/// Entries for keys `ids`, all of account `acme`.
fn keys(ids: &[&str]) -> Vec<KeyRef> {
    let schemes = [Scheme::new(
        "s".into(),
        "x-api-key".into(),
        "p_".into(),
        HashKind::Sha256,
        1,
        100,
    )];
    let recs: Vec<KeyRecord> = ids
        .iter()
        .map(|id| {
            serde_json::from_value(serde_json::json!({
                "id": id, "prefix": "p_", "account": if id.starts_with('o') { "other" } else { "acme" },
                "scheme": "s", "hash": KeyHash::Sha256(sha256(id.as_bytes())), "createdAt": 0,
            }))
            .unwrap()
        })
        .collect();
    let t = Table::build(&schemes, &BTreeMap::new(), &recs, [], None);
    ids.iter()
        .map(|id| t.by_id(id.as_bytes()).unwrap().handle())
        .collect()
}

const T: i64 = 1_800_000_000;

#[test]
fn a_window_admits_its_quota_then_the_next_starts_over() {
    let l = Limiter::default();
    let k = &keys(&["a"])[0];
    let burst = [limit("burst", 5, "1s", Shared::Key)];
    for left in (0..5).rev() {
        let s = l.take(&burst, k, T).unwrap();
        assert_eq!((s.remaining, s.reset, s.quota), (left, Some(1), 5));
    }
    let refused = l.take(&burst, k, T).unwrap_err();
    assert_eq!((&*refused.name, refused.remaining), ("burst", 0));
    assert_eq!(l.take(&burst, k, T + 1).unwrap().remaining, 4);
}

#[test]
fn all_limits_must_pass_and_a_refusal_counts_against_none() {
    let l = Limiter::default();
    let k = &keys(&["a"])[0];
    let both = [
        limit("minute", 10, "1m", Shared::Key),
        limit("burst", 2, "1s", Shared::Key),
    ];
    // The tightest limit is reported: burst has fewer left.
    let s = l.take(&both, k, T).unwrap();
    assert_eq!((&*s.name, s.remaining), ("burst", 1));
    l.take(&both, k, T).unwrap();
    for _ in 0..3 {
        assert_eq!(&*l.take(&both, k, T).unwrap_err().name, "burst");
    }
    // Two allowed so far: the refused ones were taken back from `minute`.
    let s = l.take(&both, k, T + 1).unwrap();
    assert_eq!((&*s.name, s.remaining), ("burst", 1));
    l.take(&both, k, T + 1).unwrap();
    let minute = l.take(&[both[0].clone()], k, T + 1).unwrap();
    assert_eq!(minute.remaining, 5);
    assert_eq!(minute.reset, Some(reset_in(T + 1, 60)));
}

#[test]
fn shared_limits_count_the_account_and_key_limits_the_key() {
    let l = Limiter::default();
    let ks = keys(&["a", "b", "other"]);
    let daily = [limit("daily", 3, "1d", Shared::Account)];
    l.take(&daily, &ks[0], T).unwrap();
    l.take(&daily, &ks[1], T).unwrap();
    l.take(&daily, &ks[0], T).unwrap();
    assert!(l.take(&daily, &ks[1], T).is_err());
    // Another account has its own budget.
    assert_eq!(l.take(&daily, &ks[2], T).unwrap().remaining, 2);
    let own = [limit("daily", 3, "1d", Shared::Key)];
    assert_eq!(l.take(&own, &ks[0], T).unwrap().remaining, 2);
}

#[test]
fn ended_windows_are_dropped() {
    let l = Limiter::default();
    let ks = keys(&["a", "b", "c"]);
    let burst = [limit("burst", 5, "1s", Shared::Key)];
    for k in &ks {
        l.take(&burst, k, T).unwrap();
    }
    assert_eq!(l.len(), 3);
    // Every shard sweeps on its next use after SWEEP_EVERY; touch them all with one key.
    let later = T + SWEEP_EVERY + 1;
    for k in &ks {
        l.take(&burst, k, later).unwrap();
    }
    let day = [limit("day", 5, "1d", Shared::Key)];
    l.take(&day, &ks[0], later).unwrap();
    assert_eq!(l.len(), 4);
    assert!((0..SHARDS).all(|i| {
        l.shards[i]
            .lock()
            .unwrap()
            .slots
            .iter()
            .all(|s| s.window >= window(later, s.per))
    }));
}
