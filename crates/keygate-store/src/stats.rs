//! What the store did, counted where it happens and read by whoever exports metrics (the
//! sidecar's Prometheus registry, an in-proxy module's stats): the store knows no exporter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters and state of one process's store connection.
#[derive(Debug, Default)]
pub struct StoreStats {
    connected: AtomicBool,
    reconnects: AtomicU64,
    full_loads: AtomicU64,
    usage_flushes: AtomicU64,
    usage_flush_failures: AtomicU64,
}

/// A reading of [`StoreStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsReading {
    pub connected: bool,
    pub reconnects: u64,
    pub full_loads: u64,
    pub usage_flushes: u64,
    pub usage_flush_failures: u64,
}

impl StoreStats {
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn full_load(&self) {
        self.full_loads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn usage_flushed(&self, ok: bool) {
        let c = if ok {
            &self.usage_flushes
        } else {
            &self.usage_flush_failures
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> StatsReading {
        StatsReading {
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            full_loads: self.full_loads.load(Ordering::Relaxed),
            usage_flushes: self.usage_flushes.load(Ordering::Relaxed),
            usage_flush_failures: self.usage_flush_failures.load(Ordering::Relaxed),
        }
    }
}
