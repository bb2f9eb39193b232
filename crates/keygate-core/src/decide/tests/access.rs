//! What a valid key may do: account status and plans, scopes, every reading of a path,
//! route schemes, an unloaded table, Argon2 verification, the answers, and rate limits.

use super::*;

#[test]
fn account_not_active_or_plan_without_access_is_403() {
    let mut f = Fixture::new();
    let due = f.key("live", "due", None);
    f.account("due", Some("starter"), AccountStatus::PastDue);
    let off = f.key("live", "off", None);
    f.account("off", None, AccountStatus::Disabled);
    let free = f.key("live", "freebie", None);
    f.account("freebie", Some("free"), AccountStatus::Active);
    let gone = f.key("live", "gone", None);
    f.account(
        "gone",
        Some("plan-removed-from-config"),
        AccountStatus::Active,
    );
    let ok = f.key("live", "paying", None);
    f.account("paying", Some("starter"), AccountStatus::Active);
    let t = f.table();
    for k in [&due, &off, &free, &gone] {
        assert_eq!(
            run(&f, &t, "GET", "/x", &[("authorization", &bearer(k))]),
            Err((Reason::Account, 403))
        );
    }
    assert!(run(&f, &t, "GET", "/x", &[("authorization", &bearer(&ok))]).is_ok());
}

#[test]
fn scopes_restrict_routes() {
    let mut f = Fixture::new();
    let read = f.key("live", "acme", Some(&["usage:read", "tokens:read"]));
    let none = f.key("live", "acme", Some(&[]));
    let all = f.key("live", "acme", None);
    let t = f.table();
    let h = |k: &str| [("authorization", bearer(k))];
    let go = |k: &str, m: &str, p: &str| {
        let h = h(k);
        let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (*a, b.as_str())).collect();
        run(&f, &t, m, p, &h)
    };
    assert!(go(&read, "GET", "/v1/account/usage").is_ok());
    assert!(go(&read, "GET", "/v1/tokens/1").is_ok());
    assert_eq!(go(&read, "POST", "/v1/tokens"), Err((Reason::Scope, 403)));
    assert_eq!(go(&read, "POST", "/v1/%74okens"), Err((Reason::Scope, 403)));
    assert!(
        go(&read, "GET", "/anything").is_ok(),
        "unscoped route takes any valid key"
    );
    assert_eq!(go(&none, "GET", "/v1/tokens"), Err((Reason::Scope, 403)));
    assert!(go(&none, "GET", "/anything").is_ok());
    assert!(go(&all, "POST", "/v1/tokens").is_ok());
}

/// A path is allowed only if every way an upstream may read it is: the bypasses of a path
/// read one way by keygate and another by the upstream.
#[test]
fn every_reading_of_a_path_must_allow() {
    let mut f = Fixture::new();
    let usage = f.key("live", "acme", Some(&["usage:read"]));
    let all = f.key("live", "acme", None);
    let t = f.table();
    let go = |k: &str, p: &str| run(&f, &t, "GET", p, &[("authorization", &bearer(k))]);
    let lacks = Err((Reason::Scope, 403));
    for p in [
        // Tomcat, Jetty and Spring strip `;params` first: this is /v1/tokens.
        "/v1/account/usage/..;/..;/tokens",
        "/v1/account/usage/.;/../../tokens",
        // A server that resolves dots before decoding reads /v1/tokens/%2E%2E/x.
        "/v1/tokens/%2e%2e/x",
        "/v1/tokens/%2E%2e/x",
        // A server that keeps `;` reads /v1/tokens/..;/../x under /v1/tokens.
        "/v1/tokens/..;/../x",
        // A server on which `\` or an encoded slash is a character.
        "/v1/tokens/..\\..\\x",
        "/v1/tokens/..%2F..%2Fx",
        "/v1/tokens/..%5c..%5cx",
        // A server that keeps empty segments reads /v1/tokens/x.
        "/v1/tokens//../x",
        // A router that ignores case.
        "/V1/Tokens",
        "/v1/TOKENS/7",
        // A server that decodes twice.
        "/v1/%2574okens",
    ] {
        assert_eq!(go(&usage, p), lacks, "{p}");
        assert!(go(&all, p).is_ok(), "{p}");
    }
    // Parameters on a scoped prefix: the route, read every way, still takes the key.
    for p in [
        "/v1/account/usage;jsessionid=1",
        "/v1/account/usage;x/daily",
    ] {
        assert!(go(&usage, p).is_ok(), "{p}");
    }
    // Double encodings, NUL and overlong forms: 400 once the caller is known, 401 before.
    for p in [
        "/v1/account/usage/%252e%252e/tokens",
        "/v1/account%252Fusage",
        "/v1/%255ctokens",
        "/v1/tokens%00",
        "/v1/tokens%2500",
        "/v1/%c0%ae%c0%ae/tokens",
        "/v1%c0%aftokens",
        "/v1/%zz",
    ] {
        assert_eq!(go(&all, p), Err((Reason::BadPath, 400)), "{p}");
        assert_eq!(go(&usage, p), Err((Reason::BadPath, 400)), "{p}");
        let stranger = run(
            &f,
            &t,
            "GET",
            p,
            &[("authorization", "Bearer tk_live_nope")],
        );
        assert_eq!(stranger.map_err(|e| e.1), Err(401), "{p}");
        assert_eq!(
            run(&f, &t, "GET", p, &[]),
            Err((Reason::Missing, 401)),
            "{p}"
        );
    }
}

#[test]
fn route_schemes_and_unmatched_routes() {
    let mut f = Fixture::new();
    let toon = f.key("toon", "acme", None);
    let live = f.key("live", "acme", None);
    let t = f.table();
    assert_eq!(
        run(&f, &t, "GET", "/only-live", &[("x-api-key", &toon)]),
        Err((Reason::Missing, 401))
    );
    assert!(
        run(
            &f,
            &t,
            "GET",
            "/only-live",
            &[("authorization", &bearer(&live))]
        )
        .is_ok()
    );
    // The catch-all is bound to a host; another host matches no route.
    let req = Request {
        method: "GET",
        path: "/x",
        host: Some("other.example"),
        headers: &[("x-api-key", toon.as_str())][..],
    };
    match decide(
        &f.settings.schemes,
        &f.settings.routes,
        &t,
        &req,
        NOW,
        &Verify,
    ) {
        Outcome::Deny(d) => assert_eq!((d.reason, d.status()), (Reason::NoRoute, 403)),
        o => panic!("{o:?}"),
    }
    // An unroutable target still needs a key first.
    assert_eq!(
        run(&f, &t, "GET", "not-a-path", &[]),
        Err((Reason::Missing, 401))
    );
    assert_eq!(
        run(&f, &t, "GET", "not-a-path", &[("x-api-key", &toon)]),
        Err((Reason::NoRoute, 403))
    );
}

#[test]
fn not_loaded_is_503_and_never_allows() {
    let mut f = Fixture::new();
    let live = f.key("live", "acme", None);
    let t = Table::not_loaded();
    assert_eq!(
        run(&f, &t, "GET", "/x", &[("authorization", &bearer(&live))]),
        Err((Reason::NotReady, 503))
    );
}

#[test]
fn argon2_keys_ask_for_verification_without_cache() {
    let mut f = Fixture::new();
    let toon = f.key("toon", "acme", None);
    let t = f.table();
    let req = Request {
        method: "GET",
        path: "/",
        host: Some("api.example"),
        headers: &[("x-api-key", toon.as_str())][..],
    };
    match decide(
        &f.settings.schemes,
        &f.settings.routes,
        &t,
        &req,
        NOW,
        &NoCache,
    ) {
        Outcome::NeedsVerify { entry, key } => {
            assert_eq!(entry.id(), f.keys[0].id.as_str());
            assert_eq!(key, toon.as_bytes());
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn responses_follow_the_spec() {
    let d = |reason, bearer, presented, scope| Denial {
        presented,
        scope,
        ..Denial::new(reason, bearer)
    };
    let missing = d(Reason::Missing, true, false, None);
    assert_eq!(
        missing.body(),
        r#"{"error":"unauthorized","message":"Invalid or missing API key"}"#
    );
    assert_eq!(
        missing.www_authenticate().unwrap(),
        r#"Bearer realm="keygate""#
    );
    let unknown = d(Reason::Unknown, true, true, None);
    assert_eq!(unknown.body(), missing.body());
    assert_eq!(
        unknown.www_authenticate().unwrap(),
        r#"Bearer realm="keygate", error="invalid_token""#
    );
    assert_eq!(
        d(Reason::Unknown, false, true, None).www_authenticate(),
        None
    );
    let scope = d(Reason::Scope, true, true, Some("usage:read".into()));
    assert_eq!(scope.status(), 403);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&scope.body()).unwrap(),
        serde_json::json!({"error":"forbidden","message":"API key lacks scope usage:read"})
    );
    assert_eq!(
        scope.www_authenticate().unwrap(),
        r#"Bearer realm="keygate", error="insufficient_scope", scope="usage:read""#
    );
    let acct = d(Reason::Account, true, true, None);
    assert_eq!(acct.message(), "API access is disabled for this account");
    assert_eq!(acct.www_authenticate(), None);
    assert_eq!(d(Reason::NotReady, false, false, None).status(), 503);
    let limited = Denial {
        limit: Some(LimitState {
            name: "burst".into(),
            quota: 5,
            window: Some(1),
            remaining: 0,
            reset: Some(1),
        }),
        ..d(Reason::RateLimited, true, true, None)
    };
    assert_eq!((limited.status(), limited.grpc_code()), (429, 8));
    assert_eq!(
        limited.body(),
        r#"{"error":"rate_limited","message":"Rate limit exceeded"}"#
    );
    assert_eq!(limited.limit_headers().len(), 3);
    assert_eq!(limited.www_authenticate(), None);
    let disabled = d(Reason::Disabled, true, true, None);
    assert_eq!((disabled.status(), disabled.body()), (401, missing.body()));
    let reserved = d(Reason::BadHeader, false, true, None);
    assert_eq!(
        (reserved.status(), &*reserved.body()),
        (
            400,
            r#"{"error":"bad_request","message":"Request carries a reserved header"}"#
        )
    );
    let quota = d(Reason::Quota, false, true, None);
    assert_eq!(
        quota.body(),
        r#"{"error":"quota_exceeded","message":"Usage quota exhausted"}"#
    );
    assert_eq!(quota.error(), "quota_exceeded");
}

#[test]
fn a_keys_own_limits_replace_its_plans() {
    let mut f = Fixture::new();
    f.account("m", Some("metered"), AccountStatus::Active);
    let planned = f.key("live", "m", None);
    let own = f.key("live", "m", None);
    f.last().rate_limits = Some(vec![limit("burst", 5), limit("hour", 100)]);
    let none = f.key("live", "m", None);
    f.last().rate_limits = Some(vec![]);
    let plain = f.key("live", "nobody", None);
    let t = f.table();
    let limits = |k: &str| {
        let h = [("authorization", bearer(k))];
        let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let req = Request {
            method: "GET",
            path: "/v1/tokens",
            host: Some("api.example"),
            headers: &headers[..],
        };
        match decide(
            &f.settings.schemes,
            &f.settings.routes,
            &t,
            &req,
            NOW,
            &Verify,
        ) {
            Outcome::Allow(a) => a
                .limits
                .map(|l| l.iter().map(|l| l.name.to_string()).collect::<Vec<_>>()),
            o => panic!("{o:?}"),
        }
    };
    assert_eq!(limits(&planned), Some(vec!["minute".to_string()]));
    assert_eq!(
        limits(&own),
        Some(vec!["burst".to_string(), "hour".to_string()])
    );
    assert_eq!(limits(&none), None);
    assert_eq!(limits(&plain), None);
}
