//! Bytes -> an `http::Request` -> `keygate::frontend::http::handle` on an authorizer over a
//! small loaded table (no socket).
//!
//! Input: the first line is the method, the second the request target, every further line a
//! `name: value` header (value bytes as they come; lines HTTP cannot carry are dropped).
//! Checked: no panic; the status is one the listener documents; a 401 has the one generic
//! body; and `/auth` or `/ext_authz/…` answers 200 only when a header holds one of the table's
//! valid keys.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use keygate::config::Settings;
use keygate::core::key::{self, Account, AccountStatus, KeyRecord};
use keygate::metrics::Metrics;
use keygate::service::Authorizer;
use keygate::store::replica::Replica;
use keygate::store::state::State;
use libfuzzer_sys::fuzz_target;

/// The example config's schemes and routes, with Argon2 cheap enough to fuzz through.
const CONFIG: &str = r#"
schemes:
  - { name: toon, header: x-api-key, key_prefix: toon_, hash: argon2id,
      argon2: { memory_kib: 64, iterations: 1, parallelism: 1 } }
  - { name: live, header: authorization, key_prefix: tk_live_, hash: sha256 }
plans:
  starter: { max_keys: 4 }
  free: { api_access: false }
routes:
  - { path_prefix: /v1/account/usage, scope: usage:read }
  - { path_prefix: /v1/tokens, methods: [POST, DELETE], scope: tokens:write }
  - { path_prefix: /v1/tokens, scope: tokens:read }
  - { path_prefix: /only-live, schemes: [live] }
  - { path_prefix: / }
"#;

/// Valid keys in the table (the seed corpus uses them).
const VALID: [&str; 3] = [
    "tk_live_LiveKey00001_abcdefghijklmnopqrstuvwxyz012345",
    "tk_live_UsageKey0001_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
    "toon_ToonKey00001_abcdefghijklmnopqrstuvwxyz678901",
];
/// Keys in the table that never pass: revoked, expired, and one of a disabled account.
const INVALID: [&str; 3] = [
    "tk_live_Revoked00001_abcdefghijklmnopqrstuvwxyz012345",
    "toon_Expired00001_abcdefghijklmnopqrstuvwxyz678901",
    "tk_live_Disabled0001_abcdefghijklmnopqrstuvwxyz012345",
];

struct Fixture {
    auth: Arc<Authorizer>,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let settings = Arc::new(Settings::from_yaml(CONFIG).unwrap());
        let now = keygate::service::unix_now();
        let mut keys = BTreeMap::new();
        let all = VALID.iter().chain(&INVALID);
        for (i, k) in all.enumerate() {
            let scheme = if k.starts_with("toon_") {
                "toon"
            } else {
                "live"
            };
            let s = &settings.policy.schemes[settings.scheme_index(scheme).unwrap()];
            let body = &k[s.key_prefix.len()..];
            let id = body[..12].to_string();
            let account = if k.contains("Disabled") {
                "off"
            } else {
                "acme"
            };
            let mut record = KeyRecord::new(
                id.clone(),
                k[..s.key_prefix.len() + 12].to_string(),
                account.into(),
                scheme.into(),
                key::hash_key(s, k.as_bytes()).unwrap(),
                now - 100,
            );
            record.scopes = (i == 1).then(|| vec!["usage:read".to_string()]);
            record.expires_at = k.contains("Expired").then_some(now - 10);
            record.revoked_at = k.contains("Revoked").then_some(now - 10);
            keys.insert(id, record);
        }
        let mut accounts = BTreeMap::new();
        accounts.insert(
            "off".to_string(),
            Account {
                id: "off".into(),
                plan: None,
                status: AccountStatus::Disabled,
                updated_at: now,
                version: 1,
            },
        );
        let replica = Arc::new(Replica::new(settings.policy.clone()));
        replica.install(&State {
            revision: 1,
            keys,
            accounts,
            ..State::default()
        });
        let auth = Arc::new(Authorizer::new(settings, replica, Arc::new(Metrics::new())));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Fixture { auth, rt }
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut lines = data.split(|b| *b == b'\n');
    let method = lines.next().unwrap_or_default();
    let target = lines.next().unwrap_or_default();
    let Ok(method) = http::Method::from_bytes(method) else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let mut req = http::Request::builder().method(method).uri(uri);
    let mut values: Vec<&[u8]> = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        values.push(line);
        req = req.header(name, value);
    }
    let Ok(req) = req.body(()) else {
        return;
    };
    let path = req.uri().path().to_string();
    let resp =
        f.rt.block_on(keygate::frontend::http::handle(f.auth.clone(), req))
            .unwrap();
    let status = resp.status().as_u16();
    assert!(
        [200, 400, 401, 403, 404].contains(&status),
        "{status} for {path:?}"
    );
    let authz = path == "/auth" || path == "/ext_authz" || path.starts_with("/ext_authz/");
    if authz && status == 200 {
        assert!(
            values
                .iter()
                .any(|v| VALID.iter().any(|k| contains(v, k.as_bytes()))),
            "allowed without a valid key"
        );
    }
    if status == 401 {
        let body = resp.into_body();
        let bytes =
            f.rt.block_on(http_body_util::BodyExt::collect(body))
                .unwrap()
                .to_bytes();
        assert_eq!(
            &bytes[..],
            br#"{"error":"unauthorized","message":"Invalid or missing API key"}"#
        );
    }
});
