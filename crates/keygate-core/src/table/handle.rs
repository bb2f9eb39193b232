//! Handles to a key in a table: [`Found`] borrows the table, [`KeyRef`] outlives it.

use std::sync::Arc;

use super::entry::KeyEntry;

type Chunk = Vec<KeyEntry>;

/// A key found in a table: derefs to its entry, and gives a [`KeyRef`] to keep it past the
/// table's lifetime.
#[derive(Clone, Copy)]
pub struct Found<'t> {
    chunk: &'t Arc<Chunk>,
    slot: u32,
}

impl std::ops::Deref for Found<'_> {
    type Target = KeyEntry;
    fn deref(&self) -> &KeyEntry {
        &self.chunk[self.slot as usize]
    }
}

impl<'t> Found<'t> {
    pub(super) fn new(chunk: &'t Arc<Chunk>, slot: u32) -> Found<'t> {
        Found { chunk, slot }
    }

    pub fn handle(&self) -> KeyRef {
        KeyRef {
            chunk: Arc::clone(self.chunk),
            slot: self.slot,
        }
    }
}

/// A key held past the snapshot it was found in (a decision waiting on a verification or a
/// lease): keeps its chunk alive, not the table.
#[derive(Clone)]
pub struct KeyRef {
    chunk: Arc<Chunk>,
    slot: u32,
}

impl std::ops::Deref for KeyRef {
    type Target = KeyEntry;
    fn deref(&self) -> &KeyEntry {
        &self.chunk[self.slot as usize]
    }
}

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl std::fmt::Debug for Found<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}
