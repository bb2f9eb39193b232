//! Hostile input against the real listeners of keygate running in-process: the HTTP listener
//! (`/auth` for nginx, `/ext_authz/…` for Envoy HTTP mode) fed raw bytes over TCP, and the
//! gRPC frontend fed `CheckRequest`s through a tonic client.
//!
//! Each row asserts the documented answer (401 for credential problems, 403 `no_route` for a
//! valid key with a target that is not a path, 431/400/414 where hyper refuses the request
//! before keygate sees it) and that a valid request is still allowed afterwards. A last test
//! sends hundreds of 1 MiB requests and checks the process's resident memory stays bounded.

mod common;

use std::collections::HashMap;

use common::Harness;
use common::raw::{request, send_raw};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tokio::sync::RwLock;

/// The memory test takes this exclusively, the others shared, so no other test of this file
/// allocates while it measures.
static MEMORY: RwLock<()> = RwLock::const_new(());

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

const CHALLENGE: &str = r#"Bearer realm="keygate""#;
const INVALID: &str = r#"Bearer realm="keygate", error="invalid_token""#;

/// Keys every test uses.
struct Keys {
    /// live (Bearer, sha256), every scope.
    live: String,
    /// live, only `usage:read`.
    usage: String,
    /// toon (x-api-key, Argon2id), every scope.
    toon: String,
}

async fn setup() -> (Harness, Keys) {
    let h = Harness::start().await;
    let live = h.key("live", "acme", None).await.key;
    let usage = h.key("live", "acme", Some(&["usage:read"])).await.key;
    let toon = h.key("toon", "acme", None).await.key;
    (h, Keys { live, usage, toon })
}

/// The status and `WWW-Authenticate` a row must get.
#[derive(Debug, Clone, Copy)]
struct Want {
    status: u16,
    www: Option<&'static str>,
}

const fn want(status: u16, www: Option<&'static str>) -> Want {
    Want { status, www }
}

/// A valid request must be allowed.
async fn still_serving(h: &Harness, k: &Keys) {
    let b = format!("Bearer {}", k.live);
    let r = send_raw(
        h.http_addr(),
        request(
            b"GET",
            b"/auth",
            &[
                (b"x-original-uri", b"/v1/x"),
                (b"authorization", b.as_bytes()),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, Some(200), "a valid request afterwards: {r:?}");
}

async fn http_row(h: &Harness, k: &Keys, name: &str, bytes: Vec<u8>, w: Want) {
    let r = send_raw(h.http_addr(), bytes).await;
    assert_eq!(r.status, Some(w.status), "{name}: {}", r.head);
    if w.status == 401 {
        assert_eq!(r.header("www-authenticate"), w.www, "{name}: {}", r.head);
        assert_eq!(
            r.body, r#"{"error":"unauthorized","message":"Invalid or missing API key"}"#,
            "{name}"
        );
    }
    if w.status == 403 {
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "forbidden", "{name}");
    }
    still_serving(h, k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_answers_hostile_requests_as_documented() {
    let _shared = MEMORY.read().await;
    let (h, k) = setup().await;
    let bearer = format!("Bearer {}", k.live);
    let b = bearer.as_bytes();
    let usage = format!("Bearer {}", k.usage);
    let toon = k.toon.as_bytes();
    let big64 = "a".repeat(64 * KIB);
    let auth = |uri: &[u8], headers: &[(&[u8], &[u8])]| {
        let mut hs: Vec<(&[u8], &[u8])> = vec![(b"x-original-uri", uri)];
        hs.extend_from_slice(headers);
        request(b"GET", b"/auth", &hs)
    };
    let ok = want(200, None);
    let no_key = want(401, Some(CHALLENGE));
    let bad_bearer = want(401, Some(INVALID));
    let bad_api_key = want(401, None);
    let forbidden = want(403, None);

    let long_uri = format!("/v1/{}", "p".repeat(64 * KIB));
    let bearer_big = format!("Bearer {big64}");
    let mut rows: Vec<(&str, Vec<u8>, Want)> = vec![
        // Oversized values: a credential over 1 KiB is malformed without a scan.
        (
            "64 KiB x-api-key",
            auth(b"/v1/x", &[(b"x-api-key", big64.as_bytes())]),
            bad_api_key,
        ),
        (
            "64 KiB Bearer",
            auth(b"/v1/x", &[(b"authorization", bearer_big.as_bytes())]),
            bad_bearer,
        ),
        (
            "64 KiB X-Original-URI, valid key",
            auth(long_uri.as_bytes(), &[(b"authorization", b)]),
            ok,
        ),
        (
            "64 KiB X-Original-URI, no key",
            auth(long_uri.as_bytes(), &[]),
            no_key,
        ),
        (
            "64 KiB other header, valid key",
            auth(
                b"/v1/x",
                &[(b"x-noise", big64.as_bytes()), (b"authorization", b)],
            ),
            ok,
        ),
        // Non-UTF-8 bytes (obs-text passes hyper; keygate must refuse, not crash).
        (
            "non-UTF-8 Bearer",
            auth(
                b"/v1/x",
                &[(b"authorization", b"Bearer tk_live_\xff\xfe\x80abc")],
            ),
            bad_bearer,
        ),
        (
            "non-UTF-8 x-api-key",
            auth(b"/v1/x", &[(b"x-api-key", b"toon_\xc3\x28\xa0\xa1")]),
            bad_api_key,
        ),
        (
            "non-UTF-8 X-Original-URI, valid key",
            auth(b"/v1/\xff\xfe", &[(b"authorization", b)]),
            forbidden,
        ),
        (
            "non-UTF-8 X-Original-URI, no key",
            auth(b"/v1/\xff\xfe", &[]),
            no_key,
        ),
        // Control characters: hyper refuses the request before keygate sees it.
        (
            "NUL in a credential",
            auth(b"/v1/x", &[(b"authorization", b"Bearer tk_live_\0abc")]),
            want(400, None),
        ),
        (
            "NUL in X-Original-URI",
            auth(b"/v1/\0", &[(b"authorization", b)]),
            want(400, None),
        ),
        (
            "control character in a credential",
            auth(b"/v1/x", &[(b"x-api-key", b"toon_\x01\x02")]),
            want(400, None),
        ),
        (
            "DEL in a credential",
            auth(b"/v1/x", &[(b"x-api-key", b"toon_\x7f")]),
            want(400, None),
        ),
        // Duplicates and both kinds at once.
        (
            "duplicate Authorization",
            auth(b"/v1/x", &[(b"authorization", b), (b"Authorization", b)]),
            bad_bearer,
        ),
        (
            "duplicate x-api-key",
            auth(b"/v1/x", &[(b"x-api-key", toon), (b"X-API-KEY", toon)]),
            bad_api_key,
        ),
        (
            "both credential kinds",
            auth(b"/v1/x", &[(b"x-api-key", toon), (b"authorization", b)]),
            bad_bearer,
        ),
        (
            "header name case",
            auth(b"/v1/x", &[(b"AUTHORIZATION", b)]),
            ok,
        ),
        // Targets that are not paths: a valid key gets 403 no_route, no key 401.
        (
            "X-Original-URI *",
            auth(b"*", &[(b"authorization", b)]),
            forbidden,
        ),
        (
            "X-Original-URI http:",
            auth(b"http:", &[(b"authorization", b)]),
            forbidden,
        ),
        (
            "X-Original-URI empty",
            auth(b"", &[(b"authorization", b)]),
            forbidden,
        ),
        (
            "X-Original-URI relative",
            auth(b"v1/x", &[(b"authorization", b)]),
            forbidden,
        ),
        ("X-Original-URI * without key", auth(b"*", &[]), no_key),
        ("X-Original-URI empty without key", auth(b"", &[]), no_key),
        (
            "missing X-Original-URI",
            request(b"GET", b"/auth", &[(b"authorization", b)]),
            forbidden,
        ),
        // `//evil` is a path: it normalizes to /evil, which the catch-all route takes.
        (
            "X-Original-URI //evil",
            auth(b"//evil", &[(b"authorization", b)]),
            ok,
        ),
        // Absolute-form and encoded targets reach the scoped route, not the catch-all.
        (
            "absolute-form X-Original-URI, scoped key",
            auth(
                b"http://evil.example/v1/tokens",
                &[(b"authorization", usage.as_bytes())],
            ),
            forbidden,
        ),
        (
            "encoded slash X-Original-URI, scoped key",
            auth(b"/v1%2Ftokens", &[(b"authorization", usage.as_bytes())]),
            forbidden,
        ),
        (
            "absolute-form request target",
            request(
                b"GET",
                b"http://api.example/ext_authz/v1/x",
                &[(b"authorization", b)],
            ),
            ok,
        ),
        (
            "absolute-form request target, scoped key",
            request(
                b"GET",
                b"http://api.example/ext_authz/v1/tokens",
                &[(b"authorization", usage.as_bytes())],
            ),
            forbidden,
        ),
        (
            "absolute-form request target, no key",
            request(b"GET", b"http://api.example/ext_authz/v1/x", &[]),
            no_key,
        ),
        // Odd methods.
        (
            "method FOO",
            request(b"FOO", b"/ext_authz/v1/x", &[(b"authorization", b)]),
            ok,
        ),
        (
            "method M-SEARCH",
            request(b"M-SEARCH", b"/ext_authz/v1/x", &[(b"authorization", b)]),
            ok,
        ),
        (
            "method get",
            request(b"get", b"/ext_authz/v1/x", &[(b"authorization", b)]),
            ok,
        ),
        (
            "X-Original-Method FOO",
            auth(
                b"/v1/x",
                &[(b"x-original-method", b"FOO"), (b"authorization", b)],
            ),
            ok,
        ),
        // A lowercase method does not dodge the write scope of POST /v1/tokens.
        (
            "method post on a write route, read-only key",
            request(
                b"post",
                b"/ext_authz/v1/tokens",
                &[(b"authorization", usage.as_bytes())],
            ),
            forbidden,
        ),
        (
            "method FOO without key",
            request(b"FOO", b"/ext_authz/v1/x", &[]),
            no_key,
        ),
    ];
    // A path just under the URI length limit is served; one over it is refused by hyper.
    let path_60k = format!("/ext_authz/{}", "p".repeat(60 * KIB));
    rows.push((
        "60 KiB path",
        request(b"GET", path_60k.as_bytes(), &[(b"authorization", b)]),
        ok,
    ));
    let path_64k = format!("/ext_authz/{}", "p".repeat(64 * KIB));
    rows.push((
        "64 KiB path",
        request(b"GET", path_64k.as_bytes(), &[(b"authorization", b)]),
        want(414, None),
    ));
    // Heads hyper refuses as too large.
    let big1m = "a".repeat(MIB);
    rows.push((
        "1 MiB header value",
        auth(b"/v1/x", &[(b"x-api-key", big1m.as_bytes())]),
        want(431, None),
    ));
    let names: Vec<String> = (0..1000).map(|i| format!("x-h-{i}")).collect();
    let many: Vec<(&[u8], &[u8])> = names
        .iter()
        .map(|n| (n.as_bytes(), &b"v"[..]))
        .chain([(&b"authorization"[..], b)])
        .collect();
    rows.push(("1000 headers", auth(b"/v1/x", &many), want(431, None)));

    for (name, bytes, w) in rows {
        http_row(&h, &k, name, bytes, w).await;
    }
}

// ---- gRPC ----

fn check(method: &str, path: &str, headers: HashMap<String, String>) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

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

fn hmap(headers: &[(&str, &str)]) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// gRPC code and HTTP status of a `CheckResponse`, and the denial's `WWW-Authenticate`.
fn grpc_parts(r: &CheckResponse) -> (i32, u16, Option<String>) {
    let code = r.status.as_ref().unwrap().code;
    match r.http_response.as_ref().unwrap() {
        HttpResponse::OkResponse(_) => (code, 200, None),
        HttpResponse::DeniedResponse(d) => {
            let www = d
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == "www-authenticate")
                .map(|h| h.value.clone());
            (code, d.status.as_ref().unwrap().code as u16, www)
        }
        HttpResponse::ErrorResponse(e) => panic!("keygate never answers an error: {e:?}"),
    }
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

async fn grpc_client(h: &Harness) -> AuthorizationClient<tonic::transport::Channel> {
    AuthorizationClient::connect(format!("http://{}", h.running().grpc.unwrap()))
        .await
        .unwrap()
        .max_encoding_message_size(8 * MIB)
        .max_decoding_message_size(8 * MIB)
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

// ---- memory ----

/// Resident memory of this process (keygate runs in it), in bytes.
fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_one_mebibyte_requests() {
    let _alone = MEMORY.write().await;
    let (h, k) = setup().await;
    let mut client = grpc_client(&h).await;
    let big = "a".repeat(MIB);
    let http_req = request(
        b"GET",
        b"/auth",
        &[
            (b"x-original-uri", b"/v1/x"),
            (b"authorization", big.as_bytes()),
        ],
    );
    let grpc_req = check("GET", "/v1/x", hmap(&[("authorization", &big)]));
    let round = |n: usize| {
        let (http_req, grpc_req, mut client) = (http_req.clone(), grpc_req.clone(), client.clone());
        let addr = h.http_addr();
        async move {
            for _ in 0..n {
                let r = send_raw(addr, http_req.clone()).await;
                assert_eq!(r.status, Some(431), "{}", r.head);
                let r = client.check(grpc_req.clone()).await.unwrap().into_inner();
                assert_eq!(grpc_parts(&r).1, 401);
            }
        }
    };
    // Warm up allocator caches and connection pools first.
    round(20).await;
    let before = rss();
    round(200).await;
    let after = rss();
    let growth = after.saturating_sub(before);
    eprintln!("RSS before {} MiB, after {} MiB", before / MIB, after / MIB);
    assert!(
        growth < 64 * MIB,
        "resident memory grew by {} MiB over 400 requests of 1 MiB",
        growth / MIB
    );
    still_serving(&h, &k).await;
    let r = client
        .check(check(
            "GET",
            "/v1/x",
            hmap(&[("authorization", &format!("Bearer {}", k.live))]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_parts(&r).0, 0);
}
