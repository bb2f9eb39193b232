//! Hostile input through nginx with the module: answered as documented, and no worker is
//! lost.

use crate::common::raw::{request, send_raw};
use crate::common::{Harness, http_call};
use crate::support::{assert_no_worker_lost, module_on, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_answered_as_documented_and_no_worker_is_lost() {
    let h = Harness::start().await;
    let (mut p, echo) = module_on(&h, 2).await;
    let key = h.key("live", "acme", None).await;
    synced(&h, &p).await;
    let bearer = format!("Bearer {}", key.key);
    let b = bearer.as_bytes();
    let big = format!("Bearer {}", "a".repeat(7 * 1024));
    let spoofed: Vec<(&[u8], &[u8])> = (0..200)
        .map(|i| {
            (
                b"x-keygate-account".as_slice(),
                if i % 2 == 0 { b"a".as_slice() } else { b"b" },
            )
        })
        .chain([(b"authorization".as_slice(), b)])
        .collect();
    let body_post = {
        let mut r = request(b"POST", b"/v1/x", &[(b"content-length", b"65536")]);
        r.extend(std::iter::repeat_n(b'x', 65536));
        r
    };
    let rows: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "a 7 KiB credential",
            request(b"GET", b"/v1/x", &[(b"authorization", big.as_bytes())]),
            &[401],
        ),
        (
            "a credential past nginx's header buffers",
            request(
                b"GET",
                b"/v1/x",
                &[(b"authorization", "a".repeat(64 * 1024).as_bytes())],
            ),
            &[400, 494],
        ),
        (
            "non-UTF-8 bytes in the credential",
            request(
                b"GET",
                b"/v1/x",
                &[(b"authorization", b"Bearer tk_live_\xff\xfe\x80")],
            ),
            &[401, 400],
        ),
        (
            "both credential kinds",
            request(
                b"GET",
                b"/v1/x",
                &[
                    (b"authorization", b),
                    (b"x-api-key", b"toon_AAAAAAAAAAAA_x"),
                ],
            ),
            &[401],
        ),
        (
            "a path that is not UTF-8",
            request(b"GET", b"/v1/\xff", &[(b"authorization", b)]),
            &[400, 403],
        ),
        (
            "a NUL in the path",
            request(b"GET", b"/v1/%00", &[(b"authorization", b)]),
            &[400],
        ),
        (
            "an absolute-form target",
            request(b"GET", b"http://api.example/v1/x", &[(b"authorization", b)]),
            &[200],
        ),
        (
            "200 spoofed identity headers",
            request(b"GET", b"/v1/x", &spoofed),
            &[200],
        ),
        ("a refused request with a 64 KiB body", body_post, &[401]),
        ("HEAD, refused", request(b"HEAD", b"/v1/x", &[]), &[401]),
        (
            "an unknown method",
            request(b"BREW", b"/v1/x", &[(b"authorization", b)]),
            &[200, 403, 405],
        ),
    ];
    for (what, bytes, want) in rows {
        let r = send_raw(p.addr, bytes).await;
        assert!(
            r.status.is_some_and(|s| want.contains(&s)),
            "{what}: {:?}\n{}",
            r.status,
            r.head
        );
        assert!(p.alive(), "nginx died on {what}:\n{}", p.logs());
    }
    // The spoofed identity never reached the application, only keygate's.
    for seen in echo.seen().into_iter().filter(|s| s.uri.contains("/v1/")) {
        let accounts = seen
            .headers
            .get("x-keygate-account")
            .cloned()
            .unwrap_or_default();
        assert_eq!(accounts, vec!["acme".to_string()], "{seen:?}");
    }
    let ok = http_call(p.addr, "GET", "/v1/x", &[("authorization", &bearer)]).await;
    assert_eq!(ok.status, 200, "a valid request afterwards");
    assert!(!p.logs().contains(&key.key), "the key reached nginx's logs");
    assert_no_worker_lost(&p);
}
