//! Requests counted in memory between write-backs (allowed, and refused ones of known keys by
//! reason), and the loop that writes them to the store in batches (last use and per-day
//! counts): one write per interval, not one per request. A batch that fails is put back and goes with the next; a crash loses at most one
//! interval. On Redis a batch is one entry, and the loop also folds the fleet's entries when
//! this instance is the one that folds.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use super::state::UsageBatch;
use super::{Store, StoreStats};

/// Counts allowed requests per key between write-back flushes.
#[derive(Default)]
pub struct UsageCounter {
    batch: Mutex<UsageBatch>,
}

impl UsageCounter {
    pub fn add(&self, id: &str, now: i64) {
        self.batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(id, now);
    }

    /// Counts a refusal of a known key.
    pub fn deny(&self, id: &str, reason: keygate_core::decide::Reason, now: i64) {
        self.batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .deny(id, reason, now);
    }

    /// Takes what was counted so far.
    pub fn take(&self) -> UsageBatch {
        std::mem::take(&mut *self.batch.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Returns a batch that failed to write, to be retried with the next.
    pub fn put_back(&self, b: UsageBatch) {
        self.batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(b);
    }
}

/// Writes `usage` back every `interval`, and once more when `shutdown` resolves.
pub async fn write_back(
    usage: &UsageCounter,
    store: &Store,
    stats: &StoreStats,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = &mut shutdown => true,
            _ = tick.tick() => false,
        };
        let batch = usage.take();
        let wrote = !batch.is_empty();
        if wrote {
            match store.record_usage(&batch).await {
                Ok(()) => stats.usage_flushed(true),
                Err(e) => {
                    tracing::warn!(error = %e, "usage write-back failed; will retry");
                    stats.usage_flushed(false);
                    usage.put_back(batch);
                }
            }
        }
        if let Err(e) = store.fold_usage(wrote).await {
            tracing::warn!(error = %e, "usage fold failed; will retry");
        }
        if last {
            return;
        }
    }
}
