//! Every row of the decision table through the gRPC frontend (Envoy ext_authz), nginx's
//! `/auth` and Envoy HTTP mode's `/ext_authz/…`, against keygate running on port 0.

mod common;

use std::sync::Arc;

use common::{Harness, check_request};
use envoy_types::ext_authz::v3::pb::{CheckResponse, HeaderAppendAction, HttpResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use keygate::core::key::AccountStatus;
use keygate::frontend::envoy_grpc::EnvoyGrpc;
use keygate::metrics::Metrics;
use keygate::service::Authorizer;
use keygate::store::replica::Replica;

/// What every frontend must answer for one request.
struct Expect {
    status: u16,
    www: Option<&'static str>,
    body: Option<serde_json::Value>,
}

fn unauthorized(www: Option<&'static str>) -> Expect {
    Expect {
        status: 401,
        www,
        body: Some(
            serde_json::json!({"error":"unauthorized","message":"Invalid or missing API key"}),
        ),
    }
}

const CHALLENGE: Option<&str> = Some(r#"Bearer realm="keygate""#);
const INVALID: Option<&str> = Some(r#"Bearer realm="keygate", error="invalid_token""#);

fn grpc_code(status: u16) -> i32 {
    match status {
        200 => 0,
        401 => 16,
        403 => 7,
        _ => 14,
    }
}

fn denied_parts(r: &CheckResponse) -> (u16, Option<String>, Option<String>, String) {
    match r.http_response.as_ref().unwrap() {
        HttpResponse::DeniedResponse(d) => {
            let h = |n: &str| {
                d.headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == n)
                    .map(|h| h.value.clone())
            };
            (
                d.status.as_ref().unwrap().code as u16,
                h("www-authenticate"),
                h("content-type"),
                d.body.clone(),
            )
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

async fn assert_all(h: &Harness, method: &str, path: &str, headers: &[(&str, &str)], e: &Expect) {
    let what = format!(
        "{method} {path} {:?}",
        headers.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    // gRPC.
    let r = h.grpc(method, path, headers).await;
    assert_eq!(
        r.status.as_ref().unwrap().code,
        grpc_code(e.status),
        "grpc code: {what}"
    );
    let (status, www, ctype, body) = denied_parts(&r);
    assert_eq!(status, e.status, "grpc http status: {what}");
    assert_eq!(www.as_deref(), e.www, "grpc www-authenticate: {what}");
    assert_eq!(ctype.as_deref(), Some("application/json"));
    if let Some(b) = &e.body {
        assert_eq!(
            &serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            b,
            "grpc body: {what}"
        );
    }
    // nginx /auth.
    let mut nh: Vec<(&str, &str)> = vec![
        ("x-original-method", method),
        ("x-original-uri", path),
        ("host", "api.example"),
    ];
    nh.extend_from_slice(headers);
    let r = h.http("GET", "/auth", &nh).await;
    // Envoy HTTP mode.
    let r2 = h.http(method, &format!("/ext_authz{path}"), headers).await;
    for (name, r) in [("nginx", r), ("envoy_http", r2)] {
        assert_eq!(r.status, e.status, "{name} status: {what}");
        assert_eq!(
            r.header("www-authenticate"),
            e.www,
            "{name} www-authenticate: {what}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{name}: {what}"
        );
        assert_eq!(
            r.headers.get_all("www-authenticate").iter().count(),
            e.www.is_some() as usize
        );
        if let Some(b) = &e.body {
            assert_eq!(&r.json(), b, "{name} body: {what}");
        }
    }
}

fn bearer(k: &str) -> String {
    format!("Bearer {k}")
}

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

#[tokio::test]
async fn allow_sets_identity_and_strips_credentials() {
    let h = Harness::start().await;
    h.manager
        .set_account("test", "acme", Some(Some("starter".into())), Some("active"))
        .await
        .unwrap();
    let live = h
        .key("live", "acme", Some(&["usage:read", "tokens:read"]))
        .await;
    let b = bearer(&live.key);
    let spoof = [
        ("authorization", b.as_str()),
        ("x-keygate-account", "victim"),
        ("x-keygate-plan", "enterprise"),
    ];

    // gRPC
    let r = h.grpc("GET", "/v1/account/usage?day=1", &spoof).await;
    assert_eq!(r.status.as_ref().unwrap().code, 0);
    let HttpResponse::OkResponse(ok) = r.http_response.as_ref().unwrap() else {
        panic!("{r:?}")
    };
    let set: Vec<(String, String, i32)> = ok
        .headers
        .iter()
        .map(|o| {
            let h = o.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone(), o.append_action)
        })
        .collect();
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    assert_eq!(
        set,
        vec![
            ("x-keygate-key-id".into(), live.id.clone(), overwrite),
            ("x-keygate-account".into(), "acme".into(), overwrite),
            (
                "x-keygate-scopes".into(),
                "usage:read tokens:read".into(),
                overwrite
            ),
            ("x-keygate-plan".into(), "starter".into(), overwrite),
        ]
    );
    assert_eq!(
        ok.headers_to_remove,
        vec!["x-api-key".to_string(), "authorization".to_string()]
    );
    let md = &r.dynamic_metadata.as_ref().unwrap().fields;
    let s = |k: &str| match md.get(k).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(
        (s("key_id"), s("account"), s("scopes"), s("plan")),
        (
            live.id.clone(),
            "acme".into(),
            "usage:read tokens:read".into(),
            "starter".into()
        )
    );

    // nginx
    let r = h
        .http(
            "GET",
            "/auth",
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/v1/tokens/7"),
                ("authorization", &b),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-keygate-key-id"), Some(live.id.as_str()));
    assert_eq!(r.header("x-keygate-account"), Some("acme"));
    assert_eq!(r.header("x-keygate-scopes"), Some("usage:read tokens:read"));
    assert_eq!(r.header("x-keygate-plan"), Some("starter"));

    // Envoy HTTP mode
    let r = h.http("GET", "/ext_authz/v1/tokens/7", &spoof).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-keygate-account"), Some("acme"));
    assert_eq!(
        r.header("x-envoy-auth-headers-to-remove"),
        Some("x-api-key,authorization")
    );

    // An unrestricted Argon2 key on an account with no record: scopes and plan are not set,
    // so a client-sent value for them must be removed.
    let toon = h.key("toon", "solo", None).await;
    let hdrs = [
        ("x-api-key", toon.key.as_str()),
        ("x-keygate-scopes", "admin"),
    ];
    for _ in 0..2 {
        // The second call is served from the verification cache.
        let r = h.grpc("GET", "/anything", &hdrs).await;
        assert_eq!(r.status.as_ref().unwrap().code, 0);
        let HttpResponse::OkResponse(ok) = r.http_response.unwrap() else {
            panic!()
        };
        assert_eq!(ok.headers.len(), 2);
        assert_eq!(
            ok.headers_to_remove,
            [
                "x-api-key",
                "authorization",
                "x-keygate-scopes",
                "x-keygate-plan"
            ]
            .map(String::from)
            .to_vec()
        );
    }
    let r = h.http("DELETE", "/ext_authz/anything?x=1", &hdrs).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-envoy-auth-headers-to-remove"),
        Some("x-api-key,authorization,x-keygate-scopes,x-keygate-plan")
    );
    let m = h.http("GET", "/metrics", &[]).await;
    assert!(
        m.body
            .contains(r#"keygate_hash_verifications_total{result="ok"} 1"#),
        "{}",
        m.body
    );
    assert!(m.body.contains("keygate_verify_cache_hits_total 2"));
}

/// The allow goes on the wire encoded straight from the decision; decoded, it must be the
/// very message `EnvoyGrpc::decide` builds, for every shape of identity.
#[tokio::test]
async fn grpc_allow_on_the_wire_is_the_built_message() {
    let h = Harness::start().await;
    h.manager
        .set_account("test", "acme", Some(Some("starter".into())), Some("active"))
        .await
        .unwrap();
    let keys = [
        h.key("live", "acme", Some(&["usage:read", "tokens:read"]))
            .await,
        h.key("live", "acme", None).await,
        h.key("toon", "solo", None).await,
        h.key("live", "solo", Some(&["tokens:read"])).await,
    ];
    let grpc = EnvoyGrpc::new(h.running().authorizer.clone());
    for k in &keys {
        let b = bearer(&k.key);
        let presented: [(&str, &str); 2] = if k.key.starts_with("toon_") {
            [("x-api-key", &k.key), ("x-keygate-plan", "enterprise")]
        } else {
            [("authorization", &b), ("x-keygate-scopes", "admin")]
        };
        let wire = h.grpc("GET", "/v1/tokens/1", &presented).await;
        assert_eq!(wire.status.as_ref().unwrap().code, 0, "{wire:?}");
        let req = check_request("GET", "/v1/tokens/1", &presented);
        let built = grpc.decide(&req).await;
        assert_eq!(wire, built);
        let answer = grpc.answer(&req).await;
        let bytes = prost::Message::encode_to_vec(&answer);
        assert_eq!(prost::Message::encoded_len(&answer), bytes.len());
        assert_eq!(
            <CheckResponse as prost::Message>::decode(&bytes[..]).unwrap(),
            built
        );
    }
}

#[tokio::test]
async fn never_loaded_table_is_not_ready_on_every_frontend() {
    let h = Harness::start().await;
    let live = h.key("live", "acme", None).await;
    // An authorizer whose replica has never loaded (as a sidecar whose store is unreachable).
    let s = h.settings.clone();
    let auth = Arc::new(Authorizer::new(
        s.clone(),
        Arc::new(Replica::new(s.policy.clone())),
        Arc::new(Metrics::new()),
    ));
    let b = bearer(&live.key);
    let r = EnvoyGrpc::new(auth.clone())
        .decide(&check_request("GET", "/v1/x", &[("authorization", &b)]))
        .await;
    assert_eq!(r.status.as_ref().unwrap().code, 14);
    assert_eq!(denied_parts(&r).0, 503);
    for uri in ["/ext_authz/v1/x", "/auth"] {
        let req = http::Request::builder()
            .uri(uri)
            .header("x-original-uri", "/v1/x")
            .header("authorization", &b)
            .body(())
            .unwrap();
        let resp = keygate::frontend::http::handle(auth.clone(), req)
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{uri}");
    }
    let req = http::Request::builder().uri("/readyz").body(()).unwrap();
    assert_eq!(
        keygate::frontend::http::handle(auth.clone(), req)
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(h.http("GET", "/readyz", &[]).await.status, 200);
    assert_eq!(h.http("GET", "/healthz", &[]).await.status, 200);
    let _ = AccountStatus::Active;
}

#[tokio::test]
async fn hostile_http_input_gets_documented_statuses() {
    let h = Harness::start().await;
    let live = h.key("live", "acme", None).await;
    let b = bearer(&live.key);
    let big = "a".repeat(64 * 1024);
    // A 64 KiB credential is malformed, not a crash.
    let r = h
        .http(
            "GET",
            "/auth",
            &[("x-original-uri", "/x"), ("x-api-key", &big)],
        )
        .await;
    assert_eq!(r.status, 401);
    // Non-UTF-8 and control bytes in the URI: matched by no route, still needs a key first.
    let client = reqwest_like_raw(h.http_addr(), b"GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: /\xff\xfe\r\nAuthorization: Bearer \xff\r\n\r\n").await;
    assert!(client.starts_with("HTTP/1.1 401"), "{client}");
    let r = h
        .http(
            "GET",
            "/auth",
            &[("x-original-uri", "not a path"), ("authorization", &b)],
        )
        .await;
    assert_eq!(r.status, 403);
    // A thousand headers: refused by the HTTP parser, not by a crash.
    let mut many = String::from("GET /auth HTTP/1.1\r\nHost: x\r\n");
    for i in 0..1000 {
        many.push_str(&format!("x-h-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let reply = reqwest_like_raw(h.http_addr(), many.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Still serving.
    let r = h
        .http(
            "GET",
            "/auth",
            &[("x-original-uri", "/x"), ("authorization", &b)],
        )
        .await;
    assert_eq!(r.status, 200);
}

/// Sends raw bytes and returns the first response's text.
async fn reqwest_like_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn argon2_failures_are_capped_and_the_cache_follows_the_record() {
    let h = Harness::start().await;
    let toon = h.key("toon", "acme", None).await;
    let good = [("x-api-key", toon.key.as_str())];
    let metric = |body: &str, name: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let ok_runs = |h: &Harness| {
        let h = h.http_addr();
        async move {
            let body = common::http_call(h, "GET", "/metrics", &[]).await.body;
            metric(&body, r#"keygate_hash_verifications_total{result="ok"}"#)
        }
    };
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);
    assert_eq!(
        ok_runs(&h).await,
        1,
        "the second request is served from the cache"
    );

    // A change of the record (rotation with grace) drops the cached verification: the next
    // request verifies again.
    h.manager
        .rotate_key("test", &toon.id, Some(3600))
        .await
        .unwrap();
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);
    assert_eq!(ok_runs(&h).await, 2);

    // Far more wrong secrets than the per-key budget (10 a minute by default): Argon2 runs
    // for the budget only; the rest are refused without hashing.
    let mut wrong = toon.key.clone();
    wrong.replace_range(wrong.len() - 4.., "0000");
    let bad = [("x-api-key", wrong.as_str())];
    for _ in 0..40 {
        assert_eq!(h.grpc("GET", "/x", &bad).await.status.unwrap().code, 16);
    }
    let m = h.http("GET", "/metrics", &[]).await.body;
    let failed = metric(&m, r#"keygate_hash_verifications_total{result="failed"}"#);
    let throttled = metric(
        &m,
        r#"keygate_hash_verifications_total{result="throttled"}"#,
    );
    // The budget is per minute: a window may turn over once during the loop.
    assert!(failed <= 20, "{failed} Argon2 runs for wrong secrets");
    assert_eq!(failed + throttled, 40);
    // The valid key, cached, still passes during the flood.
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 0);

    // The same flood sent all at once, for another id: wrong secrets that queued for the hash
    // pool together are checked against the budget again before they run.
    let other = h.key("toon", "acme", None).await;
    let mut wrong = other.key.clone();
    wrong.replace_range(wrong.len() - 4.., "0000");
    let before = metric(
        &h.http("GET", "/metrics", &[]).await.body,
        r#"keygate_hash_verifications_total{result="failed"}"#,
    );
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (addr, wrong) = (h.running().grpc.unwrap(), wrong.clone());
        calls.spawn(
            async move { common::grpc_call(addr, "GET", "/x", &[("x-api-key", &wrong)]).await },
        );
    }
    for r in calls.join_all().await {
        assert_eq!(r.status.unwrap().code, 16);
    }
    let failed = metric(
        &h.http("GET", "/metrics", &[]).await.body,
        r#"keygate_hash_verifications_total{result="failed"}"#,
    ) - before;
    // Hashes already running when the budget ran out finish; a window may turn over once.
    let running = h.settings.verify_concurrency as u64;
    assert!(
        failed <= 2 * (10 + running - 1),
        "{failed} Argon2 runs for 40 concurrent wrong secrets"
    );
    assert_hash_threads_at_lowest_priority();

    // Revocation: refused at once, cached or not.
    h.manager.revoke_key("test", &toon.id).await.unwrap();
    assert_eq!(h.grpc("GET", "/x", &good).await.status.unwrap().code, 16);
}

/// Every hash thread of this process runs at nice 19, so decisions keep the CPU first.
fn assert_hash_threads_at_lowest_priority() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let mut seen = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
        let Some((name, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !name.ends_with("(keygate-hash-0") {
            continue;
        }
        // After the name: state, then fields 4.. of proc(5); nice is field 19.
        let nice: i32 = rest.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        assert_eq!(nice, 19, "{stat}");
        seen += 1;
    }
    assert!(seen > 0, "no hash thread found");
}
