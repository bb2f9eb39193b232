//! Bytes -> a set of headers with `x-api-key`/`authorization` values -> `credential::extract`
//! with the example config's schemes.
//!
//! Input: the first byte picks the schemes the route accepts; the rest is split at `\n` into
//! headers, each line's first byte picking the header name and the remaining bytes being the
//! value. Checked: no panic; a found key lies inside its header value, is of an accepted
//! scheme, has its scheme's shape and is at most 1 KiB; the `&[(&str, &str)]` header slice and
//! a byte-valued header list agree whenever the values are UTF-8.
#![no_main]

use std::sync::OnceLock;

use keygate::config::Settings;
use keygate::core::credential::extract;
use keygate::core::request::{HeaderValue, Headers};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "x-api-key",
    "authorization",
    "X-API-Key",
    "Authorization",
    "AUTHORIZATION",
    "cookie",
    "x-api-keys",
    "proxy-authorization",
];

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| Settings::from_yaml(include_str!("../../config/keygate.yaml")).unwrap())
}

/// Header values as bytes, as Envoy's raw header map carries them.
struct Raw<'a>(Vec<(&'static str, &'a [u8])>);

impl Headers for Raw<'_> {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        let mut found = HeaderValue::Absent;
        for (k, v) in &self.0 {
            if k.eq_ignore_ascii_case(name) {
                if found != HeaderValue::Absent {
                    return HeaderValue::Many;
                }
                found = HeaderValue::One(v);
            }
        }
        found
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let s = settings();
    let n = s.policy.schemes.len();
    let accepted: Vec<usize> = match pick % 4 {
        0 => (0..n).collect(),
        1 => vec![0],
        2 => vec![n - 1],
        _ => (0..n).rev().collect(),
    };
    let headers: Vec<(&'static str, &[u8])> = rest
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let (&name, value) = line.split_first()?;
            Some((NAMES[name as usize % NAMES.len()], value))
        })
        .collect();
    let raw = Raw(headers.clone());
    let got = extract(&s.policy.schemes, &accepted, &raw);
    if let Ok(p) = &got {
        assert!(accepted.contains(&p.scheme), "scheme not accepted");
        let scheme = &s.policy.schemes[p.scheme];
        assert!(p.key.len() <= 1024);
        assert!(p.key.starts_with(scheme.key_prefix.as_bytes()));
        assert_eq!(scheme.shape(p.key), Some(p.id));
        assert!(
            headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(&scheme.header)
                    && v.windows(p.key.len()).any(|w| w == p.key)),
            "the key is not inside its header"
        );
        assert_eq!(p.bearer, scheme.bearer);
    }
    // The header slice the core implements for &str pairs gives the same answer.
    let utf8: Option<Vec<(&str, &str)>> = headers
        .iter()
        .map(|(k, v)| std::str::from_utf8(v).ok().map(|v| (*k, v)))
        .collect();
    if let Some(pairs) = utf8 {
        let other = extract(&s.policy.schemes, &accepted, &pairs[..]);
        match (&got, &other) {
            (Ok(a), Ok(b)) => assert!(a.scheme == b.scheme && a.key == b.key && a.id == b.id),
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("the header slice and the byte headers disagree"),
        }
    }
});
