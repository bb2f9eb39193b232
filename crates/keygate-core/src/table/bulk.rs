//! Bulk loads: entries whose ids are known to be distinct (a snapshot's buckets) are appended
//! without an index probe each and indexed together, shard by shard, so that a shard's slots
//! are filled while they are in cache instead of costing a cache miss (and, on a VM, a page
//! walk) per key and index.

use std::hash::BuildHasher;

use super::{KeyEntry, Table, entry, push};

impl Table {
    /// Appends an entry made by a [`Maker`](super::Maker) (a bulk load's, on its decoding
    /// thread) whose id no other entry of this table has, without indexing it:
    /// [`Table::index_pending`] indexes what was appended, and lookups do not see it before.
    pub fn push_entry(&mut self, e: KeyEntry) {
        push(&mut self.entries, &mut self.len, e);
    }

    /// Indexes the keys appended by [`Table::push_distinct`].
    pub fn index_pending(&mut self) {
        if self.indexed == self.len {
            return;
        }
        let Table {
            entries,
            len,
            indexed,
            by_id,
            by_digest,
            hasher,
            ..
        } = self;
        let pending = *indexed as u32..*len as u32;
        let mut ids: Vec<(u64, u32)> = pending
            .clone()
            .map(|i| (hasher.hash_one(entry(entries, i).id()), i))
            .collect();
        by_id.insert_many(
            &mut ids,
            |a, b| entry(entries, a).id() == entry(entries, b).id(),
            |&j| hasher.hash_one(entry(entries, j).id()),
        );
        drop(ids);
        let mut digests: Vec<(u64, u32)> = pending
            .filter_map(|i| Some((hasher.hash_one(entry(entries, i).digest()?), i)))
            .collect();
        by_digest.insert_many(
            &mut digests,
            |a, b| entry(entries, a).digest() == entry(entries, b).digest(),
            |&j| entry(entries, j).digest().map_or(0, |d| hasher.hash_one(d)),
        );
        *indexed = *len;
    }
}
