//! The fixture every property shares: keygate's config, the routes as the model reads them,
//! the schemes, scopes, plans and accounts tables draw from, and a pool of keys hashed once.

use std::sync::OnceLock;

use keygate::config::Settings;
use keygate::core::key::{self, KeyHash};

pub(crate) const NOW: i64 = 1_800_000_000;

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
pub(crate) struct ModelRoute {
    pub(crate) prefix: &'static str,
    pub(crate) methods: Option<&'static [&'static str]>,
    pub(crate) host: Option<&'static str>,
    pub(crate) scope: Option<&'static str>,
    /// Scheme indices; `None`: every scheme.
    pub(crate) schemes: Option<&'static [usize]>,
}

pub(crate) const ROUTES: &[ModelRoute] = &[
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

pub(crate) const TOON: usize = 0;
pub(crate) const LIVE: usize = 1;
pub(crate) const TEST: usize = 2;
/// Scheme index -> (header, prefix).
pub(crate) const SCHEMES: [(&str, &str); 3] = [
    ("x-api-key", "toon_"),
    ("authorization", "tk_live_"),
    ("authorization", "tk_test_"),
];

pub(crate) const SCOPES: [&str; 5] = [
    "usage:read",
    "tokens:read",
    "tokens:write",
    "admin",
    "other",
];
pub(crate) const PLANS: [Option<&str>; 4] =
    [None, Some("starter"), Some("free"), Some("gone-plan")];
pub(crate) const ACCOUNTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

/// A key the tests can present, with its hash computed once.
pub(crate) struct PoolKey {
    pub(crate) scheme: usize,
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) hash: KeyHash,
    /// Never put in a table (a stranger, or an id shared with a key of another scheme).
    pub(crate) outsider: bool,
}

pub(crate) struct Fixture {
    pub(crate) settings: Settings,
    pub(crate) pool: Vec<PoolKey>,
}

/// Keys put in tables (`TABLE_KEYS` of them) come first in the pool; outsiders follow.
pub(crate) const TABLE_KEYS: usize = 11;

pub(crate) fn fixture() -> &'static Fixture {
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
