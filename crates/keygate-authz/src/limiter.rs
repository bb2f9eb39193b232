//! Counting allowed requests against rate limits, in fixed windows aligned to the epoch: one
//! counter per subject (a key, or an account for `shared: account`) and limit, in sharded
//! hash tables behind short locks. A request passes when every limit that applies has room;
//! a request one limit refuses is taken back from the others, so that only allowed requests
//! count.

use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
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
    hasher: RandomState,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
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

    /// Counts one request of `key` against every limit in `limits` at `now`: `Ok` with the
    /// tightest limit's state (the fewest requests left) when all have room, `Err` with the
    /// state of the first limit without room, after taking the request back from the others.
    pub fn take(
        &self,
        limits: &[RateLimit],
        key: &KeyEntry,
        now: i64,
    ) -> Result<LimitState, LimitState> {
        let mut tightest: Option<Taken> = None;
        for (index, l) in limits.iter().enumerate() {
            match self.take_one(l, subject(l, key), now) {
                Ok(t) => {
                    let t = Taken { index, ..t };
                    // Fewest left; of those, the one that stays refused longest.
                    if tightest.as_ref().is_none_or(|b| {
                        (t.remaining, Reverse(t.reset)) < (b.remaining, Reverse(b.reset))
                    }) {
                        tightest = Some(t);
                    }
                }
                Err(reset) => {
                    for o in &limits[..index] {
                        self.give_back(o, subject(o, key), now);
                    }
                    return Err(state(l, 0, reset));
                }
            }
        }
        let t = tightest.unwrap_or(Taken {
            index: 0,
            remaining: 0,
            reset: 1,
        });
        Ok(state(&limits[t.index], t.remaining, t.reset))
    }

    /// One request against one limit: what is left and the seconds to reset, or the seconds
    /// to reset when there is no room.
    fn take_one(&self, l: &RateLimit, subject: &str, now: i64) -> Result<Taken, u32> {
        let per = l.per.secs();
        let (w, reset) = (window(now, per), reset_in(now, per));
        let quota = u64::from(l.requests);
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
                    },
                    |s| self.hash(s.shared, &s.subject, &s.name, s.per),
                )
                .into_mut(),
        };
        if slot.window != w {
            slot.window = w;
            slot.used = 0;
        }
        if slot.used >= quota {
            return Err(reset);
        }
        slot.used += 1;
        Ok(Taken {
            index: 0,
            remaining: quota - slot.used,
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
        Shared::Key => &key.id,
        Shared::Account => &key.account,
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
