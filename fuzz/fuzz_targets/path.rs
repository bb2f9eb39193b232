//! Arbitrary UTF-8 -> `keygate::core::path::Target`: every reading of a request target.
//!
//! Checked: no panic; a target is refused, not a path, or read; the lenient reading is a path
//! with no empty or dot segment, no `;` or `\`, and reads the same again (a fixed point); the
//! other readings are paths, differ from it and from each other, and number at most 256.
#![no_main]

use keygate::core::path::{PathError, Target, normalize_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let t = match Target::parse(text) {
        Ok(t) => t,
        Err(PathError::NotAPath | PathError::Malformed) => return,
    };
    let lenient = t.path();
    assert!(lenient.starts_with('/'), "{text:?} -> {lenient:?}");
    assert!(!lenient.contains("//"), "{text:?} -> {lenient:?}");
    assert!(!lenient.contains([';', '\\']), "{text:?} -> {lenient:?}");
    for seg in lenient.split('/') {
        assert!(seg != "." && seg != "..", "{text:?} -> {lenient:?}");
    }
    assert!(
        !lenient.bytes().any(|b| b < 0x21 || b == 0x7f),
        "{text:?} -> {lenient:?}"
    );
    assert_eq!(
        normalize_path(&lenient).as_deref(),
        Ok(&*lenient),
        "not a fixed point: {text:?}"
    );
    let others = t.readings();
    assert!(others.len() <= 256, "{} readings of {text:?}", others.len());
    for (i, r) in others.iter().enumerate() {
        assert!(r.starts_with('/'), "{text:?} -> {r:?}");
        assert_ne!(r.as_str(), &*lenient, "{text:?}");
        assert!(!others[..i].contains(r), "{text:?}: {r:?} twice");
    }
});
