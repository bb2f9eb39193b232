//! Arbitrary UTF-8 -> `Settings::from_yaml`: must answer Ok or a list of problems, never panic
//! (nor overflow the stack or run away on aliases); what it accepts keeps the documented
//! rules on schemes.
#![no_main]

use keygate::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Settings::from_yaml(text) {
        Ok(s) => {
            // What validation promises: unique scheme names, prefixes of 1-32 [A-Za-z0-9_-].
            for (i, sc) in s.policy.schemes.iter().enumerate() {
                assert!(
                    (1..=32).contains(&sc.key_prefix.len()),
                    "{:?}",
                    sc.key_prefix
                );
                assert!(
                    sc.key_prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "{:?}",
                    sc.key_prefix
                );
                assert!(
                    s.policy.schemes[..i].iter().all(|o| o.name != sc.name),
                    "{:?}",
                    sc.name
                );
            }
        }
        Err(e) => assert!(!e.problems().is_empty() || !e.to_string().is_empty()),
    }
});
