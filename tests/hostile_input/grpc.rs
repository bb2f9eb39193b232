//! The gRPC frontend fed hostile `CheckRequest`s through a tonic client, row by row: headers
//! as strings and as Envoy's raw `header_map`.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};

use crate::support::{
    CHALLENGE, INVALID, KIB, MEMORY, MIB, Want, check, grpc_client, grpc_parts, hmap, setup, want,
};

/// A request with Envoy's raw `header_map` (`encode_raw_headers: true`): values are bytes.
fn check_raw(path: &str, headers: &[(&str, &[u8])]) -> CheckRequest {
    let mut c = check("GET", path, HashMap::new());
    let http = c
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.header_map = Some(HeaderMap {
        headers: headers
            .iter()
            .map(|(k, v)| HeaderValue {
                key: k.to_string(),
                value: String::new(),
                raw_value: v.to_vec(),
            })
            .collect(),
    });
    c
}

fn grpc_code(status: u16) -> i32 {
    match status {
        200 => 0,  // OK
        400 => 3,  // INVALID_ARGUMENT
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        _ => 14,   // UNAVAILABLE
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_frontend_answers_hostile_checks_as_documented() {
    let _shared = MEMORY.read().await;
    let (h, k) = setup().await;
    let mut client = grpc_client(&h).await;
    let bearer = format!("Bearer {}", k.live);
    let b = bearer.as_str();
    let usage = format!("Bearer {}", k.usage);
    let ok = want(200, None);
    let no_key = want(401, Some(CHALLENGE));
    let bad_bearer = want(401, Some(INVALID));
    let bad_api_key = want(401, None);
    let forbidden = want(403, None);
    let bad_path = want(400, None);
    let big64 = "a".repeat(64 * KIB);
    let bearer_1m = format!("Bearer {}", "a".repeat(MIB));
    let mut many = hmap(&[("authorization", b)]);
    for i in 0..1000 {
        many.insert(format!("x-h-{i}"), "v".into());
    }
    let long_path = format!("/v1/{}", "p".repeat(64 * KIB));
    let huge_path = format!("/v1/{}", "p".repeat(MIB));
    let joined = format!("{b},{b}");
    let control = format!("Bearer {}\u{1}\u{7f}", k.live);
    let nul = format!("Bearer {}\0", k.live);

    let rows: Vec<(&str, CheckRequest, Want)> = vec![
        (
            "64 KiB x-api-key",
            check("GET", "/v1/x", hmap(&[("x-api-key", &big64)])),
            bad_api_key,
        ),
        (
            "1 MiB Bearer",
            check("GET", "/v1/x", hmap(&[("authorization", &bearer_1m)])),
            bad_bearer,
        ),
        ("1000 headers, valid key", check("GET", "/v1/x", many), ok),
        (
            "NUL after a valid key",
            check("GET", "/v1/x", hmap(&[("authorization", &nul)])),
            bad_bearer,
        ),
        (
            "control characters after a valid key",
            check("GET", "/v1/x", hmap(&[("authorization", &control)])),
            bad_bearer,
        ),
        (
            "comma-joined duplicate Authorization",
            check("GET", "/v1/x", hmap(&[("authorization", &joined)])),
            bad_bearer,
        ),
        (
            "both credential kinds",
            check(
                "GET",
                "/v1/x",
                hmap(&[("authorization", b), ("x-api-key", &k.toon)]),
            ),
            bad_bearer,
        ),
        (
            "raw header_map, valid key",
            check_raw("/v1/x", &[("authorization", b.as_bytes())]),
            ok,
        ),
        (
            "raw header_map, non-UTF-8 Bearer",
            check_raw("/v1/x", &[("authorization", b"Bearer tk_live_\xff\xfe")]),
            bad_bearer,
        ),
        (
            "raw header_map, NUL in x-api-key",
            check_raw("/v1/x", &[("x-api-key", b"toon_\0\0")]),
            bad_api_key,
        ),
        (
            "raw header_map, duplicate Authorization",
            check_raw(
                "/v1/x",
                &[
                    ("authorization", b.as_bytes()),
                    ("Authorization", b.as_bytes()),
                ],
            ),
            bad_bearer,
        ),
        (
            "64 KiB path, valid key",
            check("GET", &long_path, hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "1 MiB path, valid key",
            check("GET", &huge_path, hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "1 MiB path, no key",
            check("GET", &huge_path, hmap(&[])),
            no_key,
        ),
        (
            "method FOO",
            check("FOO", "/v1/x", hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "method M-SEARCH",
            check("M-SEARCH", "/v1/x", hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "method get",
            check("get", "/v1/x", hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "empty method",
            check("", "/v1/x", hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "method post on a write route, read-only key",
            check("post", "/v1/tokens", hmap(&[("authorization", &usage)])),
            forbidden,
        ),
        (
            "path *",
            check("GET", "*", hmap(&[("authorization", b)])),
            forbidden,
        ),
        (
            "path http:",
            check("GET", "http:", hmap(&[("authorization", b)])),
            forbidden,
        ),
        (
            "empty path",
            check("GET", "", hmap(&[("authorization", b)])),
            forbidden,
        ),
        (
            "path with NUL",
            check("GET", "/v1/\0", hmap(&[("authorization", b)])),
            bad_path,
        ),
        ("path * without key", check("GET", "*", hmap(&[])), no_key),
        (
            "multi-byte characters where a scheme would end",
            check("GET", "/v1/x/é", hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "multi-byte characters in a path that needs decoding",
            check("GET", "/v1/é//%41", hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "path //evil",
            check("GET", "//evil", hmap(&[("authorization", b)])),
            ok,
        ),
        (
            "absolute-form path, scoped key",
            check(
                "GET",
                "https://evil.example/v1/tokens",
                hmap(&[("authorization", &usage)]),
            ),
            forbidden,
        ),
        (
            "empty CheckRequest",
            CheckRequest { attributes: None },
            no_key,
        ),
    ];
    for (name, req, w) in rows {
        let r = client.check(req).await.unwrap().into_inner();
        let (code, status, www) = grpc_parts(&r);
        assert_eq!(
            (code, status),
            (grpc_code(w.status), w.status),
            "{name}: {r:?}"
        );
        if status == 401 {
            assert_eq!(www.as_deref(), w.www, "{name}");
        }
        // Still serving.
        let r = client
            .check(check("GET", "/v1/x", hmap(&[("authorization", b)])))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grpc_parts(&r).0, 0, "a valid check after {name}");
    }
}
