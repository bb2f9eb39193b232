//! Credits spent locally from leases taken out of the store in advance: a request of a key
//! with credits spends one from this process's lease without waiting; when the lease is empty
//! the request waits while a new one is taken (one atomic store call for a chunk of credits),
//! so that across every instance a key is allowed at most as many times as it has credits.
//!
//! Chunks grow while a key keeps using them up (1, 2, 4 … 64, at most an eighth of what the
//! store had left, so instances share a small balance), unspent credits go back to the store
//! after a lease sits idle for [`IDLE`] and at shutdown, and a balance the store reported empty
//! is asked again after [`RECHECK`] (a refill, an update, another instance's give-back).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use keygate_core::credits;
use keygate_core::credits::Credits;
use keygate_core::limit::LimitState;
use keygate_store::Store;
use keygate_store::state::CreditLease;

use crate::limiter::FETCH_TIMEOUT;

/// A lease unused this long goes back to the store.
pub const IDLE: Duration = Duration::from_secs(2);
/// How long an empty balance is believed before the store is asked again.
pub const RECHECK: Duration = Duration::from_secs(1);
const MAX_CHUNK: u64 = 64;

struct Lease {
    version: u64,
    period: i64,
    /// Taken from the store, not yet spent.
    left: u64,
    /// The store's balance after the last take.
    store_left: u64,
    chunk: u64,
    empty_since: Option<Instant>,
    taken_at: Instant,
    used_at: Instant,
}

impl Lease {
    /// Whether this lease serves credits set at `version` in refill period `period`: it is of
    /// that balance, or of a later setting or period of it (which the store keeps as the
    /// balance now: another instance's clock crossed the period's start first, or credits were
    /// set again on the key whose balance a rotated key shares). Never refilled from here.
    fn serves(&self, version: u64, period: i64) -> bool {
        self.version >= version && self.period >= period
    }
}

/// What spending one credit came to.
pub enum Spend {
    /// Spent; the credits' `RateLimit` state after it.
    Spent(LimitState),
    /// None left anywhere (429 `quota`).
    Empty(LimitState),
    /// The lease is empty: take a new one first.
    Fetch,
}

#[derive(Default)]
pub struct Wallet {
    leases: Arc<Mutex<HashMap<Arc<str>, Lease>>>,
    store: OnceLock<(Store, tokio::runtime::Handle)>,
}

impl Wallet {
    /// The store leases are taken from, and the runtime that takes them.
    pub fn attach(&self, store: Store, rt: tokio::runtime::Handle) {
        let _ = self.store.set((store, rt));
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Lease>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spends one credit of key `id` (credits as set at `version`) from the local lease.
    pub fn spend(&self, id: &str, credits: &Credits, version: u64, now: i64) -> Spend {
        let period = credits::period(credits, now);
        let mut leases = self.leases();
        let Some(l) = leases.get_mut(id).filter(|l| l.serves(version, period)) else {
            return Spend::Fetch;
        };
        if l.left > 0 {
            l.left -= 1;
            l.used_at = Instant::now();
            return Spend::Spent(credits::state(credits, l.store_left + l.left, now));
        }
        match l.empty_since {
            Some(t) if t.elapsed() < RECHECK => Spend::Empty(credits::state(credits, 0, now)),
            _ => Spend::Fetch,
        }
    }

    /// Returns a credit spent by a request another limit refused.
    pub fn refund(&self, id: &str) {
        if let Some(l) = self.leases().get_mut(id) {
            l.left += 1;
        }
    }

    /// Takes a new lease for key `id` in the background; `done(taken)` runs once it is in
    /// (`false`: the store could not be asked).
    pub fn fetch(
        &self,
        id: Arc<str>,
        credits: Credits,
        version: u64,
        now: i64,
        done: impl FnOnce(bool) + Send + 'static,
    ) {
        let Some((store, rt)) = self.store.get() else {
            return done(false);
        };
        let period = credits::period(&credits, now);
        let want = {
            let leases = self.leases();
            match leases.get(&id) {
                Some(l) if l.serves(version, period) => {
                    // Used up within a second: a busier key, a bigger chunk.
                    let chunk = if l.taken_at.elapsed() < Duration::from_secs(1) {
                        (l.chunk * 2).min(MAX_CHUNK)
                    } else {
                        1
                    };
                    chunk.min((l.store_left / 8).max(1))
                }
                _ => 1,
            }
        };
        let lease = CreditLease {
            id,
            credits,
            version,
            period,
            now,
        };
        let (store, leases) = (store.clone(), self.leases.clone());
        rt.spawn(async move {
            // A request waits on this: bounded like the limiter's leases. Credits taken by a
            // call that timed out are lost, never spent twice.
            let taken = tokio::time::timeout(FETCH_TIMEOUT, store.take_credits(&lease, want)).await;
            match taken {
                Ok(Ok((granted, b))) => {
                    let t = Instant::now();
                    let mut leases = leases.lock().unwrap_or_else(|e| e.into_inner());
                    let l = leases.entry(lease.id.clone()).or_insert(Lease {
                        version: b.version,
                        period: b.period,
                        left: 0,
                        store_left: 0,
                        chunk: 0,
                        empty_since: None,
                        taken_at: t,
                        used_at: t,
                    });
                    if l.version != b.version || l.period != b.period {
                        // The credits were set again or refilled: the old lease is void.
                        l.left = 0;
                    }
                    l.version = b.version;
                    l.period = b.period;
                    l.left += granted;
                    l.store_left = b.remaining;
                    l.chunk = want;
                    l.taken_at = t;
                    l.used_at = t;
                    l.empty_since = (granted == 0).then_some(t);
                    drop(leases);
                    done(true);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot take credits from the store");
                    done(false);
                }
                Err(_) => {
                    tracing::warn!("taking credits from the store timed out");
                    done(false);
                }
            }
        });
    }

    /// Gives unspent credits back: of idle leases, or of all of them (`all`, at shutdown).
    pub async fn give_back(&self, all: bool) {
        let Some((store, _)) = self.store.get() else {
            return;
        };
        let returned: Vec<(CreditLease, u64)> = {
            let mut leases = self.leases();
            let mut out = Vec::new();
            leases.retain(|id, l| {
                let idle = all || l.used_at.elapsed() >= IDLE;
                if idle && l.left > 0 {
                    out.push((
                        CreditLease {
                            id: id.clone(),
                            credits: Credits {
                                remaining: 0,
                                refill: None,
                                balance_of: None,
                            },
                            version: l.version,
                            period: l.period,
                            now: 0,
                        },
                        l.left,
                    ));
                }
                !idle
            });
            out
        };
        for (lease, n) in returned {
            if let Err(e) = store.give_back_credits(&lease, n).await {
                tracing::warn!(error = %e, "cannot give unspent credits back to the store");
            }
        }
    }

    /// Gives idle leases back every second until `shutdown`, then all of them.
    pub async fn keep(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => self.give_back(false).await,
            }
        }
        self.give_back(true).await;
    }
}
