//! Key shapes per format, checksums, and that generated keys pass their own scheme's check.

use super::*;
use crate::key::generate;

fn live() -> Scheme {
    Scheme::new(
        "live".into(),
        "authorization".into(),
        "tk_live_".into(),
        HashKind::Sha256,
        16,
        128,
    )
}

fn hex48() -> KeyFormat {
    KeyFormat {
        id: false,
        alphabet: Alphabet::Hex,
        length: 48,
    }
}

#[test]
fn a_hex_format_without_id_generates_and_checks_exactly_that_shape() {
    let s = live().with_format(hex48());
    for _ in 0..20 {
        let k = generate(&s);
        let body = k.key.strip_prefix("tk_live_").unwrap();
        assert_eq!(body.len(), 48);
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!k.key.contains(&k.id), "the id is not part of the key");
        assert_eq!(s.shape(k.key.as_bytes()), Some(&b""[..]));
    }
    let ok = format!("tk_live_{}", "0123456789abcdef".repeat(3));
    assert!(s.shape(ok.as_bytes()).is_some());
    for bad in [
        format!("tk_live_{}", "0123456789abcdef".repeat(3).to_uppercase()),
        format!("tk_live_{}", &"0123456789abcdef".repeat(3)[1..]),
        format!("tk_live_{}0", "0123456789abcdef".repeat(3)),
        format!("tk_live_{}g", &"0123456789abcdef".repeat(3)[1..]),
    ] {
        assert_eq!(s.shape(bad.as_bytes()), None, "{bad}");
    }
    // Without the explicit format, the lenient check takes both.
    assert!(
        live()
            .shape(ok.to_uppercase().replace("TK_LIVE_", "tk_live_").as_bytes())
            .is_some()
    );
}

#[test]
fn a_format_with_id_and_a_longer_secret() {
    let s = Scheme::new(
        "toon".into(),
        "x-api-key".into(),
        "toon_".into(),
        HashKind::Argon2id {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        },
        16,
        128,
    )
    .with_format(KeyFormat {
        id: true,
        alphabet: Alphabet::Base62,
        length: 36,
    });
    let k = generate(&s);
    assert_eq!(k.key.len(), "toon_".len() + ID_LEN + 1 + 36);
    assert_eq!(s.shape(k.key.as_bytes()), Some(k.id.as_bytes()));
    let short = format!("toon_{}_{}", k.id, "a".repeat(SECRET_LEN));
    assert_eq!(s.shape(short.as_bytes()), None);
}

#[test]
fn checksums_catch_any_changed_character_before_a_lookup() {
    let s = live().with_format(hex48()).with_checksum();
    let k = generate(&s);
    assert_eq!(k.key.len(), "tk_live_".len() + 48 + CHECKSUM_LEN);
    assert!(s.shape(k.key.as_bytes()).is_some());
    let key = k.key.as_bytes();
    for at in "tk_live_".len()..key.len() {
        let mut bad = key.to_vec();
        bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
        assert_eq!(s.shape(&bad), None, "changed at {at}");
    }
    assert_eq!(s.shape(&key[..key.len() - 1]), None);
    // The default format, checksummed, and the lenient sha256 check with a checksum.
    let d = live().with_checksum();
    let k = generate(&d);
    assert_eq!(
        k.key.len(),
        "tk_live_".len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
    );
    assert!(d.shape(k.key.as_bytes()).is_some());
    let mut bad = k.key.as_bytes().to_vec();
    bad[10] ^= 1;
    assert_eq!(d.shape(&bad), None);
}

#[test]
fn checksums_are_crc32_in_six_base62_digits() {
    // CRC-32 of "123456789" is 0xCBF43926 = 3421780262 = 3·62^5 + … in base62.
    let sum = checksum(b"123456789");
    let mut n: u64 = 0;
    for d in sum {
        n = n * 62 + BASE62.iter().position(|b| *b == d).unwrap() as u64;
    }
    assert_eq!(n, 0xCBF4_3926);
    let mut zero = [0; CHECKSUM_LEN];
    base62(0, &mut zero);
    assert_eq!(&zero, b"000000");
    base62(u32::MAX, &mut zero);
    assert_eq!(&zero, b"4gfFC3");
}
