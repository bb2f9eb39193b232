//! Counting allowed requests against rate limits, in fixed windows aligned to the epoch: one
//! counter per subject (a key, or an account for `shared: account`) and limit, in sharded
//! hash tables behind short locks. A request passes when every limit that applies has room;
//! a request one limit refuses is taken back from the others, so that only allowed requests
//! count.
//!
//! On a store shared by many instances (Redis) a counter's room is what this instance has
//! leased from the fleet-wide counter of the window ([`fleet`]): a request spends from the
//! lease without waiting, and waits for one store call when the lease is empty. While the
//! store cannot be reached, each instance allows its share of the limit (the limit divided by
//! the instances alive at the last heartbeat). See `docs/limits.md`.

mod fleet;

pub use fleet::{FETCH_TIMEOUT, Lease};

use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;
use keygate_core::limit::{LimitState, RateLimit, Shared, reset_in, window};
use keygate_core::table::KeyEntry;

const SHARDS: usize = 64;

/// How often a shard drops counters of ended windows, in seconds.
const SWEEP_EVERY: i64 = 5;

/// One counter: a subject's allowed requests under one limit in one window.
struct Slot {
    shared: Shared,
    subject: Box<str>,
    name: Arc<str>,
    per: u32,
    window: i64,
    used: u64,
    /// Fleet mode: requests leased for this window, what the store had left after the last
    /// lease, and the size of the last lease.
    granted: u64,
    store_left: u64,
    chunk: u64,
}

impl Slot {
    fn is(&self, shared: Shared, subject: &str, l: &RateLimit) -> bool {
        self.shared == shared
            && self.per == l.per.secs()
            && *self.subject == *subject
            && *self.name == *l.name
    }
}

#[derive(Default)]
struct Shard {
    slots: HashTable<Slot>,
    next_sweep: i64,
}

/// The counters of one process.
pub struct Limiter {
    shards: Box<[Mutex<Shard>]>,
    /// foldhash, seeded per process: a few times cheaper than SipHash for these short keys;
    /// the subjects are ids of keys that verified, not input an attacker picks freely.
    hasher: hashbrown::DefaultHashBuilder,
    fleet: std::sync::OnceLock<fleet::Fleet>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            fleet: std::sync::OnceLock::new(),
        }
    }
}

/// How a counter's room is decided.
#[derive(Clone, Copy)]
enum Mode {
    /// The limit, in this process.
    Local,
    /// What was leased from the fleet-wide counter.
    Leased,
    /// The store is unreachable: the limit divided by this many instances.
    Share(u64),
}

/// What counting a request came to.
pub enum Count {
    /// Allowed: the tightest limit's state.
    Allowed(LimitState),
    /// Refused by the limit without room.
    Refused(LimitState),
    /// A lease is empty: take [`Limiter::fetch`] these and count again.
    Fetch(Vec<Lease>),
}

/// One request against one counter.
enum One {
    Taken(Taken),
    Refused(u32),
    Fetch(Lease),
}

/// Where one taken request stands against one limit.
struct Taken {
    index: usize,
    remaining: u64,
    reset: u32,
}

impl Limiter {
    fn hash(&self, shared: Shared, subject: &str, name: &str, per: u32) -> u64 {
        let mut h = self.hasher.build_hasher();
        shared.hash(&mut h);
        subject.hash(&mut h);
        name.hash(&mut h);
        per.hash(&mut h);
        h.finish()
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while a shard was held left plain counters behind: still usable.
        self.shards[(hash >> 32) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request of `key` against every limit in `limits` at `now`, in this process
    /// alone: `Ok` with the tightest limit's state, `Err` with the state of the first limit
    /// without room.
    pub fn take(
        &self,
        limits: &[RateLimit],
        key: &KeyEntry,
        now: i64,
    ) -> Result<LimitState, LimitState> {
        match self.count_in(limits, key, now, Mode::Local) {
            Count::Allowed(s) => Ok(s),
            Count::Refused(s) => Err(s),
            Count::Fetch(_) => unreachable!("local counters need no lease"),
        }
    }

    /// Counts one request as the store allows: in this process (file store), from leases of
    /// the fleet-wide counters (Redis), or by this instance's share while Redis is unreachable.
    pub fn count(&self, limits: &[RateLimit], key: &KeyEntry, now: i64) -> Count {
        let mode = match self.fleet.get() {
            None => Mode::Local,
            Some(f) => f.mode(now),
        };
        self.count_in(limits, key, now, mode)
    }

    /// Every limit has room: `Allowed` with the tightest (the fewest requests left, then the
    /// longest reset); otherwise what was taken is given back.
    fn count_in(&self, limits: &[RateLimit], key: &KeyEntry, now: i64, mode: Mode) -> Count {
        let mut tightest: Option<Taken> = None;
        let mut fetch = Vec::new();
        let mut taken = 0;
        for (index, l) in limits.iter().enumerate() {
            match self.take_one(l, subject(l, key), now, mode) {
                One::Taken(t) => {
                    taken |= 1 << index;
                    let t = Taken { index, ..t };
                    if tightest.as_ref().is_none_or(|b| {
                        (t.remaining, Reverse(t.reset)) < (b.remaining, Reverse(b.reset))
                    }) {
                        tightest = Some(t);
                    }
                }
                One::Refused(reset) => {
                    self.give_back_all(limits, key, now, taken);
                    return Count::Refused(state(l, 0, reset));
                }
                One::Fetch(lease) => fetch.push(lease),
            }
        }
        if !fetch.is_empty() {
            self.give_back_all(limits, key, now, taken);
            return Count::Fetch(fetch);
        }
        let t = tightest.unwrap_or(Taken {
            index: 0,
            remaining: 0,
            reset: 1,
        });
        Count::Allowed(state(&limits[t.index], t.remaining, t.reset))
    }

    fn give_back_all(&self, limits: &[RateLimit], key: &KeyEntry, now: i64, taken: u32) {
        for (i, o) in limits.iter().enumerate() {
            if taken & (1 << i) != 0 {
                self.give_back(o, subject(o, key), now);
            }
        }
    }

    /// One request against one limit: what is left and the seconds to reset; the seconds to
    /// reset when there is no room; or the lease to take first.
    fn take_one(&self, l: &RateLimit, subject: &str, now: i64, mode: Mode) -> One {
        let per = l.per.secs();
        let (w, reset) = (window(now, per), reset_in(now, per));
        let limit = u64::from(l.requests);
        let h = self.hash(l.shared, subject, &l.name, l.per.secs());
        let mut shard = self.shard(h);
        if now >= shard.next_sweep {
            shard.next_sweep = now + SWEEP_EVERY;
            shard.slots.retain(|s| s.window >= window(now, s.per));
        }
        let slot = match shard.slots.find_mut(h, |s| s.is(l.shared, subject, l)) {
            Some(s) => s,
            None => shard
                .slots
                .insert_unique(
                    h,
                    Slot {
                        shared: l.shared,
                        subject: subject.into(),
                        name: l.name.clone(),
                        per,
                        window: w,
                        used: 0,
                        granted: 0,
                        store_left: limit,
                        chunk: 0,
                    },
                    |s| self.hash(s.shared, &s.subject, &s.name, s.per),
                )
                .into_mut(),
        };
        if slot.window != w {
            slot.window = w;
            slot.used = 0;
            slot.granted = 0;
            slot.store_left = limit;
        }
        let (room, left_elsewhere) = match mode {
            Mode::Local => (limit, 0),
            Mode::Leased => (slot.granted, slot.store_left),
            Mode::Share(n) => (slot.granted.max(limit.div_ceil(n.max(1))), 0),
        };
        if slot.used >= room {
            if matches!(mode, Mode::Leased) && slot.store_left > 0 {
                return One::Fetch(fleet::lease(l, subject, slot));
            }
            return One::Refused(reset);
        }
        slot.used += 1;
        One::Taken(Taken {
            index: 0,
            remaining: (room - slot.used + left_elsewhere).min(limit),
            reset,
        })
    }

    fn give_back(&self, l: &RateLimit, subject: &str, now: i64) {
        let h = self.hash(l.shared, subject, &l.name, l.per.secs());
        let mut shard = self.shard(h);
        if let Some(s) = shard.slots.find_mut(h, |s| s.is(l.shared, subject, l))
            && s.window == window(now, l.per.secs())
        {
            s.used = s.used.saturating_sub(1);
        }
    }

    /// Counters held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).slots.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn subject<'a>(l: &RateLimit, key: &'a KeyEntry) -> &'a str {
    match l.shared {
        Shared::Key => key.id(),
        Shared::Account => key.account(),
    }
}

fn state(l: &RateLimit, remaining: u64, reset: u32) -> LimitState {
    LimitState {
        name: l.name.clone(),
        quota: u64::from(l.requests),
        window: Some(l.per.secs()),
        remaining,
        reset: Some(reset),
    }
}

#[cfg(test)]
mod tests;
