//! The shared setup of the core benchmarks: the shipped config, a table of `TABLE_KEYS` keys
//! with the ones the `decide` benchmarks present, and the service's HMAC cache hit path.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use keygate::config::Settings;
use keygate::core::decide::SecretCheck;
use keygate::core::key::{self, Account, AccountStatus, KeyHash, KeyRecord};
use keygate::core::scheme::Scheme;
use keygate::core::table::{KeyEntry, Table};

pub(crate) const NOW: i64 = 1_800_000_000;
pub(crate) const HOST: &str = "api.example";
const TABLE_KEYS: usize = 1_000;
const ACCOUNTS: usize = 100;

/// The service draws its HMAC key at random per process; the key's value does not change the
/// cost, so a fixed one will do.
const HMAC_KEY: [u8; 32] = [0x5a; 32];

/// The shared `decide` fixture: the shipped config, and a table of `TABLE_KEYS` keys spread
/// over `ACCOUNTS` active accounts, among them the keys each benchmark presents.
pub(crate) struct Fixture {
    pub(crate) settings: Settings,
    pub(crate) table: Table,
    /// sha256 scheme, scopes `[tokens:read]`.
    pub(crate) live: String,
    /// Argon2 scheme, scopes `[tokens:read]`.
    pub(crate) toon: String,
    /// sha256 scheme, revoked.
    pub(crate) revoked: String,
    /// Well-formed sha256 key that is not in the table.
    pub(crate) unknown: String,
}

/// Built once: the Argon2 hash of the `toon` key alone takes tens of milliseconds.
pub(crate) static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

pub(crate) fn settings() -> Settings {
    Settings::from_yaml(include_str!("../../config/keygate.yaml")).expect("config/keygate.yaml")
}

pub(crate) fn scheme<'s>(settings: &'s Settings, name: &str) -> &'s Scheme {
    let i = settings
        .scheme_index(name)
        .expect("scheme in config/keygate.yaml");
    &settings.policy.schemes[i]
}

pub(crate) fn record(scheme: &Scheme, id: String, hash: KeyHash, account: String) -> KeyRecord {
    let prefix = format!("{}{}", scheme.key_prefix, id);
    KeyRecord::new(id, prefix, account, scheme.name.clone(), hash, NOW - 86_400)
}

/// Generates a key of `s` for the next account in turn, stores its record, returns the key.
fn add(keys: &mut Vec<KeyRecord>, s: &Scheme, scopes: Option<&[&str]>) -> String {
    let k = key::generate(s);
    let hash = key::hash_key(s, k.key.as_bytes()).expect("hash");
    let account = format!("acct-{}", keys.len() % ACCOUNTS);
    let mut r = record(s, k.id.clone(), hash, account);
    r.scopes = scopes.map(|v| v.iter().map(|s| s.to_string()).collect());
    keys.push(r);
    k.key.to_string()
}

impl Fixture {
    fn new() -> Fixture {
        let settings = settings();
        let live_s = scheme(&settings, "live");
        let toon_s = scheme(&settings, "toon");
        let accounts: Vec<Account> = (0..ACCOUNTS)
            .map(|i| Account {
                id: format!("acct-{i}"),
                plan: Some(if i % 2 == 0 { "pro" } else { "starter" }.into()),
                status: AccountStatus::Active,
                updated_at: NOW,
                version: 1,
            })
            .collect();
        let mut keys = Vec::with_capacity(TABLE_KEYS);
        let live = add(&mut keys, live_s, Some(&["tokens:read"]));
        let toon = add(&mut keys, toon_s, Some(&["tokens:read"]));
        let revoked = add(&mut keys, live_s, None);
        keys.last_mut().unwrap().revoked_at = Some(NOW - 60);
        // The rest are filler so the maps have a realistic size, not a single bucket.
        while keys.len() < TABLE_KEYS {
            add(&mut keys, live_s, None);
        }
        let unknown = key::generate(live_s).key.to_string();
        let table = Table::build(
            &settings.policy.schemes,
            &settings.policy.plans,
            &keys,
            &accounts,
            None,
        );
        assert_eq!(table.len(), TABLE_KEYS);
        Fixture {
            settings,
            table,
            live,
            toon,
            revoked,
            unknown,
        }
    }
}

/// The hit path of the service's `Cached::cached` (src/service.rs): an HMAC of the presented
/// key, compared in constant time with the digest the entry kept from its last verification.
/// The service also bumps a Prometheus counter on a hit, which is left out here.
pub(crate) struct HmacCache {
    mac: Hmac<Sha256>,
}

impl HmacCache {
    pub(crate) fn new() -> HmacCache {
        HmacCache {
            mac: Hmac::<Sha256>::new_from_slice(&HMAC_KEY).expect("HMAC takes any key length"),
        }
    }

    pub(crate) fn digest(&self, key: &[u8]) -> [u8; 32] {
        // Cloning the keyed state skips re-deriving the inner and outer pads per request.
        let mut m = self.mac.clone();
        m.update(key);
        m.finalize().into_bytes().into()
    }
}

impl SecretCheck for HmacCache {
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool> {
        match entry.verified() {
            Some(d) if bool::from(self.digest(key).ct_eq(d)) => Some(true),
            _ => None,
        }
    }
}
