//! The admin API client the tests use: every response is recorded, so a test can check that a
//! key appears in no response but the one that created it; and helpers that read the answers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

use crate::common::{ADMIN_TOKEN, Harness, HttpReply, http_call_body, wait_until};
use std::time::Duration;

/// One response seen by a test, and the key it created, if it is a creation response.
pub struct Seen {
    pub what: String,
    pub text: String,
    pub created: Option<String>,
}

/// A client of one keygate's admin and HTTP listeners that keeps every response it sees.
#[derive(Clone)]
pub struct Api {
    pub admin: SocketAddr,
    pub http: SocketAddr,
    pub log: Arc<Mutex<Vec<Seen>>>,
}

pub const BEARER: &str = "Bearer test-admin-token-0123456789";

pub fn auth_header() -> (&'static str, &'static str) {
    assert_eq!(BEARER, format!("Bearer {ADMIN_TOKEN}"));
    ("authorization", BEARER)
}

impl Api {
    pub fn new(h: &Harness, log: &Arc<Mutex<Vec<Seen>>>) -> Api {
        Api {
            admin: h.running().admin.expect("admin listener"),
            http: h.http_addr(),
            log: log.clone(),
        }
    }

    pub fn record(&self, what: String, r: &HttpReply) {
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
    pub async fn raw(
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
    pub async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> HttpReply {
        self.raw(method, uri, &[auth_header()], body).await
    }

    /// A call that must answer `status` with a JSON body; returns the body.
    pub async fn ok(&self, method: &str, uri: &str, body: Option<&str>, status: u16) -> Value {
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
    pub async fn err(
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
    pub async fn auth(&self, key: &str, uri: &str) -> u16 {
        let bearer = format!("Bearer {key}");
        let header = if key.starts_with("toon_") {
            ("x-api-key", key)
        } else {
            ("authorization", bearer.as_str())
        };
        let r = crate::common::http_call(
            self.http,
            "GET",
            "/auth",
            &[("x-original-uri", uri), header],
        )
        .await;
        self.record(format!("auth {uri}"), &r);
        r.status
    }

    pub async fn wait_auth(&self, key: &str, uri: &str, want: u16) {
        wait_until(
            &format!("/auth {uri} answering {want}"),
            Duration::from_secs(10),
            || async { self.auth(key, uri).await == want },
        )
        .await;
    }

    /// Fails if any response holds a key (or its secret) other than the one that created it.
    pub fn assert_no_key_leaked(&self) {
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

pub fn check_error(r: &HttpReply, status: u16, code: &str, what: &str) -> String {
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

pub fn new_log() -> Arc<Mutex<Vec<Seen>>> {
    Arc::new(Mutex::new(Vec::new()))
}

pub fn keys_of(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

pub fn time(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.ends_with('Z') && s.len() == 20, "not RFC 3339 UTC: {s}");
    humantime::parse_rfc3339(s)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Ids of creation responses, in the order listings use: oldest first, then by id.
pub fn oldest_first(created: &[&Value]) -> Vec<String> {
    let mut v: Vec<(i64, String)> = created
        .iter()
        .map(|c| (time(&c["createdAt"]), c["id"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, id)| id).collect()
}

/// The listed key with this id.
pub fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

pub fn ids(list: &Value) -> Vec<&str> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect()
}

/// The audit events as (action, account, keyId, detail), checking actor and time on the way.
pub fn audit_entries(v: &Value) -> Vec<(String, String, Value, Value)> {
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
