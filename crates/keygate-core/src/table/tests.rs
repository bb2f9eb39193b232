//! The table built whole and derived from the last one.

use super::*;
use crate::key::sha256;

fn rec(id: &str, version: u64, revoked: bool) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        name: None,
        prefix: String::new(),
        account: "acme".into(),
        scheme: "s".into(),
        scopes: Some(vec!["a".into()]),
        hash: KeyHash::Sha256(sha256(id.as_bytes())),
        created_at: 0,
        expires_at: None,
        revoked_at: revoked.then_some(1),
        last_used_at: None,
        replaces: None,
        replaced_by: None,
        rate_limits: None,
        credits: None,
        credits_version: 0,
        version,
    }
}

#[test]
fn entries_stay_small() {
    // A million-key table is a million of these behind an `Arc` (16 bytes of counts) in
    // glibc chunks of 16: 120 bytes make a 144-byte chunk, 128 a 160-byte one.
    assert!(
        size_of::<KeyEntry>() <= 120,
        "KeyEntry is {} bytes",
        size_of::<KeyEntry>()
    );
    assert_eq!(size_of::<Option<Arc<KeyEntry>>>(), 8);
}

#[test]
fn changes_apply_in_version_order_and_share_the_rest() {
    let schemes = [Scheme::new(
        "s".into(),
        "x-api-key".into(),
        "p_".into(),
        crate::scheme::HashKind::Sha256,
        1,
        100,
    )];
    let plans = BTreeMap::new();
    let t = Table::build(
        &schemes,
        &plans,
        &[rec("a", 1, false), rec("b", 1, false)],
        [],
        None,
    );
    let t2 = t.with_changes(&schemes, &plans, &[rec("a", 2, true)], &[]);
    assert!(t2.by_id(b"a").unwrap().revoked);
    assert!(Arc::ptr_eq(t.by_id(b"b").unwrap(), t2.by_id(b"b").unwrap()));
    assert!(
        !t.by_id(b"a").unwrap().revoked,
        "the old snapshot is unchanged"
    );
    // Replaying an older version changes nothing.
    let t3 = t2.with_changes(&schemes, &plans, &[rec("a", 1, false)], &[]);
    assert!(t3.by_id(b"a").unwrap().revoked);
    // Scope lists and account names are shared.
    let (a, b) = (t3.by_id(b"a").unwrap(), t3.by_id(b"b").unwrap());
    assert!(Arc::ptr_eq(
        a.scopes.as_ref().unwrap(),
        b.scopes.as_ref().unwrap()
    ));
    assert!(Arc::ptr_eq(&a.account, &b.account));
    assert_eq!(t3.by_digest(&sha256(b"b")).unwrap().id, "b");
}
