//! Leases from the fleet-wide counters in Redis: how much to ask for, taking them in the
//! background for the requests waiting on them, and the heartbeat that sizes this instance's
//! share for when Redis cannot be reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use keygate_core::limit::{LimitState, RateLimit, Shared};
use keygate_store::Store;
use keygate_store::state::BudgetTake;

use super::{Limiter, Mode, Slot};

/// The largest lease: a busy key's instance asks once per this many requests.
const MAX_CHUNK: u64 = 64;
/// A lease not taken within this long counts as Redis being unreachable.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an instance counts by its share after Redis failed it.
const DEGRADED_FOR: i64 = 2;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Seconds after its last lease that an instance still beats.
const ACTIVE_FOR: i64 = 60;

pub(super) struct Fleet {
    store: Store,
    rt: tokio::runtime::Handle,
    id: String,
    degraded_until: AtomicI64,
    instances: AtomicU64,
    /// When this instance last took a lease (Unix seconds): it beats only while it counts
    /// limits, so an idle instance costs Redis nothing but its change-log read.
    last_fetch: AtomicI64,
}

impl Fleet {
    pub(super) fn mode(&self, now: i64) -> Mode {
        if now < self.degraded_until.load(Ordering::Relaxed) {
            Mode::Share(self.instances.load(Ordering::Relaxed))
        } else {
            Mode::Leased
        }
    }
}

/// A lease to take for one counter, and where it goes.
pub struct Lease {
    shared: Shared,
    subject: Box<str>,
    name: Arc<str>,
    per: u32,
    window: i64,
    take: BudgetTake,
}

impl Lease {
    /// The refusal of this counter's limit at `now`.
    pub fn refusal(&self, now: i64) -> LimitState {
        LimitState {
            name: self.name.clone(),
            quota: self.take.limit,
            window: Some(self.per),
            remaining: 0,
            reset: Some(keygate_core::limit::reset_in(now, self.per)),
        }
    }
}

/// The lease a counter with no room left needs: twice the last one while the key keeps using
/// them up (the last window's size to start a window), at most an eighth of what the store
/// had left, so that instances share the end of a window.
pub(super) fn lease(l: &RateLimit, subject: &str, slot: &Slot) -> Lease {
    let want = if slot.granted == 0 {
        slot.chunk.max(1)
    } else {
        (slot.chunk * 2).clamp(1, MAX_CHUNK)
    };
    let want = want.min((slot.store_left / 8).max(1));
    let per = l.per.secs();
    let window = slot.window;
    let who = match l.shared {
        Shared::Key => 'k',
        Shared::Account => 'a',
    };
    Lease {
        shared: l.shared,
        subject: subject.into(),
        name: l.name.clone(),
        per,
        window,
        take: BudgetTake {
            counter: format!("{who}:{subject}:{}:{per}:{window}", l.name),
            limit: u64::from(l.requests),
            want,
            ttl: u64::from(per) + 5,
        },
    }
}

impl Limiter {
    /// Counts fleet-wide in `store` (when it shares budgets), taking leases on `rt`.
    pub fn attach(&self, store: Store, rt: tokio::runtime::Handle) {
        if !store.shares_budgets() {
            return;
        }
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the OS random number generator failed");
        let _ = self.fleet.set(Fleet {
            store,
            rt,
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            degraded_until: AtomicI64::new(0),
            instances: AtomicU64::new(1),
            last_fetch: AtomicI64::new(i64::MIN),
        });
    }

    /// Takes `leases` in the background; `done(taken)` runs once they are in (`false`: Redis
    /// did not answer in time, and this instance counts by its share for a while).
    pub fn fetch(
        self: &Arc<Self>,
        leases: Vec<Lease>,
        now: i64,
        done: impl FnOnce(bool) + Send + 'static,
    ) {
        let Some(f) = self.fleet.get() else {
            return done(false);
        };
        f.last_fetch.store(now, Ordering::Relaxed);
        let (store, me) = (f.store.clone(), self.clone());
        f.rt.spawn(async move {
            let takes: Vec<BudgetTake> = leases.iter().map(|l| l.take.clone()).collect();
            let answer = tokio::time::timeout(FETCH_TIMEOUT, store.take_budgets(&takes)).await;
            match answer {
                Ok(Ok(granted)) => {
                    for (l, (g, left)) in leases.iter().zip(granted) {
                        me.grant(l, g, left);
                    }
                    done(true);
                }
                failed => {
                    if let Ok(Err(e)) = failed {
                        tracing::warn!(error = %e, "cannot lease rate limit budgets; counting by this instance's share");
                    } else {
                        tracing::warn!("rate limit lease timed out; counting by this instance's share");
                    }
                    if let Some(f) = me.fleet.get() {
                        f.degraded_until.store(now + DEGRADED_FOR, Ordering::Relaxed);
                    }
                    done(false);
                }
            }
        });
    }

    fn grant(&self, l: &Lease, granted: u64, left: u64) {
        let h = self.hash(l.shared, &l.subject, &l.name, l.per);
        let mut shard = self.shard(h);
        if let Some(s) = shard.slots.find_mut(h, |s| {
            s.shared == l.shared && s.per == l.per && *s.subject == *l.subject && *s.name == *l.name
        }) && s.window == l.window
        {
            s.granted += granted;
            s.store_left = left;
            s.chunk = l.take.want;
        }
    }

    /// Beats every 5 s until `shutdown`, while this instance took a lease in the last
    /// [`ACTIVE_FOR`] seconds: the instances counting limits size the share each enforces
    /// while Redis is unreachable.
    pub async fn keep(&self, shutdown: impl std::future::Future<Output = ()>) {
        let Some(f) = self.fleet.get() else {
            return shutdown.await;
        };
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let now = crate::engine::unix_now();
            if now.saturating_sub(f.last_fetch.load(Ordering::Relaxed)) > ACTIVE_FOR {
                continue;
            }
            let beat = f.store.heartbeat(&f.id, now);
            if let Ok(Ok(n)) = tokio::time::timeout(HEARTBEAT_EVERY, beat).await {
                f.instances.store(n.max(1), Ordering::Relaxed);
            }
        }
    }
}
