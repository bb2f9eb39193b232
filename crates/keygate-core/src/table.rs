//! The key table snapshot the core decides from: immutable, shared behind an `Arc`, replaced
//! by a new snapshot when the store changes (built whole, or derived from the previous one
//! plus the records a change touched).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, RandomState};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use compact_str::CompactString;
use hashbrown::HashTable;

use super::key::{Account, AccountStatus, KeyHash, KeyRecord};
use super::limit::{Credits, RateLimit};
use super::policy::Plan;
use super::scheme::Scheme;

/// A key's scope restriction, shared by every key with the same list.
#[derive(Debug, PartialEq, Eq)]
pub struct Scopes {
    pub list: Box<[Box<str>]>,
    /// Joined by spaces, for the identity header.
    pub joined: Box<str>,
}

/// One key, ready for decisions. Kept small: a table holds a million of them.
pub struct KeyEntry {
    /// Inline up to 24 bytes (keygate's ids are 12), so no allocation of its own.
    pub id: CompactString,
    pub account: Arc<str>,
    /// `None`: every route.
    pub scopes: Option<Arc<Scopes>>,
    pub hash: KeyHash,
    /// Unix seconds; `i64::MAX` for a key that never expires.
    expires_at: i64,
    pub version: u64,
    /// What only some keys have, behind one pointer: `None` for a SHA-256 key without limits
    /// or credits of its own. It lives and dies with this entry, so a change of the record
    /// (which makes a new entry) drops the verification it remembers.
    extra: Option<Box<Extra>>,
    scheme: u16,
    pub revoked: bool,
}

impl KeyEntry {
    /// The key's own limits, in place of its plan's.
    pub fn limits(&self) -> Option<&Arc<[RateLimit]>> {
        self.extra.as_ref()?.limits.as_ref()
    }

    /// The key's credits as last set, and the record version that set them.
    pub fn credits(&self) -> Option<&(Credits, u64)> {
        self.extra.as_ref()?.credits.as_ref()
    }

    /// Index of the key's scheme in the configured schemes.
    pub fn scheme(&self) -> usize {
        usize::from(self.scheme)
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }

    /// The keyed digest of the key that last verified (Argon2 entries).
    pub fn verified(&self) -> Option<&[u8; 32]> {
        self.extra.as_ref()?.verified.as_ref()?.get()
    }

    /// Remembers a successful verification; the first one wins, later ones are the same key.
    pub fn set_verified(&self, digest: [u8; 32]) {
        if let Some(v) = self.extra.as_ref().and_then(|x| x.verified.as_ref()) {
            let _ = v.set(digest);
        }
    }
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

/// The parts of a [`KeyEntry`] most keys lack.
#[derive(Debug, Default)]
struct Extra {
    /// Keyed digest of the key that last verified against the hash; Argon2 entries only.
    verified: Option<OnceLock<[u8; 32]>>,
    limits: Option<Arc<[RateLimit]>>,
    credits: Option<(Credits, u64)>,
}

/// What the core needs of an account.
#[derive(Debug, Clone)]
pub struct AccountEntry {
    pub plan: Option<Arc<str>>,
    pub status: AccountStatus,
    /// From the plan; an account on a plan missing from the config has no access.
    pub api_access: bool,
    /// The plan's limits.
    pub limits: Arc<[RateLimit]>,
    pub version: u64,
}

/// Shards per key index: a change copies one shard (copy on write), not the whole index.
const SHARDS: usize = 64;

/// The field an index finds entries by.
trait Keyed {
    type K: ?Sized + Hash + Eq;
    /// `None`: the entry is not in this index.
    fn key(e: &KeyEntry) -> Option<&Self::K>;
}

struct ById;
impl Keyed for ById {
    type K = str;
    fn key(e: &KeyEntry) -> Option<&str> {
        Some(&e.id)
    }
}

/// SHA-256 entries by the digest of their key.
struct ByDigest;
impl Keyed for ByDigest {
    type K = [u8; 32];
    fn key(e: &KeyEntry) -> Option<&[u8; 32]> {
        match &e.hash {
            KeyHash::Sha256(d) => Some(d),
            KeyHash::Argon2id(_) => None,
        }
    }
}

/// Entries by one of their fields, in hash tables of bare entry pointers (the key is read
/// from the entry, not stored beside it), split into shards behind `Arc`s so that snapshots
/// share every shard a change does not touch.
struct Index<I> {
    shards: Box<[Arc<HashTable<Arc<KeyEntry>>>]>,
    /// Kept by clones: shared shards were laid out with it.
    hasher: RandomState,
    len: usize,
    of: PhantomData<I>,
}

impl<I> Clone for Index<I> {
    fn clone(&self) -> Self {
        Index {
            shards: self.shards.clone(),
            hasher: self.hasher.clone(),
            len: self.len,
            of: PhantomData,
        }
    }
}

impl<I> Default for Index<I> {
    fn default() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect(),
            hasher: RandomState::new(),
            len: 0,
            of: PhantomData,
        }
    }
}

impl<I> std::fmt::Debug for Index<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("len", &self.len).finish()
    }
}

/// The shard of a hash: bits the tables themselves do not use (their bucket index comes from
/// the low bits, their tag from the top seven).
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl<I: Keyed> Index<I> {
    fn rehash(hasher: &RandomState, e: &KeyEntry) -> u64 {
        I::key(e).map_or(0, |k| hasher.hash_one(k))
    }

    fn get(&self, k: &I::K) -> Option<&Arc<KeyEntry>> {
        let h = self.hasher.hash_one(k);
        self.shards[shard_of(h)].find(h, |e| I::key(e) == Some(k))
    }

    /// Adds `e`, replacing the entry with the same key; an entry without a key is left out.
    fn insert(&mut self, e: Arc<KeyEntry>) {
        let Some(k) = I::key(&e) else {
            return;
        };
        let h = self.hasher.hash_one(k);
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        if let Some(slot) = shard.find_mut(h, |o| I::key(o) == Some(k)) {
            *slot = e;
        } else {
            shard.insert_unique(h, e, |o| Self::rehash(&self.hasher, o));
            self.len += 1;
        }
    }

    fn remove(&mut self, k: &I::K) {
        let h = self.hasher.hash_one(k);
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        if let Ok(o) = shard.find_entry(h, |e| I::key(e) == Some(k)) {
            o.remove();
            self.len -= 1;
        }
    }

    fn reserve(&mut self, n: usize) {
        for s in self.shards.iter_mut() {
            Arc::make_mut(s).reserve(n / SHARDS + 1, |o| Self::rehash(&self.hasher, o));
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
    by_id: Index<ById>,
    by_digest: Index<ByDigest>,
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
        let keys = keys.into_iter();
        let mut t = Table::with_capacity(keys.size_hint().0);
        for rec in keys {
            t.upsert_key(schemes, rec, prev);
        }
        for a in accounts {
            t.upsert_account(plans, a);
        }
        t
    }

    /// An empty loaded table with room for `keys` keys, to be filled with [`Table::upsert_key`]
    /// and [`Table::upsert_account`] before it is published (a bulk load builds it while it
    /// reads).
    pub fn with_capacity(keys: usize) -> Table {
        let mut t = Table {
            loaded: true,
            ..Table::default()
        };
        t.reserve(keys);
        t
    }

    /// Room for `keys` more keys. Sized once: growing maps of a million entries rehashes
    /// them many times.
    pub fn reserve(&mut self, keys: usize) {
        self.by_id.reserve(keys);
        self.by_digest.reserve(keys);
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

    /// Adds or replaces the key of `rec`; its verification cache is kept from `prev` when the
    /// record there is the same. A record of a scheme not in `schemes` is counted in `skipped`.
    pub fn upsert_key(&mut self, schemes: &[Scheme], rec: &KeyRecord, prev: Option<&Table>) {
        let Some(scheme) = schemes
            .iter()
            .position(|s| s.name == rec.scheme)
            .and_then(|i| u16::try_from(i).ok())
        else {
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
        let argon2 = matches!(rec.hash, KeyHash::Argon2id(_));
        let entry = Arc::new(KeyEntry {
            id: rec.id.as_str().into(),
            account: self.intern(&rec.account),
            scopes,
            hash: rec.hash.clone(),
            expires_at: rec.expires_at.unwrap_or(i64::MAX),
            version: rec.version,
            extra: (argon2 || rec.rate_limits.is_some() || rec.credits.is_some()).then(|| {
                Box::new(Extra {
                    verified: argon2.then(OnceLock::new),
                    limits: rec.rate_limits.as_deref().map(Arc::from),
                    credits: rec.credits.clone().map(|c| (c, rec.credits_version)),
                })
            }),
            scheme,
            revoked: rec.revoked_at.is_some(),
        });
        if let Some(o) = prev.and_then(|p| p.by_id.get(rec.id.as_str()))
            && o.version == rec.version
            && o.hash == rec.hash
            && let Some(d) = o.verified()
        {
            entry.set_verified(*d);
        }
        if let Some(KeyHash::Sha256(d)) = self.by_id.get(rec.id.as_str()).map(|o| &o.hash) {
            let d = *d;
            self.by_digest.remove(&d);
        }
        self.by_digest.insert(entry.clone());
        self.by_id.insert(entry);
    }

    pub fn upsert_account(&mut self, plans: &BTreeMap<String, Plan>, a: &Account) {
        let plan = a.plan.as_deref().and_then(|p| plans.get(p));
        let api_access = a.plan.is_none() || plan.is_some_and(|p| p.api_access);
        let limits = plan.map_or_else(|| Arc::from([]), |p| p.rate_limits.clone());
        let plan = a.plan.as_deref().map(|p| self.intern(p));
        let id = self.intern(&a.id);
        self.accounts.insert(
            id,
            AccountEntry {
                plan,
                status: a.status,
                api_access,
                limits,
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
mod tests;
