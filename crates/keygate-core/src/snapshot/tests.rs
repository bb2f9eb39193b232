//! Snapshot records round-trip what the table needs, merge by version, and refuse damage.

use super::*;
use crate::credits::Credits;
use crate::limit::{Per, RateLimit, Shared};

fn rec(id: &str, version: u64) -> KeyRecord {
    serde_json::from_value(serde_json::json!({
        "id": id, "name": "shown only in listings", "prefix": "tk_live_", "account": "acme",
        "scheme": "live", "hash": KeyHash::Sha256(sha256(id.as_bytes())), "createdAt": 5,
        "version": version,
    }))
    .unwrap()
}

/// `r` as a snapshot keeps it: without the fields only listings show.
fn kept(r: &KeyRecord) -> KeyRecord {
    KeyRecord {
        name: None,
        prefix: String::new(),
        created_at: 0,
        last_used_at: None,
        replaces: None,
        replaced_by: None,
        ..r.clone()
    }
}

#[test]
fn records_round_trip_what_the_table_needs() {
    let plain = rec("k1", 3);
    let mut full = rec("a-much-longer-imported-key-id", 9);
    full.scopes = Some(vec!["images".into(), "data".into()]);
    full.expires_at = Some(-5);
    full.revoked_at = Some(1_800_000_000);
    full.hash = KeyHash::Argon2id("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into());
    full.rate_limits = Some(vec![RateLimit {
        name: "burst".into(),
        requests: 5,
        per: Per::from_secs(1).unwrap(),
        shared: Shared::Account,
    }]);
    full.credits =
        Some(serde_json::from_value::<Credits>(serde_json::json!({"remaining": 100})).unwrap());
    full.credits_version = 7;
    full.enabled = false;
    full.meta = Some(crate::meta::Meta::from([
        ("tier".to_string(), "gold".to_string()),
        ("org".to_string(), "Acme, Inc.".to_string()),
    ]));
    let mut empty_scopes = rec("k2", 1);
    empty_scopes.scopes = Some(vec![]);
    let mut bucket = Vec::new();
    for r in [&plain, &full, &empty_scopes] {
        encode(r, &mut bucket);
    }
    let back: Vec<KeyRecord> = decode(&bucket).collect::<Result<_, _>>().unwrap();
    assert_eq!(back, vec![kept(&plain), kept(&full), kept(&empty_scopes)]);
    let mut one = Vec::new();
    encode(&plain, &mut one);
    assert!(one.len() <= 80, "a SHA-256 key takes {} bytes", one.len());
}

#[test]
fn merge_keeps_the_newest_and_sorts_by_id() {
    let mut bucket = Vec::new();
    encode(&rec("b", 2), &mut bucket);
    let merged = merge(&bucket, [&rec("c", 1), &rec("b", 1), &rec("a", 1)]).unwrap();
    let ids: Vec<(String, u64)> = decode(&merged)
        .map(|r| r.map(|r| (r.id, r.version)).unwrap())
        .collect();
    assert_eq!(ids, [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]);
    let newer = merge(&merged, [&rec("b", 3)]).unwrap();
    assert_eq!(decode(&newer).nth(1).unwrap().unwrap().version, 3);
    // The same records give the same value, whatever order they came in.
    assert_eq!(
        merge(&[], [&rec("a", 1), &rec("c", 1), &rec("b", 2)]).unwrap(),
        merged
    );
}

#[test]
fn damage_is_an_error_not_a_panic() {
    let mut bucket = Vec::new();
    encode(&rec("k", 1), &mut bucket);
    for cut in 0..bucket.len() {
        let got: Vec<_> = decode(&bucket[..cut]).collect();
        assert!(
            got.iter().all(Result::is_err) && got.len() <= 1,
            "cut at {cut}"
        );
    }
    bucket[2] = 99;
    assert_eq!(
        decode(&bucket).next(),
        Some(Err(SnapshotError("has an unknown format")))
    );
    assert!(merge(&bucket, []).is_err());
}

#[test]
fn buckets_are_fixed_by_the_id() {
    // Stored snapshots depend on it: a change of the function would scatter every record.
    assert_eq!(bucket_of("000000000001"), bucket_of("000000000001"));
    assert_eq!(bucket_of("k1"), 47_466);
    let mut seen = std::collections::HashSet::new();
    for i in 0..10_000 {
        seen.insert(bucket_of(&format!("{i:012}")));
    }
    assert!(seen.len() > 9_000, "ids spread over the buckets");
}
