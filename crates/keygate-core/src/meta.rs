//! A key's metadata: a flat map of string entries that an allow forwards to the upstream as
//! `<meta_prefix><key>` headers (and, in Envoy, as dynamic metadata). The limits keep every
//! entry a valid header name and value, and keep a key's entries small enough to ride along
//! on every request.

use std::collections::BTreeMap;

/// A key's metadata, in key order.
pub type Meta = BTreeMap<String, String>;

/// Most entries a key may carry.
pub const MAX_ENTRIES: usize = 16;
/// Longest entry key, in bytes (`[a-z0-9_-]`).
pub const MAX_KEY: usize = 32;
/// Longest entry value, in characters.
pub const MAX_VALUE: usize = 256;

/// Why a metadata map is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("at most {MAX_ENTRIES} entries")]
    TooMany,
    #[error("keys are 1 to {MAX_KEY} characters of a-z, 0-9, _ and -")]
    BadKey,
    #[error("values are at most {MAX_VALUE} characters, without control characters")]
    BadValue,
}

/// Checks a metadata map against the limits. The value check keeps every value a valid
/// header value: visible characters, spaces and tabs inside, nothing else below 0x20.
pub fn check(m: &Meta) -> Result<(), (String, MetaError)> {
    if m.len() > MAX_ENTRIES {
        return Err((String::new(), MetaError::TooMany));
    }
    for (k, v) in m {
        let key_ok = (1..=MAX_KEY).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !key_ok {
            return Err((k.clone(), MetaError::BadKey));
        }
        let value_ok = v.chars().count() <= MAX_VALUE
            && v.chars().all(|c| c == '\t' || !c.is_control())
            && v.trim_matches([' ', '\t']).len() == v.len();
        if !value_ok {
            return Err((k.clone(), MetaError::BadValue));
        }
    }
    Ok(())
}

/// Whether a request header `name` (any case) falls under `prefix` (lowercase): a header the
/// client may not send, since keygate alone sets such headers.
pub fn is_reserved(name: impl AsRef<[u8]>, prefix: &str) -> bool {
    let name = name.as_ref();
    !prefix.is_empty()
        && name.len() >= prefix.len()
        && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The header an entry goes upstream as: `<prefix><key>` (keys are lowercase already).
pub fn header_name(prefix: &str, key: &str) -> String {
    let mut n = String::with_capacity(prefix.len() + key.len());
    n.push_str(prefix);
    n.push_str(key);
    n
}

/// Of the request's header `names`, those under `prefix` that an allow with `meta` does not
/// set: what a data plane removes, so that only keygate's values reach the upstream. (The
/// ones it sets it overwrites, and a removal after the write would undo it.)
pub fn spoofed<'a>(
    names: impl IntoIterator<Item = &'a [u8]>,
    prefix: &str,
    meta: Option<&Meta>,
) -> Vec<&'a [u8]> {
    let mut out: Vec<&'a [u8]> = Vec::new();
    for n in names {
        let Ok(name) = std::str::from_utf8(n) else {
            continue;
        };
        if !is_reserved(name, prefix) {
            continue;
        }
        let rest = &name[prefix.len()..];
        let set = meta.is_some_and(|m| {
            m.keys()
                .any(|k| k.len() == rest.len() && k.eq_ignore_ascii_case(rest))
        });
        if !set && !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> Meta {
        Meta::from([(k.to_string(), v.to_string())])
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(check(&one("tier", "gold plan")), Ok(()));
        assert_eq!(check(&one("a-b_9", "")), Ok(()));
        assert_eq!(check(&one(&"k".repeat(32), &"é".repeat(256))), Ok(()));
        for k in ["", "Tier", "a.b", "a b", &"k".repeat(33)] {
            assert_eq!(
                check(&one(k, "v")).unwrap_err().1,
                MetaError::BadKey,
                "{k:?}"
            );
        }
        for v in ["a\nb", "a\rb", " lead", "trail ", "nul\0", &"v".repeat(257)] {
            assert_eq!(
                check(&one("k", v)).unwrap_err().1,
                MetaError::BadValue,
                "{v:?}"
            );
        }
        let many: Meta = (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(check(&many).unwrap_err().1, MetaError::TooMany);
    }

    #[test]
    fn reserved_names_match_the_prefix_in_any_case() {
        assert!(is_reserved("x-keygate-meta-tier", "x-keygate-meta-"));
        assert!(is_reserved("X-Keygate-Meta-Tier", "x-keygate-meta-"));
        assert!(!is_reserved("x-keygate-met", "x-keygate-meta-"));
        assert!(!is_reserved("x-keygate-account", "x-keygate-meta-"));
        assert!(!is_reserved("anything", ""));
    }

    #[test]
    fn spoofed_headers_are_the_reserved_ones_keygate_does_not_set() {
        let meta = one("tier", "gold");
        let names: [&[u8]; 5] = [
            b"x-keygate-meta-tier",
            b"X-Keygate-Meta-Org",
            b"x-keygate-meta-org",
            b"content-type",
            b"x-keygate-meta-",
        ];
        let p = "x-keygate-meta-";
        assert_eq!(
            spoofed(names, p, Some(&meta)),
            [&b"X-Keygate-Meta-Org"[..], b"x-keygate-meta-"]
        );
        assert_eq!(spoofed(names, p, None).len(), 3);
        assert_eq!(header_name(p, "tier"), "x-keygate-meta-tier");
    }
}
