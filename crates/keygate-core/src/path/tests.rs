//! The readings of hostile and ordinary paths.

use super::*;

fn n(s: &str) -> Result<String, PathError> {
    normalize_path(s).map(|c| c.into_owned())
}

fn readings(s: &str) -> Vec<String> {
    let mut r = Target::parse(s).unwrap().readings();
    r.sort();
    r
}

#[test]
fn lenient_reading() {
    let ok = |s: &str| n(s).unwrap();
    assert_eq!(ok("/v1/tokens?x=1"), "/v1/tokens");
    assert_eq!(ok("/v1/%74okens"), "/v1/tokens");
    assert_eq!(ok("/v1/./tokens"), "/v1/tokens");
    assert_eq!(ok("/v2/../v1/tokens/"), "/v1/tokens/");
    assert_eq!(ok("//v1//tokens"), "/v1/tokens");
    assert_eq!(ok("/../.."), "/");
    assert_eq!(ok("/a%3fb"), "/a%3Fb");
    assert_eq!(ok("/v1%2Ftokens"), "/v1/tokens");
    assert_eq!(ok("/v1%2ftokens%2F7"), "/v1/tokens/7");
    assert_eq!(ok("/v1%5Ctokens"), "/v1/tokens");
    assert_eq!(ok("/v1\\tokens"), "/v1/tokens");
    assert_eq!(ok("/public%2F..%2Fadmin"), "/admin");
    assert_eq!(ok("http://h.example/v1/x"), "/v1/x");
    assert_eq!(ok("HTTPS://h.example"), "/");
    assert_eq!(ok("http://h.example?/../v1/tokens"), "/");
    assert_eq!(ok("/é/%74x"), "/é/tx");
    assert_eq!(ok("/caf%C3%A9"), "/caf%C3%A9");
    // Parameters are stripped per segment before dot segments resolve.
    assert_eq!(ok("/v1/account/usage/..;/..;/tokens"), "/v1/tokens");
    assert_eq!(ok("/a/..;/b"), "/b");
    assert_eq!(ok("/v1/tokens;x=1"), "/v1/tokens");
    assert_eq!(ok("/v1;a=b/tokens;c/7"), "/v1/tokens/7");
    assert_eq!(ok("/v1/.;/tokens"), "/v1/tokens");
    assert_eq!(ok("/v1/%2e%2E/v2/%2E"), "/v2");
    // An encoded `;` is a character, not a delimiter.
    assert_eq!(ok("/v1/tokens%3Bx"), "/v1/tokens%3Bx");
    // A query or fragment carrying `../` is not part of the path.
    assert_eq!(ok("/v1/account/usage?/../../tokens"), "/v1/account/usage");
    assert_eq!(ok("/v1/account/usage#/../../tokens"), "/v1/account/usage");
}

#[test]
fn not_paths_and_malformed_paths() {
    for s in ["v1/tokens", "", "*", "http:"] {
        assert_eq!(n(s), Err(PathError::NotAPath), "{s:?}");
    }
    for s in [
        "/a\0b",
        "/a b",
        "/a\tb",
        "/a\x7f",
        "/a%zz",
        "/a%4",
        "/a%",
        "/a%00b",
        "/a%2500",
        "/v1/account/usage/%252e%252e/tokens",
        "/v1%252Ftokens",
        "/v1%252ftokens",
        "/v1%255Ctokens",
        "/a%2525",
        // Overlong UTF-8 forms of `.` and `/`, and bytes that are not UTF-8 at all.
        "/v1/%c0%ae%c0%ae/tokens",
        "/v1%c0%aftokens",
        "/a%ff",
        "/a%C3",
        // A second decoding that would reveal one, also with the digits encoded.
        "/a%25c0%25ae",
        "/v1/account/usage/%25%32%65%25%32%65/tokens",
        "/v1%25%32%66tokens",
        "/a%25%30%30",
        "/cazo1v%25e%34/^",
        "*\0",
    ] {
        assert_eq!(n(s), Err(PathError::Malformed), "{s:?}");
    }
    let long = format!("/{};", "a".repeat(MAX_AMBIGUOUS_LEN));
    assert_eq!(n(&long), Err(PathError::Malformed));
    let plain = format!("/{}", "a".repeat(2 * MAX_AMBIGUOUS_LEN));
    assert!(n(&plain).is_ok());
}

#[test]
fn plain_paths_have_one_reading_and_borrow() {
    for s in [
        "/",
        "/v1/tokens",
        "/v1/tokens/7",
        "/a.b/c..d",
        "/v1/tokens?x=%2e%2e/",
    ] {
        let t = Target::parse(s).unwrap();
        assert!(matches!(t.path(), Cow::Borrowed(_)), "{s:?}");
        assert!(t.readings().is_empty(), "{s:?}");
    }
    assert!(!Target::parse("/v1/tokens").unwrap().has_upper());
    assert!(Target::parse("/V1/tokens").unwrap().has_upper());
}

#[test]
fn other_readings() {
    // A server that keeps `..;` as a name.
    assert_eq!(
        readings("/v1/account/usage/..;/..;/tokens"),
        ["/v1/account/usage/..;/..;/tokens"]
    );
    // A server that resolves dots before decoding them.
    assert_eq!(readings("/v1/tokens/%2e%2e/x"), ["/v1/tokens/%2E%2E/x"]);
    // Servers that keep an encoded slash, and one that also keeps empty segments.
    assert_eq!(
        readings("/v1/tokens/..%2F..%2Fx"),
        ["/v1/tokens/..%2F..%2Fx"]
    );
    assert_eq!(readings("/v1/tokens//../x"), ["/v1/tokens/x"]);
    // A server on which a backslash is a character.
    assert_eq!(readings("/v1/tokens/..\\..\\x"), ["/v1/tokens/..\\..\\x"]);
    // A server that decodes twice, also when the escape's digits are encoded.
    assert_eq!(readings("/v1/%2574okens"), ["/v1/tokens"]);
    assert_eq!(readings("/v1/%25%37%34okens"), ["/v1/tokens"]);
    // An encoded `?` ends the path for a server behind a hop that forwards it decoded, also
    // when it is encoded twice.
    assert_eq!(readings("/v1/x%3F/../../tokens"), ["/v1/x"]);
    assert_eq!(readings("/v1/x%253F/../../tokens"), ["/v1/x"]);
    assert_eq!(readings("/v1/x%23/../../tokens"), ["/v1/x"]);
    // `;` with and without its parameters, merged or not.
    assert_eq!(readings("/v1/tokens;x=1"), ["/v1/tokens;x=1"]);
    assert_eq!(readings("/;x/v1"), ["//v1", "/;x/v1"]);
}

#[test]
fn never_panics_on_awkward_bytes() {
    for s in [
        "http:/é",
        "httpé//x",
        "/%",
        "/%%",
        "/é%",
        "/é;é/..;é",
        "/\\é\\..",
        "/%2F%2f%5c%5C",
        "/%252",
        "/%25",
        "/;",
        "/..;/..;",
    ] {
        if let Ok(t) = Target::parse(s) {
            let _ = t.path();
            let _ = t.readings();
        }
    }
}
