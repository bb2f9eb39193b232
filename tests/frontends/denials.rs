//! Every denial (missing, malformed, unknown, scope, account, revoked, expired) answered
//! alike by every frontend, and counted by frontend and reason.

use crate::common::Harness;
use crate::expect::{CHALLENGE, Expect, INVALID, assert_all, bearer, unauthorized};

#[tokio::test]
async fn denials_match_across_frontends() {
    let h = Harness::start().await;
    let live = h.key("live", "acme", Some(&["usage:read"])).await;
    let b = bearer(&live.key);

    // missing
    assert_all(
        &h,
        "GET",
        "/v1/account/usage",
        &[],
        &unauthorized(CHALLENGE),
    )
    .await;
    // a key in the query string or a cookie authenticates nothing
    let cookie = format!("key={}", live.key);
    let q = format!("/v1/account/usage?api_key={}", live.key);
    assert_all(
        &h,
        "GET",
        &q,
        &[("cookie", &cookie)],
        &unauthorized(CHALLENGE),
    )
    .await;
    // malformed: empty Bearer, wrong shape, duplicated header, both kinds at once
    assert_all(
        &h,
        "GET",
        "/v1/account/usage",
        &[("authorization", "Bearer ")],
        &unauthorized(INVALID),
    )
    .await;
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("x-api-key", "toon_nope")],
        &unauthorized(None),
    )
    .await;
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("authorization", &b), ("authorization", &b)],
        &unauthorized(INVALID),
    )
    .await;
    let toon = h.key("toon", "acme", None).await;
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("authorization", &b), ("x-api-key", &toon.key)],
        &unauthorized(INVALID),
    )
    .await;
    // unknown: well-shaped, not in the table; and a right id with a wrong secret
    let stranger = bearer("tk_live_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("authorization", &stranger)],
        &unauthorized(INVALID),
    )
    .await;
    let mut wrong = toon.key.clone();
    wrong.replace_range(wrong.len() - 4.., "zzzz");
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("x-api-key", &wrong)],
        &unauthorized(None),
    )
    .await;

    // scope
    let scope = Expect {
        status: 403,
        www: Some(r#"Bearer realm="keygate", error="insufficient_scope", scope="tokens:write""#),
        body: Some(
            serde_json::json!({"error":"forbidden","message":"API key lacks scope tokens:write"}),
        ),
    };
    assert_all(&h, "POST", "/v1/tokens", &[("authorization", &b)], &scope).await;
    // percent-encoding and encoded slashes do not dodge the scoped route
    assert_all(&h, "POST", "/v1/%74okens", &[("authorization", &b)], &scope).await;
    assert_all(&h, "POST", "/v1%2Ftokens", &[("authorization", &b)], &scope).await;

    // account: past due, and a plan without API access
    h.manager
        .set_account(
            "test",
            "acme",
            Some(Some("starter".into())),
            Some("past_due"),
        )
        .await
        .unwrap();
    let acct = Expect {
        status: 403,
        www: None,
        body: None,
    };
    assert_all(
        &h,
        "GET",
        "/v1/account/usage",
        &[("authorization", &b)],
        &acct,
    )
    .await;
    let free = h.key("live", "freeloader", None).await;
    h.manager
        .set_account("test", "freeloader", Some(Some("free".into())), None)
        .await
        .unwrap();
    let acct_body = Expect {
        status: 403,
        www: None,
        body: Some(
            serde_json::json!({"error":"forbidden","message":"API access is disabled for this account"}),
        ),
    };
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("authorization", &bearer(&free.key))],
        &acct_body,
    )
    .await;

    // revoked
    let gone = h.key("live", "other", None).await;
    h.manager.revoke_key("test", &gone.id).await.unwrap();
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("authorization", &bearer(&gone.key))],
        &unauthorized(INVALID),
    )
    .await;

    // expired: make a record's expiry pass in the store, as time would.
    let old = h.key("toon", "other", None).await;
    let keygate::store::Store::File(f) = &h.manager.store else {
        panic!("the harness uses the file store")
    };
    f.update(|s| {
        let k = s.keys.get_mut(&old.id).unwrap();
        k.expires_at = Some(keygate::service::unix_now() - 1);
        k.version += 1;
        s.revision += 1;
        Ok(())
    })
    .unwrap();
    h.running()
        .authorizer
        .replica
        .reload(&h.manager.store)
        .await
        .unwrap();
    assert_all(
        &h,
        "GET",
        "/v1/x",
        &[("x-api-key", &old.key)],
        &unauthorized(None),
    )
    .await;

    // Each denial is counted by frontend and reason.
    let m = h.http("GET", "/metrics", &[]).await;
    for line in [
        r#"keygate_decisions_total{frontend="envoy_grpc",reason="missing",result="deny"} 2"#,
        r#"keygate_decisions_total{frontend="nginx",reason="scope",result="deny"} 3"#,
        r#"keygate_decisions_total{frontend="envoy_http",reason="revoked",result="deny"} 1"#,
        r#"keygate_decisions_total{frontend="envoy_http",reason="expired",result="deny"} 1"#,
        r#"keygate_decisions_total{frontend="nginx",reason="account",result="deny"} 2"#,
    ] {
        assert!(m.body.contains(line), "metrics lack {line}");
    }
    assert!(m.body.contains("keygate_decision_duration_seconds_bucket"));
    assert!(
        !m.body.contains(&live.key[8..]),
        "a key reached the metrics"
    );
}
