//! Requests the API refuses (400, 404, 405) change nothing.

use serde_json::{Value, json};

use crate::client::*;
use crate::common::Harness;
use keygate::admin::manage::rfc3339;
use keygate::service::unix_now;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_with_400_and_change_nothing() {
    let h = Harness::start().await;
    let log = new_log();
    let api = Api::new(&h, &log);
    api.ok("PUT", "/api/accounts/acme", Some(r#"{"plan":"pro"}"#), 200)
        .await;
    let key = api
        .ok(
            "POST",
            "/api/keys",
            Some(r#"{"account":"acme","scheme":"live"}"#),
            201,
        )
        .await;
    let id = key["id"].as_str().unwrap().to_string();
    let rotate = format!("/api/keys/{id}/rotate");
    let past = rfc3339(unix_now() - 60);
    let now = rfc3339(unix_now());
    let long_name = "n".repeat(201);
    let many_scopes: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    let create = |v: Value| Some(v.to_string());
    // (method, uri, body, the word the message must contain)
    let cases: Vec<(&str, &str, Option<String>, &str)> = vec![
        // Bad JSON.
        ("POST", "/api/keys", Some("{".into()), "JSON"),
        ("POST", "/api/keys", Some("not json".into()), "JSON"),
        (
            "POST",
            "/api/keys",
            Some(r#"{"account":"acme"}x"#.into()),
            "JSON",
        ),
        ("POST", "/api/keys", Some(r#"{"account":7}"#.into()), "JSON"),
        (
            "POST",
            "/api/keys",
            Some(r#"{"name":"x"}"#.into()),
            "account",
        ),
        ("POST", "/api/keys", None, "account"),
        ("PUT", "/api/accounts/acme", Some("{".into()), "JSON"),
        ("POST", &rotate, Some("{".into()), "JSON"),
        (
            "POST",
            &rotate,
            Some(r#"{"gracePeriodSeconds":-1}"#.into()),
            "JSON",
        ),
        (
            "POST",
            &rotate,
            Some(r#"{"gracePeriodSeconds":"1h"}"#.into()),
            "JSON",
        ),
        // Unknown fields.
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "colour": "red"})),
            "colour",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "expires_at": "2030-01-01T00:00:00Z"})),
            "expires_at",
        ),
        ("POST", &rotate, create(json!({"grace": 60})), "grace"),
        (
            "PUT",
            "/api/accounts/acme",
            create(json!({"plan": "pro", "tier": 1})),
            "tier",
        ),
        // Unknown scheme and plan.
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "scheme": "gold"})),
            "scheme",
        ),
        (
            "PUT",
            "/api/accounts/acme",
            create(json!({"plan": "gold"})),
            "plan",
        ),
        // Bad values.
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "scopes": ["usage read"]})),
            "scopes",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "scopes": [""]})),
            "scopes",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "scopes": ["a\"b"]})),
            "scopes",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "scopes": many_scopes})),
            "scopes",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "expiresAt": "tomorrow"})),
            "expiresAt",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "expiresAt": "2030-02-30T00:00:00Z"})),
            "expiresAt",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "expiresAt": past})),
            "expiresAt",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "expiresAt": now})),
            "expiresAt",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "bad account"})),
            "account",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": ""})),
            "account",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "name": long_name})),
            "name",
        ),
        (
            "POST",
            "/api/keys",
            create(json!({"account": "acme", "name": "a\nb"})),
            "name",
        ),
        (
            "PUT",
            "/api/accounts/acme",
            create(json!({"status": "frozen"})),
            "status",
        ),
        (
            "PUT",
            "/api/accounts/acme",
            create(json!({"status": "Active"})),
            "status",
        ),
        ("PUT", "/api/accounts/bad%20id", Some("{}".into()), "id"),
        (
            "POST",
            &rotate,
            create(json!({"gracePeriodSeconds": 90 * 86400 + 1})),
            "gracePeriodSeconds",
        ),
    ];
    for (method, uri, body, word) in &cases {
        let msg = api
            .err(method, uri, body.as_deref(), 400, "bad_request")
            .await;
        assert!(
            msg.contains(word),
            "{method} {uri} {body:?}: message does not name {word}: {msg}"
        );
    }
    // A body over 64 KiB.
    let big = json!({"account": "acme", "name": "n".repeat(70 * 1024)}).to_string();
    api.err("POST", "/api/keys", Some(&big), 413, "bad_request")
        .await;
    // Nothing changed: one key, unrotated; the account as set; two audit events.
    let list = api.ok("GET", "/api/keys", None, 200).await;
    assert_eq!(ids(&list), [id.as_str()]);
    assert_eq!(list["keys"][0]["revokedAt"], Value::Null);
    assert_eq!(list["keys"][0]["expiresAt"], Value::Null);
    let acc = api.ok("GET", "/api/accounts/acme", None, 200).await;
    assert_eq!(
        (&acc["plan"], &acc["status"]),
        (&json!("pro"), &json!("active"))
    );
    let audit = api.ok("GET", "/api/audit", None, 200).await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
    // The limits themselves are accepted.
    let ok = json!({"account": "acme", "name": "n".repeat(200),
                    "scopes": (0..64).map(|i| format!("s{i}")).collect::<Vec<_>>()});
    api.ok("POST", "/api/keys", Some(&ok.to_string()), 201)
        .await;
    let r = api
        .ok(
            "POST",
            &rotate,
            Some(&json!({"gracePeriodSeconds": 90 * 86400}).to_string()),
            201,
        )
        .await;
    assert_eq!(r["replaces"], id.as_str());
    api.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_keys_and_accounts_are_404() {
    let h = Harness::start().await;
    let log = new_log();
    let api = Api::new(&h, &log);
    // An account that has keys but no record: no account, but usage.
    api.ok(
        "POST",
        "/api/keys",
        Some(r#"{"account":"keysonly","scheme":"live"}"#),
        201,
    )
    .await;
    for (method, uri) in [
        ("DELETE", "/api/keys/nope"),
        ("DELETE", "/api/keys/AAAAAAAAAAAA"),
        ("POST", "/api/keys/nope/rotate"),
        ("POST", "/api/keys/AAAAAAAAAAAA/rotate"),
        ("GET", "/api/accounts/nobody"),
        ("GET", "/api/accounts/nobody/usage"),
        ("GET", "/api/accounts/keysonly"),
        ("GET", "/api/nothing"),
        ("GET", "/api/keys/nope/rotate/x"),
    ] {
        api.err(method, uri, None, 404, "not_found").await;
    }
    // An endpoint asked with a method it does not take: 405 naming the ones it does.
    for (method, uri, allow) in [
        ("PATCH", "/api/keys", "GET, POST"),
        ("GET", "/api/keys/nope", "DELETE, PATCH"),
        ("GET", "/api/keys/nope/rotate", "POST"),
        ("DELETE", "/api/accounts/acme", "GET, PUT"),
        ("POST", "/api/accounts/acme/usage", "GET"),
        ("POST", "/api/audit", "GET"),
    ] {
        let r = api.call(method, uri, None).await;
        check_error(&r, 405, "method_not_allowed", &format!("{method} {uri}"));
        assert_eq!(r.header("allow"), Some(allow), "{method} {uri}");
    }
    let usage = api
        .ok("GET", "/api/accounts/keysonly/usage", None, 200)
        .await;
    assert_eq!(usage["keys"][0]["total"], 0);
    assert_eq!(usage["keys"][0]["days"], json!({}));
    assert_eq!(usage["keys"][0]["lastUsedAt"], Value::Null);
    // An account with a record and no keys has (empty) usage.
    api.ok("PUT", "/api/accounts/empty", None, 200).await;
    assert_eq!(
        api.ok("GET", "/api/accounts/empty/usage", None, 200).await,
        json!({"account": "empty", "keys": []})
    );
    assert_eq!(
        api.ok("GET", "/api/accounts/empty", None, 200).await["status"],
        "active"
    );
    let audit = api.ok("GET", "/api/audit", None, 200).await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
    api.assert_no_key_leaked();
}
