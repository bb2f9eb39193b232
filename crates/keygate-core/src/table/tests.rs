//! The table built whole and derived from the last one.

use super::*;
use crate::key::{KeyHash, sha256};

fn rec(id: &str, version: u64, revoked: bool) -> KeyRecord {
    let hash = KeyHash::Sha256(sha256(id.as_bytes()));
    let mut r = KeyRecord::new(id.into(), String::new(), "acme".into(), "s".into(), hash, 0);
    r.scopes = Some(vec!["a".into()]);
    r.revoked_at = revoked.then_some(1);
    r.version = version;
    r
}

fn schemes() -> [Scheme; 2] {
    let s =
        |name: &str, hash| Scheme::new(name.into(), "x-api-key".into(), "p_".into(), hash, 1, 100);
    [
        s("s", crate::scheme::HashKind::Sha256),
        s(
            "t",
            crate::scheme::HashKind::Argon2id {
                memory_kib: 8,
                iterations: 1,
                parallelism: 1,
            },
        ),
    ]
}

/// Everything a decision can read of a table, in id order, for comparing two tables.
fn dump(t: &Table, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| match t.by_id(id.as_bytes()) {
            None => format!("{id}: -"),
            Some(e) => {
                let by_digest = e
                    .digest()
                    .map(|d| t.by_digest(d).map(|f| f.id().to_string()));
                format!(
                    "{}: {} {:?} {:?} {} {} {} {:?} {:?} {:?} {by_digest:?}",
                    e.id(),
                    e.account(),
                    e.scopes().map(|s| &s.joined),
                    e.hash(),
                    matches!(e.hash(), HashRef::Argon2id(p) if p.starts_with("$argon2id$")),
                    e.revoked(),
                    e.version(),
                    e.is_expired(1_000),
                    e.limits().map(|l| l.len()),
                    e.credits().map(|c| c.1),
                )
            }
        })
        .collect()
}

#[test]
fn entries_stay_small() {
    // Ten million of these make the table: the target is 100 bytes a key with its two index
    // slots.
    assert_eq!(size_of::<KeyEntry>(), 72);
}

#[test]
fn changes_apply_in_version_order_and_share_the_rest() {
    let schemes = schemes();
    let plans = BTreeMap::new();
    let mut recs: Vec<KeyRecord> = (0..CHUNK + 10)
        .map(|i| rec(&format!("k{i}"), 1, false))
        .collect();
    let t = Table::build(&schemes, &plans, &recs, [], None);
    let last = format!("k{}", CHUNK + 3);
    let t2 = t.with_changes(&schemes, &plans, &[rec(&last, 2, true)], &[]);
    assert!(t2.by_id(last.as_bytes()).unwrap().revoked());
    assert!(
        !t.by_id(last.as_bytes()).unwrap().revoked(),
        "the old snapshot is unchanged"
    );
    // The chunk the change did not touch is shared; the one it touched was copied.
    assert!(Arc::ptr_eq(t.entries.part(0), t2.entries.part(0)));
    assert!(!Arc::ptr_eq(t.entries.part(1), t2.entries.part(1)));
    // Replaying an older version changes nothing.
    let t3 = t2.with_changes(&schemes, &plans, &[rec(&last, 1, false)], &[]);
    assert!(t3.by_id(last.as_bytes()).unwrap().revoked());
    // Keys of one account and scope list share one owner, in a build and after a change.
    let (a, b) = (t3.by_id(b"k0").unwrap(), t3.by_id(last.as_bytes()).unwrap());
    assert!(Arc::ptr_eq(a.owner(), b.owner()));
    assert_eq!(t3.by_digest(&sha256(b"k1")).unwrap().id(), "k1");
    recs[0].scopes = None;
    let t4 = t3.with_changes(
        &schemes,
        &plans,
        &[KeyRecord {
            version: 2,
            ..recs[0].clone()
        }],
        &[],
    );
    assert_eq!(t4.by_id(b"k0").unwrap().scopes(), None);
    assert_eq!(t4.len(), CHUNK + 10);
}

#[test]
fn a_table_derived_by_changes_equals_one_built_whole() {
    let schemes = schemes();
    let plans = BTreeMap::new();
    let phc = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_string();
    let mut recs: Vec<KeyRecord> = (0..1500)
        .map(|i| {
            let mut r = rec(&format!("key{i:05}"), 1, i % 7 == 0);
            r.account = format!("acct{}", i % 13);
            r.scopes = (i % 3 != 0).then(|| vec![format!("s{}", i % 5), "b".into()]);
            r.expires_at = (i % 11 == 0).then_some(500 + i as i64);
            if i % 17 == 0 {
                r.scheme = "t".into();
                r.hash = KeyHash::Argon2id(phc.clone());
            }
            if i % 19 == 0 {
                r.id = format!("an-id-longer-than-thirteen-bytes-{i}");
            }
            r
        })
        .collect();
    let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
    let base = Table::build(&schemes, &plans, &recs[..1000], [], None);
    // New keys, and changes to held ones: revoked, re-scoped, moved to another account,
    // another digest, another scheme.
    for (n, r) in recs.iter_mut().enumerate().take(1000).step_by(9) {
        r.version = 2;
        r.revoked_at = Some(5);
        r.account = format!("moved{}", n % 4);
        r.scopes = Some(vec!["c".into()]);
        if n % 2 == 0 {
            r.hash = KeyHash::Sha256(sha256(format!("new{n}").as_bytes()));
            r.scheme = "s".into();
        }
    }
    let mut derived = base.clone();
    for batch in recs.chunks(64) {
        derived = derived.with_changes(&schemes, &plans, batch, &[]);
    }
    let whole = Table::build(&schemes, &plans, &recs, [], None);
    assert_eq!(dump(&derived, &ids), dump(&whole, &ids));
    assert_eq!((derived.len(), whole.len()), (1500, 1500));
    // A digest that changed no longer finds its key.
    assert!(derived.by_digest(&sha256(b"key00018")).is_none());
    assert_eq!(
        derived.by_digest(&sha256(b"new18")).unwrap().id(),
        "key00018"
    );
    // The base snapshot still answers as it did.
    assert_eq!(base.len(), 1000);
    assert_eq!(
        base.by_digest(&sha256(b"key00018")).unwrap().id(),
        "key00018"
    );
}

#[test]
fn expiry_and_versions_are_kept_in_32_bits() {
    let schemes = schemes();
    let mut r = rec("k", u64::from(u32::MAX) + 5, false);
    r.expires_at = Some(-3);
    let mut never = rec("n", 1, false);
    never.expires_at = Some(i64::MAX);
    let t = Table::build(&schemes, &BTreeMap::new(), &[r, never], [], None);
    let k = t.by_id(b"k").unwrap();
    assert!(k.is_expired(0));
    assert_eq!(k.version(), u64::from(u32::MAX));
    let n = t.by_id(b"n").unwrap();
    assert!(!n.is_expired(i64::from(u32::MAX) - 2));
    assert!(t.by_id(b"missing").is_none() && t.by_id(&[0xff]).is_none());
}

#[test]
fn accounts_are_found_and_replaced_by_version() {
    let plans = BTreeMap::new();
    let acct = |id: &str, version| Account {
        id: id.into(),
        plan: None,
        status: AccountStatus::Active,
        updated_at: 0,
        version,
    };
    let t = Table::build(
        &schemes(),
        &plans,
        [],
        &(0..3000)
            .map(|i| acct(&format!("a{i}"), 1))
            .collect::<Vec<_>>(),
        None,
    );
    let past_due = Account {
        status: AccountStatus::PastDue,
        ..acct("a7", 2)
    };
    let t2 = t.with_changes(&schemes(), &plans, &[], std::slice::from_ref(&past_due));
    assert_eq!(t2.account("a7").unwrap().status, AccountStatus::PastDue);
    assert_eq!(t.account("a7").unwrap().status, AccountStatus::Active);
    let t3 = t2.with_changes(&schemes(), &plans, &[], &[acct("a7", 1)]);
    assert_eq!(t3.account("a7").unwrap().status, AccountStatus::PastDue);
    assert!(t3.account("a2999").is_some() && t3.account("a3000").is_none());
}

#[test]
fn a_bulk_load_indexes_like_one_key_at_a_time() {
    let schemes = schemes();
    let recs: Vec<KeyRecord> = (0..3000)
        .map(|i| {
            let mut r = rec(&format!("bulk{i}"), 1, i % 5 == 0);
            r.account = format!("a{}", i % 7);
            r
        })
        .collect();
    let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
    let one_by_one = Table::build(&schemes, &BTreeMap::new(), &recs, [], None);
    let mut bulk = Table::with_capacity(recs.len());
    let mut maker = Maker::default();
    for r in &recs {
        bulk.push_entry(maker.record(&schemes, r, None, None).unwrap());
    }
    assert!(bulk.by_id(b"bulk7").is_none(), "not indexed yet");
    bulk.index_pending();
    assert_eq!(dump(&bulk, &ids), dump(&one_by_one, &ids));
    // A change after more bulk records indexes them first.
    bulk.push_entry(
        maker
            .record(&schemes, &rec("late", 1, false), None, None)
            .unwrap(),
    );
    bulk.upsert_key(&schemes, &rec("bulk7", 2, true), None);
    assert!(bulk.by_id(b"late").is_some() && bulk.by_id(b"bulk7").unwrap().revoked());
    assert_eq!(bulk.len(), 3001);
}
