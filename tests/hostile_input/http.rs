//! The HTTP listener (`/auth` for nginx, `/ext_authz/…` for Envoy HTTP mode) fed hostile raw
//! bytes over TCP, row by row.

use crate::common::Harness;
use crate::common::raw::{request, send_raw};
use crate::support::{
    CHALLENGE, INVALID, KIB, Keys, MEMORY, MIB, Want, setup, still_serving, want,
};

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
