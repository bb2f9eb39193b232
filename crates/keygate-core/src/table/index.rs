//! An index of entry numbers (32-bit) by a hash of one of their fields, split into shards in
//! a copy-on-write [`Tree`]. The field is read from the entry, not stored beside it: a slot is
//! four bytes and a control byte.

use hashbrown::HashTable;

use super::tree::Tree;

/// Shard counts stop here: past it shards grow instead, so a snapshot's clone stays cheap.
const MAX_SHARDS: usize = 4096;
/// The smallest shard, in slots.
const MIN_SLOTS: usize = 256;

#[derive(Clone, Default)]
pub struct Index {
    shards: Tree<HashTable<u32>>,
    len: usize,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("len", &self.len)
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Shards for `n` entries such that each is about three quarters full once they are in: the
/// tables' slot counts are powers of two, the shard count need not be, so the fill does not
/// depend on where `n` falls between two powers of two.
fn shards_for(n: usize) -> usize {
    let mut slots = MIN_SLOTS;
    loop {
        let s = n.div_ceil(slots * 3 / 4);
        if s <= MAX_SHARDS {
            return s.max(1);
        }
        slots *= 2;
    }
}

fn shard_of(hash: u64, shards: usize) -> usize {
    ((((hash >> 25) & 0xffff_ffff) * shards as u64) >> 32) as usize
}

impl Index {
    pub fn with_capacity(n: usize) -> Index {
        let count = shards_for(n);
        let each = n.div_ceil(count);
        Index {
            shards: Tree::from_fn(count, |_| HashTable::with_capacity(each)),
            len: 0,
        }
    }

    /// The shard of a hash, from bits the tables themselves do not use (their bucket comes
    /// from the low bits, their tag from the top seven).
    fn shard(&self, hash: u64) -> usize {
        shard_of(hash, self.shards.len())
    }

    pub fn find(&self, hash: u64, eq: impl FnMut(&u32) -> bool) -> Option<u32> {
        if self.shards.len() == 0 {
            return None;
        }
        self.shards.get(self.shard(hash)).find(hash, eq).copied()
    }

    /// Adds entry `i`, in place of the entry `same` matches if there is one.
    pub fn insert(
        &mut self,
        hash: u64,
        i: u32,
        same: impl FnMut(&u32) -> bool,
        rehash: impl Fn(&u32) -> u64,
    ) {
        if self.shards.len() == 0 {
            *self = Index::with_capacity(1);
        }
        let shard = self.shard(hash);
        let table = self.shards.get_mut(shard);
        if let Some(slot) = table.find_mut(hash, same) {
            *slot = i;
        } else {
            table.insert_unique(hash, i, rehash);
            self.len += 1;
        }
    }

    /// Adds every `(hash, entry)` of `items` (reordered by shard, so each shard is filled in
    /// one go), each in place of an entry `same` matches.
    pub fn insert_many(
        &mut self,
        items: &mut [(u64, u32)],
        same: impl Fn(u32, u32) -> bool,
        rehash: impl Fn(&u32) -> u64,
    ) {
        if self.shards.len() == 0 {
            *self = Index::with_capacity(items.len());
        }
        let count = self.shards.len();
        items.sort_unstable_by_key(|&(h, _)| shard_of(h, count));
        for run in items.chunk_by(|a, b| shard_of(a.0, count) == shard_of(b.0, count)) {
            let table = self.shards.get_mut(shard_of(run[0].0, count));
            for &(h, i) in run {
                if let Some(slot) = table.find_mut(h, |&j| same(j, i)) {
                    *slot = i;
                } else {
                    table.insert_unique(h, i, &rehash);
                    self.len += 1;
                }
            }
        }
    }

    /// Removes entry `i`, found under `hash`.
    pub fn remove(&mut self, hash: u64, i: u32) {
        if self.shards.len() == 0 {
            return;
        }
        let shard = self.shard(hash);
        if let Ok(o) = self.shards.get_mut(shard).find_entry(hash, |&j| j == i) {
            o.remove();
            self.len -= 1;
        }
    }

    /// Room for `n` more entries. An empty index is laid out anew for them.
    pub fn reserve(&mut self, n: usize, rehash: impl Fn(&u32) -> u64) {
        if self.len == 0 {
            *self = Index::with_capacity(n);
            return;
        }
        let each = n.div_ceil(self.shards.len());
        for s in 0..self.shards.len() {
            self.shards.get_mut(s).reserve(each, &rehash);
        }
    }

    /// Bytes of slots and control bytes, for the table's size model.
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|t| t.capacity() * 5).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_about_three_quarters_full() {
        for n in [1, 1000, 1_000_000, 1_048_577, 10_000_000] {
            let count = shards_for(n);
            assert!(count <= MAX_SHARDS);
            let each = n.div_ceil(count);
            let slots = (each * 8 / 7).next_power_of_two().max(MIN_SLOTS);
            let fill = each as f64 / slots as f64;
            assert!(n < 200 || (0.6..=0.875).contains(&fill), "{n}: {fill}");
        }
    }
}
