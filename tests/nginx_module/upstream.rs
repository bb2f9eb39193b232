//! What the module checks and what reaches the application: only locations with `keygate on`
//! that reach the access phase, and the header list with keygate's identity and every other
//! header.

use crate::common::{Harness, http_call};
use crate::support::{assert_no_worker_lost, module_on, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_locations_that_reach_the_access_phase_with_keygate_on_are_checked() {
    let h = Harness::start().await;
    let (p, echo) = module_on(&h, 1).await;
    let spoof = [
        ("x-keygate-account", "victim"),
        ("x-keygate-key-id", "forged"),
    ];
    let before = echo.count();
    // `keygate off`: not checked, and a client's identity headers still do not pass.
    let r = http_call(p.addr, "GET", "/healthz", &spoof).await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = echo.seen().pop().unwrap();
    assert!(
        !seen.headers.contains_key("x-keygate-account")
            && !seen.headers.contains_key("x-keygate-key-id"),
        "client identity reached the application: {seen:?}"
    );
    // `keygate on` (inherited from the server): checked.
    let r = http_call(p.addr, "GET", "/v1/x", &spoof).await;
    assert_eq!(r.status, 401, "{r:?}");
    // `return`: answered before the access phase, so never checked, as the config says.
    let r = http_call(p.addr, "GET", "/robots.txt", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.starts_with("User-agent"), "{r:?}");
    assert!(p.config.contains("never checked, `keygate on` or not"));
    assert_eq!(
        echo.count(),
        before + 1,
        "only /healthz reached the application"
    );
}

/// The rewrite of the header list, both ways it is done: in place (fewer headers go than keygate
/// adds) and rebuilt (more go): the application gets every other header, once, and of the
/// identity headers only keygate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_keygates_identity_and_every_other_header() {
    let h = Harness::start().await;
    let (p, echo) = module_on(&h, 1).await;
    let key = h.key("live", "acme", None).await;
    synced(&h, &p).await;
    let bearer = format!("Bearer {}", key.key);
    let other: Vec<(String, String)> = (0..12)
        .map(|i| (format!("x-other-{i}"), format!("v{i}")))
        .collect();
    for spoofed in [0, 1, 3, 12] {
        let mut headers: Vec<(&str, &str)> = vec![("authorization", &bearer)];
        for (i, (k, v)) in other.iter().enumerate() {
            headers.push((k, v));
            if i < spoofed {
                headers.push(("x-keygate-account", "victim"));
                headers.push(("x-keygate-plan", "enterprise"));
            }
        }
        let r = http_call(p.addr, "GET", &format!("/v1/rewrite/{spoofed}"), &headers).await;
        assert_eq!(r.status, 200, "{r:?}");
        let seen = echo.seen().pop().unwrap();
        let one = |name: &str| seen.headers.get(name).cloned().unwrap_or_default();
        assert_eq!(
            one("x-keygate-account"),
            vec!["acme".to_string()],
            "{seen:?}"
        );
        assert_eq!(one("x-keygate-key-id"), vec![key.id.clone()], "{seen:?}");
        assert!(one("x-keygate-plan").is_empty(), "{seen:?}");
        assert!(one("authorization").is_empty(), "{seen:?}");
        for (k, v) in &other {
            assert_eq!(
                one(k),
                vec![v.clone()],
                "{spoofed} spoofed: {k} in {seen:?}"
            );
        }
    }
    assert_no_worker_lost(&p);
}
