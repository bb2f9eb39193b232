//! Property tests of the pure decision core: random key tables (accounts with random status and
//! plan; keys of every scheme with random scopes, expiry and revocation) against random
//! requests (methods, paths with percent-encodings, dot segments and encoded slashes, hosts,
//! and header sets holding valid keys, mangled keys, duplicated headers, both credential kinds
//! at once, Bearer case variants and non-UTF-8 bytes).
//!
//! The expectation is computed here from the generated data alone (route matching is
//! reimplemented; only `normalize_path` is keygate's): `decide` allows exactly when the request
//! presents one valid, unrevoked, unexpired key of a scheme the matched route accepts, for an
//! active account with API access, whose scopes include the route's scope. Denials are checked
//! for their class: 403 when such a key was presented (account, scope, no route), 401
//! otherwise. A table that was never loaded never allows.
//!
//! The runs are deterministic (fixed seed); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` explore
//! further.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use keygate::config::Settings;
use keygate::core::decide::{Outcome, Reason, SecretCheck, decide};
use keygate::core::key::{self, Account, AccountStatus, KeyHash, KeyRecord};
use keygate::core::path::{PathError, Target, normalize_path};
use keygate::core::request::{HeaderValue, Headers, Request};
use keygate::core::table::{KeyEntry, Table};
use keygate::frontend::http::HttpHeaders;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

const NOW: i64 = 1_800_000_000;

/// Argon2 with a tiny parameter set, so hashing and verification take microseconds.
const CONFIG: &str = r#"
schemes:
  - { name: toon, header: x-api-key, key_prefix: toon_, hash: argon2id,
      argon2: { memory_kib: 64, iterations: 1, parallelism: 1 } }
  - { name: live, header: authorization, key_prefix: tk_live_, hash: sha256 }
  - { name: test, header: authorization, key_prefix: tk_test_, hash: argon2id,
      argon2: { memory_kib: 64, iterations: 1, parallelism: 1 } }
plans:
  starter: { max_keys: 4 }
  free: { api_access: false }
routes:
  - { path_prefix: /v1/account/usage, scope: usage:read }
  - { path_prefix: /v1/tokens, methods: [POST, DELETE], scope: tokens:write }
  - { path_prefix: /v1/tokens, scope: tokens:read }
  - { path_prefix: /only-live, schemes: [live] }
  - { path_prefix: /only-api-key, schemes: [toon] }
  - { path_prefix: /admin, host: "*.internal.example", scope: admin }
  - { path_prefix: /, host: api.example }
"#;

/// The routes of `CONFIG`, as this test reads them.
struct ModelRoute {
    prefix: &'static str,
    methods: Option<&'static [&'static str]>,
    host: Option<&'static str>,
    scope: Option<&'static str>,
    /// Scheme indices; `None`: every scheme.
    schemes: Option<&'static [usize]>,
}

const ROUTES: &[ModelRoute] = &[
    ModelRoute {
        prefix: "/v1/account/usage",
        methods: None,
        host: None,
        scope: Some("usage:read"),
        schemes: None,
    },
    ModelRoute {
        prefix: "/v1/tokens",
        methods: Some(&["POST", "DELETE"]),
        host: None,
        scope: Some("tokens:write"),
        schemes: None,
    },
    ModelRoute {
        prefix: "/v1/tokens",
        methods: None,
        host: None,
        scope: Some("tokens:read"),
        schemes: None,
    },
    ModelRoute {
        prefix: "/only-live",
        methods: None,
        host: None,
        scope: None,
        schemes: Some(&[LIVE]),
    },
    ModelRoute {
        prefix: "/only-api-key",
        methods: None,
        host: None,
        scope: None,
        schemes: Some(&[TOON]),
    },
    ModelRoute {
        prefix: "/admin",
        methods: None,
        host: Some("*.internal.example"),
        scope: Some("admin"),
        schemes: None,
    },
    ModelRoute {
        prefix: "/",
        methods: None,
        host: Some("api.example"),
        scope: None,
        schemes: None,
    },
];

const TOON: usize = 0;
const LIVE: usize = 1;
const TEST: usize = 2;
/// Scheme index -> (header, prefix).
const SCHEMES: [(&str, &str); 3] = [
    ("x-api-key", "toon_"),
    ("authorization", "tk_live_"),
    ("authorization", "tk_test_"),
];

const SCOPES: [&str; 5] = [
    "usage:read",
    "tokens:read",
    "tokens:write",
    "admin",
    "other",
];
const PLANS: [Option<&str>; 4] = [None, Some("starter"), Some("free"), Some("gone-plan")];
const ACCOUNTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

/// A key the tests can present, with its hash computed once.
struct PoolKey {
    scheme: usize,
    id: String,
    key: String,
    hash: KeyHash,
    /// Never put in a table (a stranger, or an id shared with a key of another scheme).
    outsider: bool,
}

struct Fixture {
    settings: Settings,
    pool: Vec<PoolKey>,
}

/// Keys put in tables (`TABLE_KEYS` of them) come first in the pool; outsiders follow.
const TABLE_KEYS: usize = 11;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let settings = Settings::from_yaml(CONFIG).unwrap();
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let chars = |seed: usize, n: usize| -> String {
            (0..n)
                .map(|i| B62[(seed * 7 + i * 17 + i * i) % 62] as char)
                .collect()
        };
        let mut pool = Vec::new();
        let mut add = |scheme: usize, id: String, key: String, outsider: bool| {
            let s = &settings.policy.schemes[scheme];
            let hash = key::hash_key(s, key.as_bytes()).unwrap();
            pool.push(PoolKey {
                scheme,
                id,
                key,
                hash,
                outsider,
            });
        };
        for i in 0..10 {
            let scheme = [TOON, LIVE, TEST][i % 3];
            let id = chars(i, 12);
            let key = format!("{}{id}_{}", SCHEMES[scheme].1, chars(i + 100, 32));
            add(scheme, id, key, false);
        }
        // An imported sha256 key: only the prefix and the relaxed alphabet.
        add(
            LIVE,
            "imported0001".into(),
            "tk_live_imported-key_from_elsewhere".into(),
            false,
        );
        assert_eq!(TABLE_KEYS, 11);
        // Outsiders: a stranger of each scheme, and a tk_test_ key whose id is a toon key's.
        for (n, scheme) in [TOON, LIVE, TEST].into_iter().enumerate() {
            let id = chars(50 + n, 12);
            let key = format!("{}{id}_{}", SCHEMES[scheme].1, chars(150 + n, 32));
            add(scheme, id, key, true);
        }
        let toon0 = chars(0, 12);
        add(
            TEST,
            toon0.clone(),
            format!("tk_test_{toon0}_{}", chars(7, 32)),
            true,
        );
        let mut ids: Vec<(usize, &str)> = pool
            .iter()
            .filter(|p| !p.outsider)
            .map(|p| (p.scheme, p.id.as_str()))
            .collect();
        ids.sort();
        ids.dedup_by(|a, b| a.1 == b.1);
        assert_eq!(ids.len(), TABLE_KEYS, "ids in tables must be unique");
        Fixture { settings, pool }
    })
}

// ---- generated data ----

#[derive(Debug, Clone, Copy)]
enum Expiry {
    Never,
    Past,
    Now,
    Future,
}

#[derive(Debug, Clone)]
struct KeySpec {
    account: usize,
    scopes: Option<Vec<usize>>,
    expiry: Expiry,
    revoked: bool,
    disabled: bool,
}

#[derive(Debug, Clone)]
struct AccountSpec {
    status: AccountStatus,
    plan: usize,
}

#[derive(Debug, Clone)]
struct TableSpec {
    keys: Vec<Option<KeySpec>>,
    accounts: Vec<Option<AccountSpec>>,
    /// How many records go into `Table::build`; the rest arrive through `with_changes`.
    split: usize,
}

#[derive(Debug, Clone)]
enum Mangle {
    FlipLast,
    Truncate(usize),
    Append(u8),
    Insert(usize, u8),
    Uppercase,
    SwapPrefix,
}

#[derive(Debug, Clone)]
enum Form {
    /// The key as the whole value.
    Raw,
    /// `<word><spaces><key>` with surrounding whitespace.
    Bearer {
        word: &'static str,
        sep: &'static str,
        lead: &'static str,
        trail: &'static str,
    },
}

#[derive(Debug, Clone)]
enum ValueSpec {
    Key {
        idx: usize,
        mangle: Option<Mangle>,
        form: Form,
    },
    Bytes(Vec<u8>),
    Lit(&'static str),
}

#[derive(Debug, Clone)]
struct ReqSpec {
    method: &'static str,
    path: String,
    host: Option<&'static str>,
    headers: Vec<(String, ValueSpec)>,
}

fn expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        6 => Just(Expiry::Never),
        1 => Just(Expiry::Past),
        1 => Just(Expiry::Now),
        2 => Just(Expiry::Future),
    ]
}

fn key_spec() -> impl Strategy<Value = KeySpec> {
    (
        0..ACCOUNTS.len(),
        prop::option::weighted(0.4, prop::collection::vec(0..SCOPES.len(), 0..4)),
        expiry(),
        // Revoked or disabled one time in ten, as revoked alone was: allows stay common.
        prop::bool::weighted(0.08),
        prop::bool::weighted(0.02),
    )
        .prop_map(|(account, scopes, expiry, revoked, disabled)| KeySpec {
            account,
            scopes,
            expiry,
            revoked,
            disabled,
        })
}

fn account_spec() -> impl Strategy<Value = AccountSpec> {
    (
        prop_oneof![
            6 => Just(AccountStatus::Active),
            1 => Just(AccountStatus::PastDue),
            1 => Just(AccountStatus::Disabled),
        ],
        prop_oneof![3 => Just(0usize), 3 => Just(1), 1 => Just(2), 1 => Just(3)],
    )
        .prop_map(|(status, plan)| AccountSpec { status, plan })
}

fn table_spec() -> impl Strategy<Value = TableSpec> {
    (
        prop::collection::vec(prop::option::weighted(0.9, key_spec()), TABLE_KEYS),
        prop::collection::vec(prop::option::weighted(0.5, account_spec()), ACCOUNTS.len()),
        0..=TABLE_KEYS + ACCOUNTS.len(),
    )
        .prop_map(|(keys, accounts, split)| TableSpec {
            keys,
            accounts,
            split,
        })
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        Just(Mangle::FlipLast),
        (0usize..60).prop_map(Mangle::Truncate),
        any::<u8>().prop_map(Mangle::Append),
        (
            0usize..60,
            prop_oneof![Just(0u8), Just(0xff), Just(b' '), Just(b','), any::<u8>()]
        )
            .prop_map(|(i, b)| Mangle::Insert(i, b)),
        Just(Mangle::Uppercase),
        Just(Mangle::SwapPrefix),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        1 => Just(Form::Raw),
        3 => (
            prop::sample::select(&[
                "Bearer", "bearer", "BEARER", "BeArEr", "Bearer:", "Basic", "Token", "Bear",
            ][..]),
            prop::sample::select(&[" ", " ", "   ", "", "\t", " \t"][..]),
            prop::sample::select(&["", "", " ", "\t"][..]),
            prop::sample::select(&["", "", " ", "  \t"][..]),
        )
            .prop_map(|(word, sep, lead, trail)| Form::Bearer {
                word,
                sep,
                lead,
                trail,
            }),
    ]
}

fn value_spec() -> impl Strategy<Value = ValueSpec> {
    let pool = fixture().pool.len();
    prop_oneof![
        6 => (0..pool, prop::option::weighted(0.25, mangle()), form())
            .prop_map(|(idx, mangle, form)| ValueSpec::Key { idx, mangle, form }),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(ValueSpec::Bytes),
        1 => prop::sample::select(&[
            "", " ", "Bearer", "Bearer ", "Bearer    ", "toon_", "tk_live_", "Bearer tk_live_",
            "null", "\0", "Bearer \u{0}", "Bearer tk_live_AAAAAAAAAAAA_BBBB,Bearer x",
        ][..])
        .prop_map(ValueSpec::Lit),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["x-api-key", "X-API-KEY", "X-Api-Key"][..]),
        4 => prop::sample::select(&["authorization", "Authorization", "AUTHORIZATION"][..]),
        4 => prop::sample::select(&["cookie", "x-key", "authorisation", "x-api-key2", "api-key"][..]),
    ]
    .prop_map(String::from)
}

/// One header carrying a pool key the way its scheme expects (raw in `x-api-key`, Bearer in
/// `Authorization`), so a good share of requests present a usable credential.
fn proper_credential() -> impl Strategy<Value = (String, ValueSpec)> {
    let pool = fixture().pool.len();
    (
        prop_oneof![4 => 0..TABLE_KEYS, 1 => 0..pool],
        prop::sample::select(&["Bearer", "bearer", "BEARER", "bEaReR"][..]),
    )
        .prop_map(|(idx, word)| {
            let scheme = fixture().pool[idx].scheme;
            let (header, _) = SCHEMES[scheme];
            let form = if header == "authorization" {
                Form::Bearer {
                    word,
                    sep: " ",
                    lead: "",
                    trail: "",
                }
            } else {
                Form::Raw
            };
            (
                header.to_string(),
                ValueSpec::Key {
                    idx,
                    mangle: None,
                    form,
                },
            )
        })
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(
        &[
            "v1",
            "v1",
            "v2",
            "tokens",
            "tokens",
            "%74okens",
            "account",
            "usage",
            "only-live",
            "only-api-key",
            "admin",
            "x",
            ".",
            "..",
            "%2e%2E",
            "",
            "tokensmith",
            "v1%2Ftokens",
            "v1%2ftokens",
            "v1%5Ctokens",
            "a%3Fb",
            "%zz",
            "%4",
            "%41",
            "a b",
            "é",
            "€ü",
        ][..],
    );
    let sep = prop::sample::select(&["/", "/", "/", "/", "//", "\\"][..]);
    let prefix = prop::sample::select(
        &[
            "",
            "",
            "",
            "",
            "http://h.example",
            "HTTPS://h.example",
            "http:",
            "*",
            "v1",
        ][..],
    );
    let tail = prop::sample::select(&["", "", "", "/", "?x=1", "?a=/v1/tokens", "#f"][..]);
    prop_oneof![
        8 => (prefix, prop::collection::vec((sep, segment), 0..5), tail).prop_map(
            |(prefix, segs, tail)| {
                let mut s = prefix.to_string();
                for (sep, seg) in segs {
                    s.push_str(sep);
                    s.push_str(seg);
                }
                if s.is_empty() || s == "http://h.example" || s == "HTTPS://h.example" {
                    // Mostly paths: an empty target is covered by the other branch.
                    s.push('/');
                }
                s.push_str(tail);
                s
            }
        ),
        1 => "\\PC{0,20}",
    ]
}

fn req_spec() -> impl Strategy<Value = ReqSpec> {
    (
        prop::sample::select(
            &[
                "GET", "GET", "POST", "POST", "DELETE", "PUT", "get", "post", "Delete", "FOO",
                "M-SEARCH", "",
            ][..],
        ),
        path(),
        prop::sample::select(
            &[
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("API.Example:443"),
                Some("api.example."),
                Some("a.internal.example"),
                Some("x.a.internal.example:8443"),
                Some("internal.example"),
                Some("evilinternal.example"),
                Some("other.example"),
                Some("[::1]:80"),
                Some(""),
                None,
            ][..],
        ),
        prop::option::weighted(0.75, proper_credential()),
        prop_oneof![
            6 => Just(0..1),
            3 => Just(1..2),
            1 => Just(2..3),
        ]
        .prop_flat_map(|n| prop::collection::vec((header_name(), value_spec()), n)),
    )
        .prop_map(|(method, path, host, proper, extra)| {
            let mut headers: Vec<(String, ValueSpec)> = proper.into_iter().collect();
            headers.extend(extra);
            ReqSpec {
                method,
                path,
                host,
                headers,
            }
        })
}

// ---- building the real inputs ----

fn build_records(spec: &TableSpec) -> (Vec<KeyRecord>, Vec<Account>) {
    let f = fixture();
    let keys = spec
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.as_ref().map(|k| (i, k)))
        .map(|(i, k)| {
            let p = &f.pool[i];
            assert!(!p.outsider);
            KeyRecord {
                id: p.id.clone(),
                name: None,
                prefix: format!("{}{}", SCHEMES[p.scheme].1, p.id),
                account: ACCOUNTS[k.account].into(),
                scheme: f.settings.policy.schemes[p.scheme].name.clone(),
                scopes: k
                    .scopes
                    .as_ref()
                    .map(|v| v.iter().map(|&s| SCOPES[s].to_string()).collect()),
                hash: p.hash.clone(),
                created_at: NOW - 100,
                expires_at: match k.expiry {
                    Expiry::Never => None,
                    Expiry::Past => Some(NOW - 1),
                    Expiry::Now => Some(NOW),
                    Expiry::Future => Some(NOW + 1),
                },
                revoked_at: k.revoked.then_some(NOW - 5),
                last_used_at: None,
                replaces: None,
                replaced_by: None,
                rate_limits: None,
                credits: None,
                credits_version: 0,
                enabled: !k.disabled,
                meta: None,
                version: 1,
            }
        })
        .collect();
    let accounts = spec
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.as_ref().map(|a| (i, a)))
        .map(|(i, a)| Account {
            id: ACCOUNTS[i].into(),
            plan: PLANS[a.plan].map(String::from),
            status: a.status,
            updated_at: NOW - 50,
            version: 1,
        })
        .collect();
    (keys, accounts)
}

fn tables(spec: &TableSpec) -> [Table; 2] {
    let s = &fixture().settings;
    let (keys, accounts) = build_records(spec);
    let whole = Table::build(&s.policy.schemes, &s.policy.plans, &keys, &accounts, None);
    // The same records, part loaded whole and the rest applied as changes.
    let nk = spec.split.min(keys.len());
    let na = spec.split.saturating_sub(keys.len()).min(accounts.len());
    let base = Table::build(
        &s.policy.schemes,
        &s.policy.plans,
        &keys[..nk],
        &accounts[..na],
        None,
    );
    let changed = base.with_changes(
        &s.policy.schemes,
        &s.policy.plans,
        &keys[nk..],
        &accounts[na..],
    );
    [whole, changed]
}

fn resolve_value(v: &ValueSpec) -> Vec<u8> {
    match v {
        ValueSpec::Bytes(b) => b.clone(),
        ValueSpec::Lit(s) => s.as_bytes().to_vec(),
        ValueSpec::Key { idx, mangle, form } => {
            let mut k = fixture().pool[*idx].key.as_bytes().to_vec();
            match mangle {
                None => {}
                Some(Mangle::FlipLast) => {
                    let last = k.last_mut().unwrap();
                    *last = if *last == b'a' { b'b' } else { b'a' };
                }
                Some(Mangle::Truncate(n)) => k.truncate(*n),
                Some(Mangle::Append(b)) => k.push(*b),
                Some(Mangle::Insert(i, b)) => k.insert((*i).min(k.len()), *b),
                Some(Mangle::Uppercase) => k.make_ascii_uppercase(),
                Some(Mangle::SwapPrefix) => {
                    k = if let Some(rest) = k.strip_prefix(b"toon_") {
                        [b"tk_live_", rest].concat()
                    } else if let Some(rest) = k.strip_prefix(b"tk_live_") {
                        [b"tk_test_", rest].concat()
                    } else {
                        [b"toon_", &k[8..]].concat()
                    }
                }
            }
            match form {
                Form::Raw => k,
                Form::Bearer {
                    word,
                    sep,
                    lead,
                    trail,
                } => [
                    lead.as_bytes(),
                    word.as_bytes(),
                    sep.as_bytes(),
                    &k,
                    trail.as_bytes(),
                ]
                .concat(),
            }
        }
    }
}

/// Raw header bytes as a gRPC frontend may pass them: any name case, any value bytes.
struct RawHeaders(Vec<(String, Vec<u8>)>);

impl Headers for RawHeaders {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        let mut found = HeaderValue::Absent;
        for (k, v) in &self.0 {
            if k.eq_ignore_ascii_case(name) {
                if found != HeaderValue::Absent {
                    return HeaderValue::Many;
                }
                found = HeaderValue::One(v);
            }
        }
        found
    }
}

/// Verifies every secret in place (what the service does off the runtime, without a cache).
struct Verify;

impl SecretCheck for Verify {
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool> {
        Some(entry.verify(key))
    }
}

// ---- the model ----

/// What keygate must answer.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// Allowed as this pool key.
    Allow(usize),
    /// A credential problem: 401.
    Unauthorized,
    /// A valid key, refused for its account, its scopes or for want of a route: 403.
    Forbidden,
    /// A valid key on a malformed path: 400.
    BadPath,
}

fn host_matches(pattern: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let host = host.to_ascii_lowercase();
    // Drop a port unless the host is a bracketed IPv6 literal with no port.
    let host = match (host.starts_with('['), host.rfind(':')) {
        (true, _) => match host.find("]:") {
            Some(i) => host[..=i].to_string(),
            None => host,
        },
        (false, Some(i)) => host[..i].to_string(),
        (false, None) => host,
    };
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|h| h.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty()),
        None => host == pattern,
    }
}

/// The route of a path as read one way (`norm`), matched as a router that does or does not
/// ignore ASCII case would.
fn route_for(
    method: &str,
    norm: &str,
    host: Option<&str>,
    ignore_case: bool,
) -> Option<&'static ModelRoute> {
    // Every prefix of CONFIG is lowercase.
    let lowered = norm.to_ascii_lowercase();
    let norm = if ignore_case { lowered.as_str() } else { norm };
    ROUTES.iter().find(|r| {
        let prefix_ok = norm == r.prefix
            || norm.starts_with(r.prefix)
                && (r.prefix.ends_with('/') || norm.as_bytes()[r.prefix.len()] == b'/');
        prefix_ok
            && r.methods
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && r.host.is_none_or(|h| host_matches(h, host))
    })
}

/// The key a header value presents, if it is a pool key in the form its header carries.
fn presented_key(header: &str, value: &[u8]) -> Option<usize> {
    let v = value.trim_ascii();
    let key = if header == "authorization" {
        let (word, rest) = v.split_at_checked(6)?;
        if !word.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
            return None;
        }
        rest.trim_ascii_start()
    } else {
        v
    };
    fixture()
        .pool
        .iter()
        .position(|p| p.key.as_bytes() == key && SCHEMES[p.scheme].0 == header)
}

/// Every way the path may be read, as `(normalized, ignore case)`: the lenient reading first.
fn readings(path: &str) -> Result<Vec<(String, bool)>, PathError> {
    let t = Target::parse(path)?;
    let mut all = vec![t.path().into_owned()];
    all.extend(t.readings());
    let upper = t.has_upper();
    Ok(all
        .into_iter()
        .flat_map(|p| [(p.clone(), false), (p, true)])
        .filter(|(_, ci)| upper || !ci)
        .collect())
}

fn expected(table: &TableSpec, req: &ReqSpec, headers: &[(String, Vec<u8>)]) -> Expected {
    let f = fixture();
    let readings = readings(&req.path);
    let route = match &readings {
        Ok(r) => route_for(req.method, &r[0].0, req.host, false),
        Err(_) => None,
    };
    let accepted: Vec<usize> = match route.and_then(|r| r.schemes) {
        Some(s) => s.to_vec(),
        None => vec![TOON, LIVE, TEST],
    };
    let mut names: Vec<&str> = accepted.iter().map(|&s| SCHEMES[s].0).collect();
    names.dedup();
    // Exactly one credential header among those the route's schemes read.
    let creds: Vec<(&str, &[u8])> = headers
        .iter()
        .filter_map(|(n, v)| {
            names
                .iter()
                .find(|h| h.eq_ignore_ascii_case(n))
                .map(|h| (*h, v.as_slice()))
        })
        .collect();
    let [(header, value)] = creds[..] else {
        return Expected::Unauthorized;
    };
    let Some(idx) = presented_key(header, value) else {
        return Expected::Unauthorized;
    };
    let p = &f.pool[idx];
    if !accepted.contains(&p.scheme) {
        return Expected::Unauthorized;
    }
    let Some(spec) = table.keys.get(idx).and_then(|k| k.as_ref()) else {
        return Expected::Unauthorized;
    };
    let expired = matches!(spec.expiry, Expiry::Past | Expiry::Now);
    if spec.revoked || expired || spec.disabled {
        return Expected::Unauthorized;
    }
    // A valid key from here on: refusals are 403, or 400 for a malformed path.
    let Ok(readings) = readings else {
        return match readings {
            Err(PathError::Malformed) => Expected::BadPath,
            _ => Expected::Forbidden,
        };
    };
    if let Some(a) = &table.accounts[spec.account] {
        let plan_ok = match PLANS[a.plan] {
            None => true,
            Some("starter") => true,
            Some(_) => false, // `free` has no API access; `gone-plan` is not in the config
        };
        if a.status != AccountStatus::Active || !plan_ok {
            return Expected::Forbidden;
        }
    }
    // Allowed only if every reading's route takes this key.
    for (path, ignore_case) in &readings {
        let Some(route) = route_for(req.method, path, req.host, *ignore_case) else {
            return Expected::Forbidden;
        };
        if route.schemes.is_some_and(|s| !s.contains(&p.scheme)) {
            return Expected::Forbidden;
        }
        if let (Some(need), Some(have)) = (route.scope, &spec.scopes)
            && !have.iter().any(|&s| SCOPES[s] == need)
        {
            return Expected::Forbidden;
        }
    }
    Expected::Allow(idx)
}

fn actual(table: &Table, req: &ReqSpec, headers: &impl Headers) -> Result<Expected, String> {
    let f = fixture();
    let r = Request {
        method: req.method,
        path: &req.path,
        host: req.host,
        headers,
    };
    let s = &f.settings;
    match decide(&s.policy.schemes, &s.policy.routes, table, &r, NOW, &Verify) {
        Outcome::Allow(a) => {
            let idx = f
                .pool
                .iter()
                .position(|p| *p.id == *a.key.id() && p.scheme == a.key.scheme())
                .ok_or("allowed an id not in the pool")?;
            Ok(Expected::Allow(idx))
        }
        Outcome::Deny(d) => match (d.status(), d.reason) {
            (401, _) => Ok(Expected::Unauthorized),
            (403, _) => Ok(Expected::Forbidden),
            (400, Reason::BadPath) => Ok(Expected::BadPath),
            (st, reason) => Err(format!("unexpected denial {st} {reason:?}")),
        },
        Outcome::NeedsVerify { .. } => Err("NeedsVerify with a verifying SecretCheck".into()),
    }
}

/// `headers` as an `http::HeaderMap`, when every name and value is one HTTP allows.
fn header_map(headers: &[(String, Vec<u8>)]) -> Option<http::HeaderMap> {
    let mut m = http::HeaderMap::new();
    for (k, v) in headers {
        m.append(
            http::HeaderName::from_bytes(k.as_bytes()).ok()?,
            http::HeaderValue::from_bytes(v).ok()?,
        );
    }
    Some(m)
}

fn runner(default_cases: u32) -> TestRunner {
    let base = Config::default();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    let rng_seed = match base.rng_seed {
        RngSeed::Random => RngSeed::Fixed(0x6b65_7967_6174_6531),
        fixed => fixed,
    };
    TestRunner::new(Config {
        cases,
        rng_seed,
        failure_persistence: None,
        ..base
    })
}

fn check<T: std::fmt::Debug>(r: Result<(), proptest::test_runner::TestError<T>>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn decide_allows_exactly_one_valid_key_for_the_route() {
    let seen = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let with_header_map = AtomicUsize::new(0);
    let mut runner = runner(3000);
    let result = runner.run(&(table_spec(), req_spec()), |(table, req)| {
        let headers: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), resolve_value(v)))
            .collect();
        let want = expected(&table, &req, &headers);
        let raw = RawHeaders(headers.clone());
        let map = header_map(&headers);
        for (i, t) in tables(&table).iter().enumerate() {
            let got = actual(t, &req, &raw).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&got, &want, "table {} (0: built whole, 1: with changes)", i);
            if let Some(m) = &map {
                let got = actual(t, &req, &HttpHeaders(m)).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&got, &want, "through http::HeaderMap");
            }
        }
        if map.is_some() {
            with_header_map.fetch_add(1, Ordering::Relaxed);
        }
        let slot = match want {
            Expected::Allow(_) => 0,
            Expected::Unauthorized => 1,
            Expected::Forbidden | Expected::BadPath => 2,
        };
        seen[slot].fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    check(result);
    let [allow, unauth, forbid] = seen.map(|s| s.into_inner());
    eprintln!(
        "allow {allow}, 401 {unauth}, 403 {forbid}, {} through http::HeaderMap too",
        with_header_map.into_inner()
    );
    // The generators must keep exercising every outcome, not just refusals.
    let total = allow + unauth + forbid;
    for (what, n) in [("allow", allow), ("401", unauth), ("403", forbid)] {
        assert!(n * 20 >= total, "only {n} of {total} cases were {what}");
    }
}

#[test]
fn a_table_never_loaded_never_allows() {
    let mut runner = runner(1000);
    let table = Table::not_loaded();
    let result = runner.run(&req_spec(), |req| {
        let headers = RawHeaders(
            req.headers
                .iter()
                .map(|(n, v)| (n.clone(), resolve_value(v)))
                .collect(),
        );
        let s = &fixture().settings;
        let r = Request {
            method: req.method,
            path: &req.path,
            host: req.host,
            headers: &headers,
        };
        match decide(
            &s.policy.schemes,
            &s.policy.routes,
            &table,
            &r,
            NOW,
            &Verify,
        ) {
            Outcome::Deny(d) => {
                prop_assert_eq!(d.reason, Reason::NotReady);
                prop_assert_eq!(d.status(), 503);
            }
            o => prop_assert!(false, "a table never loaded answered {:?}", o),
        }
        Ok(())
    });
    check(result);
}

#[test]
fn normalized_paths_are_fixed_points_and_stay_paths() {
    // Route matching relies on these: a normalized path is a path, has no empty or dot
    // segments, keeps its non-ASCII characters as they were, and normalizing it again changes
    // nothing. Non-ASCII segments land anywhere, also across the bytes where an absolute-form
    // scheme would end (`/v1/x/é`).
    let mut runner = runner(3000);
    let result = runner.run(&path(), |p| {
        if let Ok(n) = normalize_path(&p) {
            for c in n.chars().filter(|c| !c.is_ascii()) {
                prop_assert!(p.contains(c), "{:?} -> {:?} invents {:?}", p, n, c);
            }
            prop_assert!(n.starts_with('/'), "{:?} -> {:?}", p, n);
            prop_assert!(!n.contains("//"), "{:?} -> {:?}", p, n);
            for seg in n.split('/') {
                prop_assert!(seg != "." && seg != "..", "{:?} -> {:?}", p, n);
            }
            let again = normalize_path(&n);
            prop_assert_eq!(again.as_deref(), Ok(&*n), "{:?}", p);
        }
        Ok(())
    });
    check(result);
}
