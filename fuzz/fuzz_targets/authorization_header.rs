//! Arbitrary bytes as the one `Authorization` value -> `credential::extract` with the example
//! config's schemes. Checked: no panic; a found key is a Bearer token of a scheme read from
//! `Authorization`, with the scheme's shape, and is what follows `Bearer ` in the value.
#![no_main]

use std::sync::OnceLock;

use keygate::config::Settings;
use keygate::core::credential::{CredentialError, extract};
use keygate::core::request::{HeaderValue, Headers};
use libfuzzer_sys::fuzz_target;

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| Settings::from_yaml(include_str!("../../config/keygate.yaml")).unwrap())
}

struct OneAuthorization<'a>(&'a [u8]);

impl Headers for OneAuthorization<'_> {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        if name == "authorization" {
            HeaderValue::One(self.0)
        } else {
            HeaderValue::Absent
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let s = settings();
    let all: Vec<usize> = (0..s.policy.schemes.len()).collect();
    match extract(&s.policy.schemes, &all, &OneAuthorization(data)) {
        Ok(p) => {
            let scheme = &s.policy.schemes[p.scheme];
            assert!(p.bearer && scheme.bearer && scheme.header == "authorization");
            assert_eq!(scheme.shape(p.key), Some(p.id));
            let v = data.trim_ascii();
            assert!(v.len() > 7 && v[..6].eq_ignore_ascii_case(b"bearer") && v[6] == b' ');
            assert_eq!(v[7..].trim_ascii_start(), p.key);
        }
        Err(CredentialError::Malformed { bearer }) => assert!(bearer),
        Err(CredentialError::Missing) => panic!("a present Authorization header is not missing"),
    }
});
