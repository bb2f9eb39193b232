//! Who the caller is: valid keys of both schemes, and every 401.

use super::*;

#[test]
fn valid_keys_of_both_schemes_are_allowed() {
    let mut f = Fixture::new();
    let toon = f.key("toon", "acme", None);
    let live = f.key("live", "acme", None);
    let t = f.table();
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("x-api-key", &toon)]),
        Ok(f.keys[0].id.clone())
    );
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("authorization", &bearer(&live))]),
        Ok(f.keys[1].id.clone())
    );
}

#[test]
fn missing_is_401() {
    let f = Fixture::new();
    let t = f.table();
    assert_eq!(run(&f, &t, "GET", "/x", &[]), Err((Reason::Missing, 401)));
    // A key in another header or a cookie counts for nothing.
    let live = "tk_live_abcdefghijklmnopqrstu";
    assert_eq!(
        run(
            &f,
            &t,
            "GET",
            "/x?api_key=1",
            &[("cookie", live), ("x-key", live)]
        ),
        Err((Reason::Missing, 401))
    );
}

#[test]
fn malformed_is_401() {
    let mut f = Fixture::new();
    let live = f.key("live", "acme", None);
    let t = f.table();
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("x-api-key", "toon_short")]),
        Err((Reason::Malformed, 401))
    );
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("authorization", "Bearer ")]),
        Err((Reason::Malformed, 401))
    );
    let b = bearer(&live);
    assert_eq!(
        run(
            &f,
            &t,
            "GET",
            "/x",
            &[("authorization", &b), ("authorization", &b)]
        ),
        Err((Reason::Malformed, 401))
    );
}

#[test]
fn unknown_is_401() {
    let mut f = Fixture::new();
    let toon = f.key("toon", "acme", None);
    let t = f.table();
    let other = Fixture::new().key("live", "acme", None);
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("authorization", &bearer(&other))]),
        Err((Reason::Unknown, 401))
    );
    // Right id, wrong secret.
    let mut wrong = toon.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("x-api-key", &wrong)]),
        Err((Reason::Unknown, 401))
    );
}

#[test]
fn revoked_and_expired_are_401() {
    let mut f = Fixture::new();
    let a = f.key("live", "acme", None);
    f.last().revoked_at = Some(NOW - 1);
    let b = f.key("toon", "acme", None);
    f.last().expires_at = Some(NOW);
    let c = f.key("toon", "acme", None);
    f.last().expires_at = Some(NOW + 1);
    let t = f.table();
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("authorization", &bearer(&a))]),
        Err((Reason::Revoked, 401))
    );
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("x-api-key", &b)]),
        Err((Reason::Expired, 401))
    );
    assert!(run(&f, &t, "GET", "/x", &[("x-api-key", &c)]).is_ok());
}

#[test]
fn disabled_keys_are_401_until_enabled_and_keep_their_metadata() {
    let mut f = Fixture::new();
    let off = f.key("live", "acme", None);
    f.last().enabled = false;
    let toon = f.key("toon", "acme", None);
    f.last().enabled = false;
    let on = f.key("live", "acme", None);
    f.last().meta = Some(crate::meta::Meta::from([("tier".into(), "gold".into())]));
    let t = f.table();
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("authorization", &bearer(&off))]),
        Err((Reason::Disabled, 401))
    );
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("x-api-key", &toon)]),
        Err((Reason::Disabled, 401))
    );
    let id = run(&f, &t, "GET", "/x", &[("authorization", &bearer(&on))]).unwrap();
    let entry = t.by_id(id.as_bytes()).unwrap();
    assert_eq!(entry.meta().unwrap()["tier"], "gold");
    // Enabled again: allowed.
    f.keys[0].enabled = true;
    let t = f.table();
    assert!(run(&f, &t, "GET", "/x", &[("authorization", &bearer(&off))]).is_ok());
}

#[test]
fn digests_differing_in_any_byte_are_not_equal() {
    let a: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert!(crate::decide::digests_equal(&a, &a));
    for i in 0..32 {
        let mut b = a;
        b[i] ^= 0x80;
        assert!(!crate::decide::digests_equal(&a, &b), "byte {i}");
    }
}
