//! Every row of the decision table, through `decide`: the shared fixture (schemes, routes,
//! plans, a table) here, the rows in [`credentials`] (who the caller is: 200 and 401s) and
//! [`access`] (what the caller may do: 403s, paths, routes, 503, verification, the answers and
//! rate limits).

use super::*;
use crate::key::{self, Account, KeyRecord};
use crate::policy::{IdentityHeaders, Plan, Policy};
use crate::route::Route;
use crate::scheme::HashKind;

/// The schemes, plans and routes of this config, built as the config crate compiles them:
///
/// ```yaml
/// schemes:
///   - { name: toon, header: x-api-key, key_prefix: toon_, hash: argon2id,
///       argon2: { memory_kib: 64, iterations: 1, parallelism: 1 } }
///   - { name: live, header: authorization, key_prefix: tk_live_, hash: sha256 }
/// plans:
///   starter: { max_keys: 4 }
///   free: { api_access: false }
/// routes:
///   - { path_prefix: /v1/account/usage, scope: usage:read }
///   - { path_prefix: /v1/tokens, methods: [POST, DELETE], scope: tokens:write }
///   - { path_prefix: /v1/tokens, scope: tokens:read }
///   - { path_prefix: /only-live, schemes: [live] }
///   - { path_prefix: /, host: api.example }
/// ```
fn policy() -> Policy {
    let argon2 = HashKind::Argon2id {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let schemes = vec![
        Scheme::new(
            "toon".into(),
            "x-api-key".into(),
            "toon_".into(),
            argon2,
            16,
            128,
        ),
        Scheme::new(
            "live".into(),
            "authorization".into(),
            "tk_live_".into(),
            HashKind::Sha256,
            16,
            128,
        ),
    ];
    let route = |prefix: &str,
                 methods: Option<&[&str]>,
                 host: Option<&str>,
                 scope: Option<&str>,
                 schemes| {
        Route::new(
            prefix.into(),
            methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            host.map(Into::into),
            scope.map(Into::into),
            schemes,
        )
    };
    let both = || vec![0, 1];
    let routes = RouteTable::new(vec![
        route("/v1/account/usage", None, None, Some("usage:read"), both()),
        route(
            "/v1/tokens",
            Some(&["POST", "DELETE"]),
            None,
            Some("tokens:write"),
            both(),
        ),
        route("/v1/tokens", None, None, Some("tokens:read"), both()),
        route("/only-live", None, None, None, vec![1]),
        route("/", None, Some("api.example"), None, both()),
    ]);
    let plan = |max_keys, api_access| Plan {
        max_keys,
        api_access,
        rate_limits: Arc::from([]),
    };
    let metered = Plan {
        rate_limits: Arc::from([limit("minute", 600)]),
        ..plan(None, true)
    };
    let plans = [
        ("starter".to_string(), plan(Some(4), true)),
        ("free".to_string(), plan(None, false)),
        ("metered".to_string(), metered),
    ]
    .into();
    Policy {
        schemes: schemes.into(),
        routes,
        plans,
        identity: IdentityHeaders::default(),
    }
}

fn limit(name: &str, requests: u32) -> RateLimit {
    RateLimit {
        name: name.into(),
        requests,
        per: crate::limit::Per::parse("1m").unwrap(),
        shared: crate::limit::Shared::Key,
    }
}

struct Fixture {
    settings: Policy,
    keys: Vec<KeyRecord>,
    accounts: Vec<Account>,
}

const NOW: i64 = 1_800_000_000;

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            settings: policy(),
            keys: vec![],
            accounts: vec![],
        }
    }

    /// Adds a key and returns its plaintext.
    fn key(&mut self, scheme: &str, account: &str, scopes: Option<&[&str]>) -> String {
        let s = &self.settings.schemes[self.settings.scheme_index(scheme).unwrap()];
        let k = key::generate(s);
        let mut r = KeyRecord::new(
            k.id.clone(),
            format!("{}{}", s.key_prefix, k.id),
            account.into(),
            scheme.into(),
            key::hash_key(s, k.key.as_bytes()).unwrap(),
            NOW - 10,
        );
        r.scopes = scopes.map(|v| v.iter().map(|s| s.to_string()).collect());
        self.keys.push(r);
        k.key.to_string()
    }

    fn last(&mut self) -> &mut KeyRecord {
        self.keys.last_mut().unwrap()
    }

    fn account(&mut self, id: &str, plan: Option<&str>, status: AccountStatus) {
        self.accounts.push(Account {
            id: id.into(),
            plan: plan.map(Into::into),
            status,
            updated_at: NOW,
            version: 1,
        });
    }

    fn table(&self) -> Table {
        Table::build(
            &self.settings.schemes,
            &self.settings.plans,
            &self.keys,
            &self.accounts,
            None,
        )
    }
}

/// Verifies Argon2 in place, as the service does off the runtime.
struct Verify;
impl SecretCheck for Verify {
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool> {
        Some(entry.verify(key))
    }
}

fn run(
    f: &Fixture,
    t: &Table,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<String, (Reason, u16)> {
    let req = Request {
        method,
        path,
        host: Some("api.example"),
        headers,
    };
    match decide(
        &f.settings.schemes,
        &f.settings.routes,
        t,
        &req,
        NOW,
        &Verify,
    ) {
        Outcome::Allow(a) => Ok(a.key.id().to_string()),
        Outcome::Deny(d) => Err((d.reason, d.status())),
        Outcome::NeedsVerify { .. } => panic!("Verify always answers"),
    }
}

fn bearer(k: &str) -> String {
    format!("Bearer {k}")
}

mod access;
mod credentials;
