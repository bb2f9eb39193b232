//! The key table snapshot the core decides from: immutable, shared behind an `Arc`, replaced
//! by a new snapshot when the store changes (built whole, or derived from the previous one
//! plus the records a change touched).
//!
//! Entries live inline in chunks of [`CHUNK`], numbered by 32-bit indexes, in copy-on-write
//! trees ([`tree`]): a SHA-256 key costs its 72-byte entry and two index slots of 5 bytes,
//! and a change copies one chunk and the index shards it touches, whatever the table's size.

mod bulk;
mod entry;
mod handle;
mod index;
mod maker;
mod tree;

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

pub use super::key::HashRef;
use super::key::{Account, AccountStatus, KeyRecord};
use super::limit::RateLimit;
use super::policy::Plan;
use super::scheme::Scheme;
pub use entry::{KeyEntry, Owner, Scopes};
pub use handle::{Found, KeyRef};
use index::Index;
pub use maker::Maker;
use tree::Tree;

/// Entries per chunk: a change copies one chunk (36 KB).
const CHUNK: usize = 512;
/// Shards of the account map, sized for a million accounts at a thousand each.
const ACCOUNT_SHARDS: usize = 1024;

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

type Chunk = Vec<KeyEntry>;

/// The immutable snapshot.
#[derive(Clone)]
pub struct Table {
    loaded: bool,
    entries: Tree<Chunk>,
    len: usize,
    /// Entries below this number are in the indexes; the rest were added by a bulk load
    /// ([`Table::push_distinct`]) and are indexed together.
    indexed: usize,
    by_id: Index,
    by_digest: Index,
    accounts: Tree<HashTable<(Box<str>, AccountEntry)>>,
    /// Kept by clones: shared shards were laid out with it.
    hasher: DefaultHashBuilder,
    /// Plan names, shared by the accounts on them.
    plans: Vec<Arc<str>>,
    maker: Maker,
    /// Records skipped because their scheme is not configured.
    pub skipped: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            loaded: false,
            entries: Tree::default(),
            len: 0,
            indexed: 0,
            by_id: Index::default(),
            by_digest: Index::default(),
            accounts: Tree::from_fn(ACCOUNT_SHARDS, |_| HashTable::new()),
            hasher: DefaultHashBuilder::default(),
            plans: Vec::new(),
            maker: Maker::default(),
            skipped: 0,
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("loaded", &self.loaded)
            .field("len", &self.len)
            .field("by_id", &self.by_id)
            .field("by_digest", &self.by_digest)
            .finish_non_exhaustive()
    }
}

/// Appends `e` to the entries; its number.
fn push(entries: &mut Tree<Chunk>, len: &mut usize, e: KeyEntry) -> u32 {
    let i = u32::try_from(*len).expect("a table holds fewer than 2^32 keys");
    match entries.last_mut().filter(|c| c.len() < CHUNK) {
        Some(c) => c.push(e),
        None => {
            let mut c = Vec::with_capacity(CHUNK);
            c.push(e);
            entries.push(c);
        }
    }
    *len += 1;
    i
}

fn entry(entries: &Tree<Chunk>, i: u32) -> &KeyEntry {
    &entries.get(i as usize / CHUNK)[i as usize % CHUNK]
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

    /// Room for `keys` more keys. Sized once: growing indexes of a million entries rehashes
    /// them many times.
    pub fn reserve(&mut self, keys: usize) {
        let Table {
            entries,
            by_id,
            by_digest,
            hasher,
            ..
        } = self;
        by_id.reserve(keys, |&i| hasher.hash_one(entry(entries, i).id()));
        by_digest.reserve(keys, |&i| {
            entry(entries, i).digest().map_or(0, |d| hasher.hash_one(d))
        });
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
        // Cloning copies a few hundred pointers; a change then copies the chunk and the index
        // shards it touches, not the table.
        let mut t = self.clone();
        t.loaded = true;
        for rec in keys {
            if t.by_id(rec.id.as_bytes())
                .is_some_and(|e| e.version() > rec.version)
            {
                continue;
            }
            t.upsert_key(schemes, rec, Some(self));
        }
        for a in accounts {
            if t.account(&a.id).is_some_and(|e| e.version > a.version) {
                continue;
            }
            t.upsert_account(plans, a);
        }
        t
    }

    /// The entry for `rec` (`None`, counted in `skipped`, if its scheme is not configured);
    /// `old`: the entry it replaces.
    fn new_entry(
        &mut self,
        schemes: &[Scheme],
        rec: &KeyRecord,
        prev: Option<&Table>,
        old: Option<u32>,
    ) -> Option<KeyEntry> {
        let reuse = old.map(|i| entry(&self.entries, i).owner());
        let new = self.maker.record(schemes, rec, reuse, prev);
        self.skipped += std::mem::take(&mut self.maker.skipped);
        new
    }

    /// Adds or replaces the key of `rec`; its verification cache is kept from `prev` when the
    /// record there is the same. A record of a scheme not in `schemes` is counted in `skipped`.
    pub fn upsert_key(&mut self, schemes: &[Scheme], rec: &KeyRecord, prev: Option<&Table>) {
        self.index_pending();
        let hid = self.hasher.hash_one(rec.id.as_str());
        let old = {
            let entries = &self.entries;
            self.by_id.find(hid, |&i| entry(entries, i).id() == rec.id)
        };
        let Some(new) = self.new_entry(schemes, rec, prev, old) else {
            return;
        };
        let digest = new.digest().copied();
        let Table {
            entries,
            len,
            indexed,
            by_id,
            by_digest,
            hasher,
            ..
        } = self;
        let i = match old {
            Some(i) => {
                let was = entry(entries, i).digest().copied();
                if was != digest
                    && let Some(d) = was
                {
                    by_digest.remove(hasher.hash_one(d), i);
                }
                let (c, s) = (i as usize / CHUNK, i as usize % CHUNK);
                entries.get_mut(c)[s] = new;
                if was == digest {
                    return;
                }
                i
            }
            None => {
                let i = push(entries, len, new);
                *indexed = *len;
                by_id.insert(
                    hid,
                    i,
                    |_| false,
                    |&j| hasher.hash_one(entry(entries, j).id()),
                );
                i
            }
        };
        if let Some(d) = digest {
            by_digest.insert(
                hasher.hash_one(d),
                i,
                |&j| entry(entries, j).digest() == Some(&d),
                |&j| entry(entries, j).digest().map_or(0, |d| hasher.hash_one(d)),
            );
        }
    }

    fn account_shard(&self, id: &str) -> (usize, u64) {
        let h = self.hasher.hash_one(id);
        (
            (((h >> 25) & 0xffff_ffff) as usize * ACCOUNT_SHARDS) >> 32,
            h,
        )
    }

    pub fn upsert_account(&mut self, plans: &BTreeMap<String, Plan>, a: &Account) {
        let plan = a.plan.as_deref().and_then(|p| plans.get(p));
        let api_access = a.plan.is_none() || plan.is_some_and(|p| p.api_access);
        let limits = plan.map_or_else(|| Arc::from([]), |p| p.rate_limits.clone());
        let plan = a.plan.as_deref().map(|p| {
            if let Some(n) = self.plans.iter().find(|n| ***n == *p) {
                return Arc::clone(n);
            }
            let n: Arc<str> = p.into();
            self.plans.push(Arc::clone(&n));
            n
        });
        let e = AccountEntry {
            plan,
            status: a.status,
            api_access,
            limits,
            version: a.version,
        };
        let (shard, h) = self.account_shard(&a.id);
        let hasher = &self.hasher;
        let t = self.accounts.get_mut(shard);
        match t.find_mut(h, |(id, _)| **id == *a.id) {
            Some(slot) => slot.1 = e,
            None => {
                t.insert_unique(h, (a.id.as_str().into(), e), |(id, _)| {
                    hasher.hash_one(&**id)
                });
            }
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn found(&self, i: u32) -> Found<'_> {
        Found::new(
            self.entries.part(i as usize / CHUNK),
            (i as usize % CHUNK) as u32,
        )
    }

    pub fn by_id(&self, id: &[u8]) -> Option<Found<'_>> {
        let id = std::str::from_utf8(id).ok()?;
        let h = self.hasher.hash_one(id);
        let i = self
            .by_id
            .find(h, |&i| entry(&self.entries, i).id() == id)?;
        Some(self.found(i))
    }

    pub fn by_digest(&self, digest: &[u8; 32]) -> Option<Found<'_>> {
        let h = self.hasher.hash_one(digest);
        let i = self
            .by_digest
            .find(h, |&i| entry(&self.entries, i).digest() == Some(digest))?;
        Some(self.found(i))
    }

    pub fn account(&self, id: &str) -> Option<&AccountEntry> {
        let (shard, h) = self.account_shard(id);
        self.accounts
            .get(shard)
            .find(h, |(a, _)| **a == *id)
            .map(|(_, e)| e)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.entries.iter().flatten()
    }

    /// Heap bytes of the entries and indexes (not of what they share: owners, extras), for
    /// the size model benchmarks print.
    pub fn heap_bytes(&self) -> usize {
        let chunks: usize = self
            .entries
            .iter()
            .map(|c| c.capacity() * size_of::<KeyEntry>())
            .sum();
        chunks + self.by_id.heap_bytes() + self.by_digest.heap_bytes()
    }
}

#[cfg(test)]
mod tests;
