//! The core scenario: every endpoint's success path in the order a user meets them, with real
//! decisions on the HTTP listener, and what it leaves behind for the restart checks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::*;
use crate::common::wait_until;
use keygate::admin::manage::rfc3339;
use keygate::service::unix_now;

/// What the core scenario leaves behind, for the restart checks.
pub struct Outcome {
    pub audit: Value,
    pub keys: Value,
    /// The current key of `acme` (rotated twice) and a revoked one.
    pub live: String,
    pub revoked: String,
}

/// Every endpoint's success path on one keygate, with real decisions on its HTTP listener.
pub async fn core_scenario(api: &Api) -> Outcome {
    // An account on the pro plan.
    let acc = api
        .ok(
            "PUT",
            "/api/accounts/acme",
            Some(r#"{"plan":"pro","status":"active"}"#),
            200,
        )
        .await;
    assert_eq!(keys_of(&acc), ["id", "plan", "status", "updatedAt"]);
    assert_eq!(
        (&acc["id"], &acc["plan"], &acc["status"]),
        (&json!("acme"), &json!("pro"), &json!("active"))
    );
    time(&acc["updatedAt"]);
    assert_eq!(api.ok("GET", "/api/accounts/acme", None, 200).await, acc);

    // A scoped, expiring key: every field, and it works as soon as the response is sent.
    let expires = rfc3339(unix_now() + 30 * 86400);
    let body = json!({"account": "acme", "name": "My Integration", "scheme": "live",
                      "scopes": ["usage:read"], "expiresAt": expires})
    .to_string();
    let k1 = api.ok("POST", "/api/keys", Some(&body), 201).await;
    assert_eq!(
        keys_of(&k1),
        [
            "account",
            "createdAt",
            "expiresAt",
            "id",
            "key",
            "name",
            "prefix",
            "scheme",
            "scopes"
        ]
    );
    let k1_id = k1["id"].as_str().unwrap().to_string();
    let k1_key = k1["key"].as_str().unwrap().to_string();
    assert_eq!(k1_id.len(), 12);
    assert!(k1_key.starts_with(&format!("tk_live_{k1_id}_")), "{k1_key}");
    assert_eq!(k1["prefix"], format!("tk_live_{k1_id}"));
    assert_eq!(k1["account"], "acme");
    assert_eq!(k1["name"], "My Integration");
    assert_eq!(k1["scheme"], "live");
    assert_eq!(k1["scopes"], json!(["usage:read"]));
    assert_eq!(k1["expiresAt"], expires.as_str());
    assert!((time(&k1["createdAt"]) - unix_now()).abs() <= 5);
    assert_eq!(api.auth(&k1_key, "/v1/account/usage").await, 200);
    assert_eq!(api.auth(&k1_key, "/v1/tokens").await, 403);

    // An unrestricted key of the default scheme, no expiry.
    let k2 = api
        .ok("POST", "/api/keys", Some(r#"{"account":"acme"}"#), 201)
        .await;
    let k2_id = k2["id"].as_str().unwrap().to_string();
    let k2_key = k2["key"].as_str().unwrap().to_string();
    assert_eq!(
        (&k2["scheme"], &k2["scopes"], &k2["expiresAt"], &k2["name"]),
        (&json!("toon"), &Value::Null, &Value::Null, &Value::Null)
    );
    assert!(k2.get("replaces").is_none(), "{k2}");
    assert_eq!(api.auth(&k2_key, "/v1/tokens").await, 200);

    // Listed oldest first, without keys or hashes.
    let list = api.ok("GET", "/api/keys?account=acme", None, 200).await;
    assert_eq!(keys_of(&list), ["keys"]);
    assert_eq!(ids(&list), oldest_first(&[&k1, &k2]));
    let v = find(&list, &k1_id);
    assert_eq!(
        keys_of(v),
        [
            "account",
            "createdAt",
            "enabled",
            "expiresAt",
            "id",
            "lastUsedAt",
            "name",
            "prefix",
            "revokedAt",
            "scheme",
            "scopes"
        ]
    );
    assert_eq!(v["revokedAt"], Value::Null);
    assert_eq!(v["expiresAt"], expires.as_str());
    assert!(!list.to_string().contains("hash"), "{list}");
    assert_eq!(
        ids(&api.ok("GET", "/api/keys?account=nobody", None, 200).await),
        Vec::<&str>::new()
    );

    // Account status through real decisions.
    api.ok(
        "PUT",
        "/api/accounts/acme",
        Some(r#"{"status":"past_due"}"#),
        200,
    )
    .await;
    api.wait_auth(&k1_key, "/v1/account/usage", 403).await;
    api.wait_auth(&k2_key, "/v1/tokens", 403).await;
    let acc = api.ok("GET", "/api/accounts/acme", None, 200).await;
    assert_eq!(
        (&acc["plan"], &acc["status"]),
        (&json!("pro"), &json!("past_due"))
    );
    api.ok(
        "PUT",
        "/api/accounts/acme",
        Some(r#"{"status":"active"}"#),
        200,
    )
    .await;
    api.wait_auth(&k1_key, "/v1/account/usage", 200).await;
    api.wait_auth(&k2_key, "/v1/tokens", 200).await;

    // Rotation with grace: the new key works at once, the old one until the grace ends.
    let k1b = api
        .ok(
            "POST",
            &format!("/api/keys/{k1_id}/rotate"),
            Some(r#"{"gracePeriodSeconds":3600}"#),
            201,
        )
        .await;
    assert_eq!(keys_of(&k1b), {
        let mut k = keys_of(&k1);
        k.push("replaces");
        k.sort_unstable();
        k
    });
    let k1b_id = k1b["id"].as_str().unwrap().to_string();
    let k1b_key = k1b["key"].as_str().unwrap().to_string();
    assert_eq!(k1b["replaces"], k1_id.as_str());
    assert_ne!(k1b_id, k1_id);
    for f in ["account", "name", "scheme", "scopes", "expiresAt"] {
        assert_eq!(k1b[f], k1[f], "rotation changed {f}");
    }
    assert_eq!(api.auth(&k1b_key, "/v1/account/usage").await, 200);
    assert_eq!(api.auth(&k1_key, "/v1/account/usage").await, 200);
    let rotated_at = time(&k1b["createdAt"]);
    let list = api.ok("GET", "/api/keys?account=acme", None, 200).await;
    let old = find(&list, &k1_id);
    assert_eq!(old["replacedBy"], k1b_id.as_str());
    assert_eq!(old["revokedAt"], Value::Null);
    assert_eq!(old["expiresAt"], rfc3339(rotated_at + 3600).as_str());
    assert_eq!(find(&list, &k1b_id)["replaces"], k1_id.as_str());
    assert!(find(&list, &k1b_id).get("replacedBy").is_none());

    // Rotation without grace: the old key stops at once.
    let k1c = api
        .ok("POST", &format!("/api/keys/{k1b_id}/rotate"), None, 201)
        .await;
    let k1c_id = k1c["id"].as_str().unwrap().to_string();
    let k1c_key = k1c["key"].as_str().unwrap().to_string();
    assert_eq!(k1c["replaces"], k1b_id.as_str());
    assert_eq!(api.auth(&k1c_key, "/v1/account/usage").await, 200);
    api.wait_auth(&k1b_key, "/v1/account/usage", 401).await;
    assert_eq!(api.auth(&k1_key, "/v1/account/usage").await, 200);
    let list = api.ok("GET", "/api/keys?account=acme", None, 200).await;
    assert_ne!(find(&list, &k1b_id)["revokedAt"], Value::Null);
    assert_eq!(find(&list, &k1b_id)["replacedBy"], k1c_id.as_str());
    // A revoked key cannot be rotated.
    api.err(
        "POST",
        &format!("/api/keys/{k1b_id}/rotate"),
        None,
        409,
        "conflict",
    )
    .await;

    // Revocation.
    let r = api
        .ok("DELETE", &format!("/api/keys/{k2_id}"), None, 200)
        .await;
    assert_eq!(r, json!({"success": true}));
    api.wait_auth(&k2_key, "/v1/tokens", 401).await;
    let list = api.ok("GET", "/api/keys?account=acme", None, 200).await;
    assert_ne!(find(&list, &k2_id)["revokedAt"], Value::Null);

    // Usage: exactly the allowed requests of a burst, per key and per UTC day.
    let metered = api
        .ok(
            "POST",
            "/api/keys",
            Some(r#"{"account":"metered","scheme":"live","scopes":["usage:read"]}"#),
            201,
        )
        .await;
    let m_key = metered["key"].as_str().unwrap().to_string();
    let m_id = metered["id"].as_str().unwrap().to_string();
    let day_before = rfc3339(unix_now())[..10].to_string();
    const N: u64 = 7;
    for _ in 0..N {
        assert_eq!(api.auth(&m_key, "/v1/account/usage").await, 200);
    }
    // Denials do not count as use; the report counts them by reason.
    for _ in 0..3 {
        assert_eq!(api.auth(&m_key, "/v1/tokens").await, 403);
    }
    let last = if m_key.ends_with('x') { "y" } else { "x" };
    let wrong = format!("{}{last}", &m_key[..m_key.len() - 1]);
    assert_eq!(api.auth(&wrong, "/v1/account/usage").await, 401);
    let day_after = rfc3339(unix_now())[..10].to_string();
    let usage_total = |want: u64| {
        let uri = "/api/accounts/metered/usage";
        async move {
            let r = api.call("GET", uri, None).await;
            r.status == 200
                && r.json()["keys"][0]["total"] == want
                && r.json()["keys"][0]["denied"] == json!({"scope": 3})
        }
    };
    wait_until("usage of the burst", Duration::from_secs(15), || {
        usage_total(N)
    })
    .await;
    let usage = api
        .ok("GET", "/api/accounts/metered/usage", None, 200)
        .await;
    assert_eq!(keys_of(&usage), ["account", "keys"]);
    assert_eq!(usage["account"], "metered");
    let u = &usage["keys"][0];
    assert_eq!(usage["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        keys_of(u),
        [
            "days",
            "denied",
            "deniedDays",
            "id",
            "lastUsedAt",
            "name",
            "prefix",
            "total"
        ]
    );
    let refused = u["deniedDays"].as_object().unwrap();
    assert!(
        refused.keys().all(|d| *d == day_before || *d == day_after),
        "{usage}"
    );
    let scope: u64 = refused.values().map(|r| r["scope"].as_u64().unwrap()).sum();
    assert_eq!(scope, 3, "{usage}");
    assert_eq!(u["id"], m_id.as_str());
    assert_eq!(u["prefix"], format!("tk_live_{m_id}"));
    assert!((time(&u["lastUsedAt"]) - unix_now()).abs() <= 60);
    let days = u["days"].as_object().unwrap();
    assert!(
        days.keys().all(|d| *d == day_before || *d == day_after),
        "{usage}"
    );
    assert_eq!(days.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), N);
    // One more is one more: nothing was counted twice.
    assert_eq!(api.auth(&m_key, "/v1/account/usage").await, 200);
    wait_until("usage of one more", Duration::from_secs(15), || {
        usage_total(N + 1)
    })
    .await;
    // acme's usage lists every key of the account, oldest first.
    let usage = api.ok("GET", "/api/accounts/acme/usage", None, 200).await;
    let u_ids: Vec<&str> = usage["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(u_ids, oldest_first(&[&k1, &k2, &k1b, &k1c]));

    // The audit trail: complete, in order, with the admin actor.
    let audit = api.ok("GET", "/api/audit?account=acme", None, 200).await;
    assert_eq!(keys_of(&audit), ["events"]);
    let got = audit_entries(&audit);
    let acme = |a: &str, k: Value, d: Value| (a.to_string(), "acme".to_string(), k, d);
    let want = vec![
        acme(
            "account.updated",
            Value::Null,
            json!({"plan": "pro", "status": "active"}),
        ),
        acme("key.created", json!(k1_id), Value::Null),
        acme("key.created", json!(k2_id), Value::Null),
        acme(
            "account.updated",
            Value::Null,
            json!({"plan": "pro", "status": "past_due"}),
        ),
        acme(
            "account.updated",
            Value::Null,
            json!({"plan": "pro", "status": "active"}),
        ),
        acme(
            "key.rotated",
            json!(k1b_id),
            json!({"replaces": k1_id, "gracePeriodSeconds": 3600}),
        ),
        acme(
            "key.rotated",
            json!(k1c_id),
            json!({"replaces": k1b_id, "gracePeriodSeconds": 0}),
        ),
        acme("key.revoked", json!(k2_id), Value::Null),
    ];
    assert_eq!(got, want);
    let all = api.ok("GET", "/api/audit", None, 200).await;
    let all_entries = audit_entries(&all);
    let mut want_all = want.clone();
    want_all.push((
        "key.created".into(),
        "metered".into(),
        json!(m_id),
        Value::Null,
    ));
    assert_eq!(all_entries, want_all);

    let keys = api.ok("GET", "/api/keys", None, 200).await;
    assert_eq!(
        ids(&keys),
        oldest_first(&[&k1, &k2, &k1b, &k1c, &metered]),
        "all keys, oldest first"
    );
    api.assert_no_key_leaked();
    Outcome {
        audit: all,
        keys,
        live: k1c_key,
        revoked: k2_key,
    }
}
