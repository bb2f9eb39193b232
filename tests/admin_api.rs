//! The admin HTTP API through its real listener: the token, every endpoint and error code, the
//! plan's key limit, rotation, account status and usage seen through real decisions on the
//! HTTP listener, the audit trail, and that a key appears in no response but the one that
//! created it. The core scenario runs on the file store and on a real redis-server, and the
//! audit trail is checked across restarts of keygate (and a kill -9 of Redis).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::redis_server::RedisServer;
use common::{ADMIN_TOKEN, Harness, HttpReply, http_call_body, wait_until};
use keygate::admin::manage::rfc3339;
use keygate::service::unix_now;
use serde_json::{Value, json};

/// One response seen by a test, and the key it created, if it is a creation response.
struct Seen {
    what: String,
    text: String,
    created: Option<String>,
}

/// A client of one keygate's admin and HTTP listeners that keeps every response it sees.
#[derive(Clone)]
struct Api {
    admin: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
}

const BEARER: &str = "Bearer test-admin-token-0123456789";

fn auth_header() -> (&'static str, &'static str) {
    assert_eq!(BEARER, format!("Bearer {ADMIN_TOKEN}"));
    ("authorization", BEARER)
}

impl Api {
    fn new(h: &Harness, log: &Arc<Mutex<Vec<Seen>>>) -> Api {
        Api {
            admin: h.running().admin.expect("admin listener"),
            http: h.http_addr(),
            log: log.clone(),
        }
    }

    fn record(&self, what: String, r: &HttpReply) {
        let created = if r.status == 201 {
            r.json()["key"].as_str().map(String::from)
        } else {
            None
        };
        self.log.lock().unwrap().push(Seen {
            what,
            text: format!("{:?}\n{}", r.headers, r.body),
            created,
        });
    }

    /// Any call to the admin listener, with the given headers.
    async fn raw(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpReply {
        let body = Bytes::from(body.unwrap_or("").to_string());
        let r = http_call_body(self.admin, method, uri, headers, body).await;
        self.record(format!("{method} {uri}"), &r);
        r
    }

    /// A call with the admin token.
    async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> HttpReply {
        self.raw(method, uri, &[auth_header()], body).await
    }

    /// A call that must answer `status` with a JSON body; returns the body.
    async fn ok(&self, method: &str, uri: &str, body: Option<&str>, status: u16) -> Value {
        let r = self.call(method, uri, body).await;
        assert_eq!(
            r.status, status,
            "{method} {uri} {body:?}: want {status}, got {}",
            r.body
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.json()
    }

    /// A call that must fail with `status` and error code `code`; returns the message.
    async fn err(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        status: u16,
        code: &str,
    ) -> String {
        let r = self.call(method, uri, body).await;
        check_error(&r, status, code, &format!("{method} {uri} {body:?}"))
    }

    /// `/auth` on the HTTP listener, as nginx would call it, with the key in its scheme's header.
    async fn auth(&self, key: &str, uri: &str) -> u16 {
        let bearer = format!("Bearer {key}");
        let header = if key.starts_with("toon_") {
            ("x-api-key", key)
        } else {
            ("authorization", bearer.as_str())
        };
        let r = common::http_call(
            self.http,
            "GET",
            "/auth",
            &[("x-original-uri", uri), header],
        )
        .await;
        self.record(format!("auth {uri}"), &r);
        r.status
    }

    async fn wait_auth(&self, key: &str, uri: &str, want: u16) {
        wait_until(
            &format!("/auth {uri} answering {want}"),
            Duration::from_secs(10),
            || async { self.auth(key, uri).await == want },
        )
        .await;
    }

    /// Fails if any response holds a key (or its secret) other than the one that created it.
    fn assert_no_key_leaked(&self) {
        let log = self.log.lock().unwrap();
        let keys: Vec<&String> = log.iter().filter_map(|s| s.created.as_ref()).collect();
        assert!(!keys.is_empty(), "no key was created");
        for k in &keys {
            let secret = k.rsplit('_').next().unwrap();
            assert_eq!(secret.len(), 32, "{k}");
            let carriers = log
                .iter()
                .filter(|s| s.text.contains(secret) || s.text.contains(k.as_str()))
                .map(|s| s.what.as_str())
                .collect::<Vec<_>>();
            assert_eq!(
                carriers.len(),
                1,
                "a key appears in more than its creation response: {carriers:?}"
            );
            let creator = log.iter().find(|s| s.created.as_ref() == Some(k)).unwrap();
            assert!(creator.text.contains(secret));
        }
        assert!(log.len() > keys.len());
    }
}

fn check_error(r: &HttpReply, status: u16, code: &str, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let v = r.json();
    let obj = v.as_object().unwrap();
    assert_eq!(
        obj.len(),
        2,
        "{what}: error body is not {{error, message}}: {v}"
    );
    assert_eq!(v["error"], code, "{what}: {v}");
    let msg = v["message"].as_str().unwrap().to_string();
    assert!(!msg.is_empty(), "{what}");
    msg
}

fn new_log() -> Arc<Mutex<Vec<Seen>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn keys_of(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn time(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.ends_with('Z') && s.len() == 20, "not RFC 3339 UTC: {s}");
    humantime::parse_rfc3339(s)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Ids of creation responses, in the order listings use: oldest first, then by id.
fn oldest_first(created: &[&Value]) -> Vec<String> {
    let mut v: Vec<(i64, String)> = created
        .iter()
        .map(|c| (time(&c["createdAt"]), c["id"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, id)| id).collect()
}

/// The listed key with this id.
fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

fn ids(list: &Value) -> Vec<&str> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect()
}

/// The audit events as (action, account, keyId, detail), checking actor and time on the way.
fn audit_entries(v: &Value) -> Vec<(String, String, Value, Value)> {
    let events = v["events"].as_array().unwrap();
    let mut last = 0;
    events
        .iter()
        .map(|e| {
            assert_eq!(
                keys_of(e),
                ["account", "action", "actor", "at", "detail", "keyId"]
            );
            assert_eq!(e["actor"], "admin", "{e}");
            let at = time(&e["at"]);
            assert!(at >= last, "audit out of order: {v}");
            last = at;
            (
                e["action"].as_str().unwrap().to_string(),
                e["account"].as_str().unwrap().to_string(),
                e["keyId"].clone(),
                e["detail"].clone(),
            )
        })
        .collect()
}

/// What the core scenario leaves behind, for the restart checks.
struct Outcome {
    audit: Value,
    keys: Value,
    /// The current key of `acme` (rotated twice) and a revoked one.
    live: String,
    revoked: String,
}

/// Every endpoint's success path on one keygate, with real decisions on its HTTP listener.
async fn core_scenario(api: &Api) -> Outcome {
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
    // Denials do not count.
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
            r.status == 200 && r.json()["keys"][0]["total"] == want
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
        ["days", "id", "lastUsedAt", "name", "prefix", "total"]
    );
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

/// The restart checks: the same audit trail, keys and decisions from a new keygate.
async fn check_after_restart(api: &Api, before: &Outcome) {
    assert_eq!(api.ok("GET", "/api/audit", None, 200).await, before.audit);
    let keys = api.ok("GET", "/api/keys", None, 200).await;
    assert_eq!(ids(&keys), ids(&before.keys));
    for (a, b) in keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .zip(before.keys["keys"].as_array().unwrap())
    {
        assert_eq!(a["revokedAt"], b["revokedAt"]);
        assert_eq!(a["expiresAt"], b["expiresAt"]);
    }
    api.wait_auth(&before.live, "/v1/account/usage", 200).await;
    assert_eq!(api.auth(&before.revoked, "/v1/tokens").await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_on_file_store_and_audit_survives_restart() {
    let log = new_log();
    let mut h = Harness::start().await;
    let api = Api::new(&h, &log);
    let before = core_scenario(&api).await;

    // A new keygate on the same state file (the old one's directory stays).
    h.stop().await;
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let h2 = Harness::start_with(tempfile::tempdir().unwrap(), text).await;
    let api2 = Api::new(&h2, &log);
    check_after_restart(&api2, &before).await;
    api2.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_on_redis_and_audit_survives_restarts() {
    let log = new_log();
    let mut redis = RedisServer::start();
    let mut h = Harness::start_redis(&redis.url(), "", true).await;
    let api = Api::new(&h, &log);
    let before = core_scenario(&api).await;

    // keygate restarted.
    h.stop().await;
    let h2 = Harness::start_redis(&redis.url(), "", true).await;
    let api2 = Api::new(&h2, &log);
    check_after_restart(&api2, &before).await;

    // Redis killed with SIGKILL and restarted: its AOF keeps the trail.
    redis.kill();
    redis.restart();
    wait_until(
        "audit after the Redis restart",
        Duration::from_secs(30),
        || {
            let want = before.audit.clone();
            let api2 = &api2;
            async move {
                let r = api2.call("GET", "/api/audit", None).await;
                r.status == 200 && r.json() == want
            }
        },
    )
    .await;
    check_after_restart(&api2, &before).await;
    // And takes writes again.
    api2.ok(
        "PUT",
        "/api/accounts/acme",
        Some(r#"{"status":"disabled"}"#),
        200,
    )
    .await;
    api2.wait_auth(&before.live, "/v1/account/usage", 403).await;
    let audit = api2.ok("GET", "/api/audit", None, 200).await;
    let n = before.audit["events"].as_array().unwrap().len();
    assert_eq!(audit["events"].as_array().unwrap().len(), n + 1);
    assert_eq!(audit["events"][n]["action"], "account.updated");
    assert_eq!(
        audit["events"][n]["detail"],
        json!({"plan": "pro", "status": "disabled"})
    );
    api2.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_listener_does_not_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::config_text(&dir.path().join("keygate.json"));
    for token in [None, Some(String::new())] {
        let settings = keygate::config::Settings::from_yaml(&text).unwrap();
        assert!(
            settings.admin.is_some(),
            "the config names an admin address"
        );
        let running = keygate::server::start(settings, token.clone())
            .await
            .unwrap();
        assert!(running.http.is_some() && running.grpc.is_some());
        assert_eq!(running.admin, None, "admin listener started with {token:?}");
        running.shutdown().await;
    }
    // With a token it does start.
    let settings = keygate::config::Settings::from_yaml(&text).unwrap();
    let running = keygate::server::start(settings, Some(ADMIN_TOKEN.into()))
        .await
        .unwrap();
    assert!(running.admin.is_some());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_needs_the_admin_token() {
    // 88 wrong tokens from one address: past the default budget of failures they would be
    // slowed (tests/limits.rs covers that); here every one must be a plain 401.
    let dir = tempfile::tempdir().unwrap();
    let text = common::config_text(&dir.path().join("keygate.json"))
        + "\nlimits:\n  admin_failures_per_minute: 1000\n";
    let h = Harness::start_with(dir, text).await;
    let log = new_log();
    let api = Api::new(&h, &log);
    let key = api
        .ok("POST", "/api/keys", Some(r#"{"account":"acme"}"#), 201)
        .await;
    let id = key["id"].as_str().unwrap().to_string();
    let calls: Vec<(&str, String, Option<&str>)> = vec![
        ("POST", "/api/keys".into(), Some(r#"{"account":"acme"}"#)),
        ("GET", "/api/keys?account=acme".into(), None),
        ("GET", "/api/keys".into(), None),
        ("DELETE", format!("/api/keys/{id}"), None),
        ("POST", format!("/api/keys/{id}/rotate"), Some("{}")),
        (
            "PUT",
            "/api/accounts/acme".into(),
            Some(r#"{"status":"disabled"}"#),
        ),
        ("GET", "/api/accounts/acme".into(), None),
        ("GET", "/api/accounts/acme/usage".into(), None),
        ("GET", "/api/audit?account=acme".into(), None),
        ("GET", "/api/audit".into(), None),
        ("GET", "/api/nothing".into(), None),
    ];
    let wrong = [
        vec![],
        vec![("authorization", "Bearer wrong-token")],
        vec![("authorization", "Bearer test-admin-token-012345678")],
        vec![("authorization", "Bearer test-admin-token-0123456789x")],
        vec![("authorization", "Bearer ")],
        vec![("authorization", "Basic test-admin-token-0123456789")],
        vec![("authorization", ADMIN_TOKEN)],
        vec![("x-api-key", ADMIN_TOKEN)],
    ];
    for (method, uri, body) in &calls {
        for headers in &wrong {
            let r = api.raw(method, uri, headers, *body).await;
            check_error(
                &r,
                401,
                "unauthorized",
                &format!("{method} {uri} {headers:?}"),
            );
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer realm="keygate-admin""#)
            );
        }
    }
    // Nothing happened: one key, not revoked nor rotated, no account, one audit event.
    let list = api.ok("GET", "/api/keys", None, 200).await;
    assert_eq!(ids(&list), [id.as_str()]);
    assert_eq!(list["keys"][0]["revokedAt"], Value::Null);
    assert!(list["keys"][0].get("replacedBy").is_none());
    api.err("GET", "/api/accounts/acme", None, 404, "not_found")
        .await;
    let audit = api.ok("GET", "/api/audit", None, 200).await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
    // The scheme name is case-insensitive.
    let r = api
        .raw(
            "GET",
            "/api/audit",
            &[("authorization", "bearer test-admin-token-0123456789")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    api.assert_no_key_leaked();
}

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
        ("GET", "/api/keys/nope", "DELETE"),
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

/// The plan's `max_keys` (starter: 4) at the boundary, under concurrent creation, and counting
/// only active keys.
async fn key_limit_scenario(api: &Api) {
    api.ok(
        "PUT",
        "/api/accounts/small",
        Some(r#"{"plan":"starter"}"#),
        200,
    )
    .await;
    let body = r#"{"account":"small","scheme":"live"}"#;
    let mut keys = vec![];
    for _ in 0..4 {
        keys.push(api.ok("POST", "/api/keys", Some(body), 201).await);
    }
    let msg = api
        .err("POST", "/api/keys", Some(body), 409, "key_limit_reached")
        .await;
    assert!(msg.contains('4'), "{msg}");
    // Another account is not limited by small's plan.
    api.ok("POST", "/api/keys", Some(r#"{"account":"other"}"#), 201)
        .await;
    assert_eq!(
        ids(&api.ok("GET", "/api/keys?account=small", None, 200).await).len(),
        4
    );
    let first = keys[0]["id"].as_str().unwrap();
    api.ok("DELETE", &format!("/api/keys/{first}"), None, 200)
        .await;
    let fifth = api.ok("POST", "/api/keys", Some(body), 201).await;
    assert_eq!(api.auth(fifth["key"].as_str().unwrap(), "/v1/x").await, 200);
    api.err("POST", "/api/keys", Some(body), 409, "key_limit_reached")
        .await;
    // A plan change lifts the limit.
    api.ok("PUT", "/api/accounts/small", Some(r#"{"plan":"pro"}"#), 200)
        .await;
    api.ok("POST", "/api/keys", Some(body), 201).await;
    // Refused creations leave no audit event.
    let audit = api.ok("GET", "/api/audit?account=small", None, 200).await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "account.updated",
            "key.created",
            "key.created",
            "key.created",
            "key.created",
            "key.revoked",
            "key.created",
            "account.updated",
            "key.created"
        ]
    );

    // Concurrent creations: exactly the plan's number succeed.
    api.ok(
        "PUT",
        "/api/accounts/racing",
        Some(r#"{"plan":"starter"}"#),
        200,
    )
    .await;
    let racing = r#"{"account":"racing","scheme":"live"}"#;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let api = api.clone();
        set.spawn(async move { api.call("POST", "/api/keys", Some(racing)).await.status });
    }
    let mut statuses = set.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201, 201, 201, 409, 409, 409, 409, 409, 409]);
    assert_eq!(
        ids(&api.ok("GET", "/api/keys?account=racing", None, 200).await).len(),
        4
    );

    // An expired key no longer counts.
    api.ok(
        "PUT",
        "/api/accounts/brief",
        Some(r#"{"plan":"starter"}"#),
        200,
    )
    .await;
    let brief = r#"{"account":"brief","scheme":"live"}"#;
    for _ in 0..3 {
        api.ok("POST", "/api/keys", Some(brief), 201).await;
    }
    let soon = rfc3339(unix_now() + 3);
    let body = json!({"account": "brief", "scheme": "live", "expiresAt": soon}).to_string();
    let short = api.ok("POST", "/api/keys", Some(&body), 201).await;
    api.err("POST", "/api/keys", Some(brief), 409, "key_limit_reached")
        .await;
    api.wait_auth(short["key"].as_str().unwrap(), "/v1/x", 401)
        .await;
    api.ok("POST", "/api/keys", Some(brief), 201).await;
    api.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn key_limit_applies_at_the_boundary_on_file_store() {
    let h = Harness::start().await;
    key_limit_scenario(&Api::new(&h, &new_log())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_limit_applies_at_the_boundary_on_redis() {
    let redis = RedisServer::start();
    let h = Harness::start_redis(&redis.url(), "", true).await;
    key_limit_scenario(&Api::new(&h, &new_log())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_cases_of_paths_bodies_and_rotation() {
    let h = Harness::start().await;
    let log = new_log();
    let api = Api::new(&h, &log);

    // Path segments are percent-decoded: an account with @ is reachable encoded.
    api.ok("PUT", "/api/accounts/a@b", Some(r#"{"plan":"pro"}"#), 200)
        .await;
    let a = api.ok("GET", "/api/accounts/a%40b", None, 200).await;
    assert_eq!(a["id"], "a@b");
    api.ok(
        "PUT",
        "/api/accounts/a%40b",
        Some(r#"{"status":"past_due"}"#),
        200,
    )
    .await;
    assert_eq!(
        api.ok("GET", "/api/accounts/a@b", None, 200).await["status"],
        "past_due"
    );
    api.err("GET", "/api/accounts/%zz", None, 400, "bad_request")
        .await;

    // Bodies must be JSON objects, not arrays that happen to fit the fields.
    let before = api.ok("GET", "/api/audit", None, 200).await["events"]
        .as_array()
        .unwrap()
        .len();
    api.err(
        "POST",
        "/api/keys",
        Some(r#"["arr",null,"live",["usage:read"],null]"#),
        400,
        "bad_request",
    )
    .await;
    api.err(
        "PUT",
        "/api/accounts/arr",
        Some(r#"["free","past_due"]"#),
        400,
        "bad_request",
    )
    .await;
    let k = api
        .ok(
            "POST",
            "/api/keys",
            Some(r#"{"account":"acme","scheme":"live"}"#),
            201,
        )
        .await;
    let id = k["id"].as_str().unwrap().to_string();
    api.err(
        "POST",
        &format!("/api/keys/{id}/rotate"),
        Some("[60]"),
        400,
        "bad_request",
    )
    .await;

    // Names are limited in characters, not bytes.
    let name = "é".repeat(150);
    api.ok(
        "POST",
        "/api/keys",
        Some(&format!(r#"{{"account":"acme","name":"{name}"}}"#)),
        201,
    )
    .await;

    // Revoking twice succeeds and records one event.
    api.ok("DELETE", &format!("/api/keys/{id}"), None, 200)
        .await;
    api.ok("DELETE", &format!("/api/keys/{id}"), None, 200)
        .await;
    let events = api.ok("GET", "/api/audit", None, 200).await["events"]
        .as_array()
        .unwrap()
        .clone();
    let revoked = events
        .iter()
        .filter(|e| e["action"] == "key.revoked" && e["keyId"] == id.as_str())
        .count();
    assert_eq!(revoked, 1);
    assert_eq!(
        events.len(),
        before + 3,
        "refused calls left no audit events"
    );

    // Rotating an expired key is refused rather than issuing a key that is already dead.
    let k = api
        .ok(
            "POST",
            "/api/keys",
            Some(r#"{"account":"acme","scheme":"live"}"#),
            201,
        )
        .await;
    let id = k["id"].as_str().unwrap().to_string();
    let keygate::store::Store::File(f) = &h.manager.store else {
        panic!("file store")
    };
    f.update(|s| {
        let r = s.keys.get_mut(&id).unwrap();
        r.expires_at = Some(keygate::service::unix_now() - 1);
        r.version += 1;
        s.revision += 1;
        Ok(())
    })
    .unwrap();
    api.err(
        "POST",
        &format!("/api/keys/{id}/rotate"),
        Some("{}"),
        409,
        "conflict",
    )
    .await;
    api.assert_no_key_leaked();
}
