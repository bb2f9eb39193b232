//! Hostile input through Envoy with the module: answered as documented, and Envoy keeps
//! running.

use std::time::Duration;

use crate::common::raw::{request, send_raw};
use crate::common::{Harness, http_call, wait_until};
use crate::support::module_on;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_answered_as_documented_and_envoy_keeps_running() {
    let h = Harness::start().await;
    let (mut p, _echo) = module_on(&h).await;
    let key = h.key("live", "acme", None).await;
    let bearer = format!("Bearer {}", key.key);
    wait_until("the module to see the key", Duration::from_secs(10), || {
        let bearer = &bearer;
        let addr = p.addr;
        async move {
            http_call(addr, "GET", "/v1/x", &[("authorization", bearer)])
                .await
                .status
                == 200
        }
    })
    .await;
    let big = format!("Bearer {}", "a".repeat(60 * 1024));
    let rows: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "a 60 KiB credential",
            request(b"GET", b"/v1/x", &[(b"authorization", big.as_bytes())]),
            // Envoy's own header limit may refuse it first.
            &[401, 431],
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
            "a duplicated credential",
            request(
                b"GET",
                b"/v1/x",
                &[
                    (b"authorization", bearer.as_bytes()),
                    (b"authorization", bearer.as_bytes()),
                ],
            ),
            &[401],
        ),
        (
            "both credential kinds",
            request(
                b"GET",
                b"/v1/x",
                &[
                    (b"authorization", bearer.as_bytes()),
                    (b"x-api-key", b"toon_AAAAAAAAAAAA_x"),
                ],
            ),
            &[401],
        ),
        (
            "a path that is not UTF-8",
            request(
                b"GET",
                b"/v1/\xff",
                &[(b"authorization", bearer.as_bytes())],
            ),
            &[400, 403],
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
        assert!(p.alive(), "Envoy died on {what}:\n{}", p.logs());
    }
    let ok = http_call(p.addr, "GET", "/v1/x", &[("authorization", &bearer)]).await;
    assert_eq!(ok.status, 200, "a valid request afterwards");
    assert!(!p.logs().contains(&key.key), "the key reached Envoy's logs");
}
