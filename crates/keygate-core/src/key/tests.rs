//! Generation, hashing, verification and redaction of keys.
use super::*;
use crate::scheme::SECRET_LEN;

fn scheme(hash: HashKind) -> Scheme {
    Scheme::new("s".into(), "x-api-key".into(), "tk_".into(), hash, 16, 128)
}

#[test]
fn generated_keys_have_the_scheme_shape() {
    let s = scheme(HashKind::Sha256);
    let k = generate(&s);
    assert_eq!(k.key.len(), 3 + ID_LEN + 1 + SECRET_LEN);
    assert!(k.key.starts_with("tk_"));
    assert_eq!(&k.key[3..3 + ID_LEN], k.id);
    assert!(s.shape(k.key.as_bytes()).is_some());
    let a = scheme(HashKind::Argon2id {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    });
    assert_eq!(a.shape(k.key.as_bytes()), Some(k.id.as_bytes()));
    assert_ne!(generate(&s).key.as_str(), k.key.as_str());
}

#[test]
fn base62_is_uniform_enough() {
    let s = random_base62(62 * 200);
    let mut counts = [0u32; 128];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    for &c in BASE62 {
        let n = counts[c as usize];
        assert!((100..=320).contains(&n), "{} appeared {n} times", c as char);
    }
}

#[test]
fn hashes_verify_only_their_key() {
    for kind in [
        HashKind::Sha256,
        HashKind::Argon2id {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    ] {
        let s = scheme(kind);
        let k = generate(&s);
        let h = hash_key(&s, k.key.as_bytes()).unwrap();
        assert!(verify(HashRef::of(&h), k.key.as_bytes()));
        assert!(!verify(HashRef::of(&h), generate(&s).key.as_bytes()));
        assert!(!format!("{h:?}").contains(&k.key[3..]));
    }
}

#[test]
fn hash_json_round_trips() {
    let h = KeyHash::Sha256(sha256(b"abc"));
    let j = serde_json::to_string(&h).unwrap();
    assert_eq!(
        j,
        r#"{"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#
    );
    assert_eq!(serde_json::from_str::<KeyHash>(&j).unwrap(), h);
    assert!(from_hex32("zz").is_none());
}

#[test]
fn debug_redacts() {
    let k = generate(&scheme(HashKind::Sha256));
    assert!(!format!("{k:?}").contains(&k.key[3 + ID_LEN..]));
}
