//! The key table snapshot the core decides from: immutable, shared behind an `Arc`, replaced
//! by a new snapshot when the store changes (built whole, or derived from the previous one
//! plus the records a change touched).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use super::key::{Account, AccountStatus, KeyHash, KeyRecord};
use super::scheme::Scheme;
use crate::config::Plan;

/// A key's scope restriction, shared by every key with the same list.
#[derive(Debug, PartialEq, Eq)]
pub struct Scopes {
    pub list: Box<[Box<str>]>,
    /// Joined by spaces, for the identity header.
    pub joined: Box<str>,
}

/// One key, ready for decisions.
pub struct KeyEntry {
    pub id: Arc<str>,
    pub account: Arc<str>,
    pub scheme: usize,
    /// `None`: every route.
    pub scopes: Option<Arc<Scopes>>,
    pub hash: KeyHash,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub version: u64,
    /// Keyed digest of the key that last verified against `hash` (Argon2 schemes). It lives
    /// and dies with this entry, so a change of the record (which makes a new entry) drops it.
    pub verified: OnceLock<[u8; 32]>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("account", &self.account)
            .field("scheme", &self.scheme)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What the core needs of an account.
#[derive(Debug, Clone)]
pub struct AccountEntry {
    pub plan: Option<Arc<str>>,
    pub status: AccountStatus,
    /// From the plan; an account on a plan missing from the config has no access.
    pub api_access: bool,
    pub version: u64,
}

/// Shards per key map: a change copies one shard (copy on write), not the whole map.
const SHARDS: usize = 64;

/// Bytes a map key is sharded by.
trait KeyBytes {
    fn key_bytes(&self) -> &[u8];
}

impl KeyBytes for Arc<str> {
    fn key_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl KeyBytes for str {
    fn key_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl KeyBytes for [u8; 32] {
    fn key_bytes(&self) -> &[u8] {
        self
    }
}

/// A hash map split into shards behind `Arc`s, so snapshots share every shard they do not
/// change.
#[derive(Clone)]
struct Sharded<K, V> {
    shards: Box<[Arc<HashMap<K, V>>]>,
    len: usize,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
            len: 0,
        }
    }
}

impl<K, V> std::fmt::Debug for Sharded<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded").field("len", &self.len).finish()
    }
}

fn shard_of(bytes: &[u8]) -> usize {
    // FNV-1a: cheap, and ids and digests are random already.
    let h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    (h as usize) % SHARDS
}

impl<K: KeyBytes + std::hash::Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: KeyBytes + std::hash::Hash + Eq + ?Sized,
    {
        self.shards[shard_of(k.key_bytes())].get(k)
    }

    fn insert(&mut self, k: K, v: V) {
        let shard = Arc::make_mut(&mut self.shards[shard_of(k.key_bytes())]);
        if shard.insert(k, v).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, k: &K) {
        let shard = Arc::make_mut(&mut self.shards[shard_of(k.key_bytes())]);
        if shard.remove(k).is_some() {
            self.len -= 1;
        }
    }

    fn reserve(&mut self, n: usize) {
        for s in self.shards.iter_mut() {
            Arc::make_mut(s).reserve(n / SHARDS + 1);
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// The immutable snapshot.
#[derive(Debug, Default, Clone)]
pub struct Table {
    loaded: bool,
    by_id: Sharded<Arc<str>, Arc<KeyEntry>>,
    by_digest: Sharded<[u8; 32], Arc<KeyEntry>>,
    accounts: HashMap<Arc<str>, AccountEntry>,
    /// Shared strings: one allocation per distinct account name and scope list.
    names: HashMap<Arc<str>, ()>,
    scope_lists: HashMap<Vec<String>, Arc<Scopes>>,
    /// Records skipped because their scheme is not configured.
    pub skipped: usize,
}

impl Table {
    /// The table before the first load: every decision is `not_ready`.
    pub fn not_loaded() -> Table {
        Table::default()
    }

    /// Builds a snapshot. Entries whose record is unchanged since `prev` keep their
    /// verification cache.
    pub fn build<'r>(
        schemes: &[Scheme],
        plans: &BTreeMap<String, Plan>,
        keys: impl IntoIterator<Item = &'r KeyRecord>,
        accounts: impl IntoIterator<Item = &'r Account>,
        prev: Option<&Table>,
    ) -> Table {
        let mut t = Table {
            loaded: true,
            ..Table::default()
        };
        let keys = keys.into_iter();
        // Sized once: growing maps of a million entries rehashes them many times.
        t.by_id.reserve(keys.size_hint().0);
        t.by_digest.reserve(keys.size_hint().0);
        for rec in keys {
            t.upsert_key(schemes, rec, prev);
        }
        for a in accounts {
            t.upsert_account(plans, a);
        }
        t
    }

    /// A new snapshot: this one with `keys` and `accounts` replaced or added. A record older
    /// (by version) than the one held is ignored, so replaying a change is harmless.
    pub fn with_changes(
        &self,
        schemes: &[Scheme],
        plans: &BTreeMap<String, Plan>,
        keys: &[KeyRecord],
        accounts: &[Account],
    ) -> Table {
        // Cloning copies shard pointers; only the shards a change touches are copied, so a
        // change costs a 64th of the table, not all of it.
        let mut t = self.clone();
        t.loaded = true;
        for rec in keys {
            if t.by_id
                .get(rec.id.as_str())
                .is_some_and(|e| e.version > rec.version)
            {
                continue;
            }
            t.upsert_key(schemes, rec, Some(self));
        }
        for a in accounts {
            if t.accounts
                .get(a.id.as_str())
                .is_some_and(|e| e.version > a.version)
            {
                continue;
            }
            t.upsert_account(plans, a);
        }
        t
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some((k, _)) = self.names.get_key_value(s) {
            return k.clone();
        }
        let a: Arc<str> = s.into();
        self.names.insert(a.clone(), ());
        a
    }

    fn upsert_key(&mut self, schemes: &[Scheme], rec: &KeyRecord, prev: Option<&Table>) {
        let Some(scheme) = schemes.iter().position(|s| s.name == rec.scheme) else {
            self.skipped += 1;
            return;
        };
        let scopes = rec.scopes.as_ref().map(|v| {
            if let Some(s) = self.scope_lists.get(v) {
                return s.clone();
            }
            let s = Arc::new(Scopes {
                list: v.iter().map(|s| s.as_str().into()).collect(),
                joined: v.join(" ").into(),
            });
            self.scope_lists.insert(v.clone(), s.clone());
            s
        });
        let old = self.by_id.get(rec.id.as_str()).cloned();
        let entry = Arc::new(KeyEntry {
            id: old
                .as_ref()
                .map_or_else(|| rec.id.as_str().into(), |o| o.id.clone()),
            account: self.intern(&rec.account),
            scheme,
            scopes,
            hash: rec.hash.clone(),
            expires_at: rec.expires_at,
            revoked_at: rec.revoked_at,
            version: rec.version,
            verified: OnceLock::new(),
        });
        if let Some(o) = prev.and_then(|p| p.by_id.get(rec.id.as_str()))
            && o.version == rec.version
            && o.hash == rec.hash
            && let Some(d) = o.verified.get()
        {
            let _ = entry.verified.set(*d);
        }
        if let Some(KeyHash::Sha256(d)) = old.as_ref().map(|o| &o.hash) {
            self.by_digest.remove(d);
        }
        if let KeyHash::Sha256(d) = &entry.hash {
            self.by_digest.insert(*d, entry.clone());
        }
        self.by_id.insert(entry.id.clone(), entry);
    }

    fn upsert_account(&mut self, plans: &BTreeMap<String, Plan>, a: &Account) {
        let api_access = match &a.plan {
            None => true,
            Some(p) => plans.get(p).is_some_and(|p| p.api_access),
        };
        let plan = a.plan.as_deref().map(|p| self.intern(p));
        let id = self.intern(&a.id);
        self.accounts.insert(
            id,
            AccountEntry {
                plan,
                status: a.status,
                api_access,
                version: a.version,
            },
        );
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.len() == 0
    }

    pub fn by_id(&self, id: &[u8]) -> Option<&Arc<KeyEntry>> {
        std::str::from_utf8(id)
            .ok()
            .and_then(|id| self.by_id.get(id))
    }

    pub fn by_digest(&self, digest: &[u8; 32]) -> Option<&Arc<KeyEntry>> {
        self.by_digest.get(digest)
    }

    pub fn account(&self, id: &str) -> Option<&AccountEntry> {
        self.accounts.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::key::sha256;

    fn rec(id: &str, version: u64, revoked: bool) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: None,
            prefix: String::new(),
            account: "acme".into(),
            scheme: "s".into(),
            scopes: Some(vec!["a".into()]),
            hash: KeyHash::Sha256(sha256(id.as_bytes())),
            created_at: 0,
            expires_at: None,
            revoked_at: revoked.then_some(1),
            last_used_at: None,
            replaces: None,
            replaced_by: None,
            version,
        }
    }

    #[test]
    fn changes_apply_in_version_order_and_share_the_rest() {
        let schemes = [Scheme::new(
            "s".into(),
            "x-api-key".into(),
            "p_".into(),
            crate::core::scheme::HashKind::Sha256,
            1,
            100,
        )];
        let plans = BTreeMap::new();
        let t = Table::build(
            &schemes,
            &plans,
            &[rec("a", 1, false), rec("b", 1, false)],
            [],
            None,
        );
        let t2 = t.with_changes(&schemes, &plans, &[rec("a", 2, true)], &[]);
        assert!(t2.by_id(b"a").unwrap().revoked_at.is_some());
        assert!(Arc::ptr_eq(t.by_id(b"b").unwrap(), t2.by_id(b"b").unwrap()));
        assert!(
            t.by_id(b"a").unwrap().revoked_at.is_none(),
            "the old snapshot is unchanged"
        );
        // Replaying an older version changes nothing.
        let t3 = t2.with_changes(&schemes, &plans, &[rec("a", 1, false)], &[]);
        assert!(t3.by_id(b"a").unwrap().revoked_at.is_some());
        // Scope lists and account names are shared.
        let (a, b) = (t3.by_id(b"a").unwrap(), t3.by_id(b"b").unwrap());
        assert!(Arc::ptr_eq(
            a.scopes.as_ref().unwrap(),
            b.scopes.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(&a.account, &b.account));
        assert_eq!(t3.by_digest(&sha256(b"b")).unwrap().id.as_ref(), "b");
    }
}
