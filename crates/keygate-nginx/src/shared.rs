//! The counters every worker adds to, in one nginx shared memory zone (`keygate`), so that a
//! scrape answered by any worker shows the whole nginx: decisions by reason, the decision
//! latency histogram, Argon2 verifications and cache hits, and one slot per worker for what
//! only that worker knows (its table's size, revision and age, its store connection).
//!
//! The zone holds plain atomics: workers are processes, and an atomic add on memory they all
//! map needs no lock. nginx reuses a zone of the same name and size across reloads, so the
//! counters keep counting (Prometheus counters must not go back) while the workers change.

use std::sync::atomic::{AtomicU64, Ordering};

use keygate_authz::{Frontend, Observer, Verification};
use keygate_core::decide::Reason;

/// The sidecar's latency buckets (seconds), so both histograms read alike.
pub const BUCKETS: [f64; 16] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
    0.25, 1.0,
];

/// Worker slots; a worker numbered past them still counts decisions, only its gauges are
/// not shown.
pub const SLOTS: usize = 64;

/// Marks a zone laid out by this build, so that a reload into a build with another layout of
/// the same size starts a fresh copy instead of reading the old one as its own.
const LAYOUT: u64 = 0x6b67_6e78_0001_0000 | (Reason::ALL.len() as u64) << 8 | SLOTS as u64;

/// What one worker last published about its table and store (zero: the slot is free).
#[repr(C)]
pub struct Slot {
    pub pid: AtomicU64,
    pub keys: AtomicU64,
    pub revision: AtomicU64,
    /// Unix milliseconds when the table was last confirmed current; 0 before the first load.
    pub confirmed_ms: AtomicU64,
    pub connected: AtomicU64,
    pub reconnects: AtomicU64,
    pub full_loads: AtomicU64,
    pub usage_flushes: AtomicU64,
    pub usage_flush_failures: AtomicU64,
}

impl Slot {
    /// Takes the slot for process `pid`, forgetting what its last holder published.
    pub fn claim(&self, pid: u32) {
        for f in [
            &self.keys,
            &self.revision,
            &self.confirmed_ms,
            &self.connected,
            &self.reconnects,
            &self.full_loads,
            &self.usage_flushes,
            &self.usage_flush_failures,
        ] {
            f.store(0, Ordering::Relaxed);
        }
        self.pid.store(u64::from(pid), Ordering::Release);
    }

    /// Frees the slot if `pid` still holds it (a respawned worker may hold it already).
    pub fn release(&self, pid: u32) {
        let _ = self
            .pid
            .compare_exchange(u64::from(pid), 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[repr(C)]
pub struct Shared {
    layout: AtomicU64,
    /// Allows, then denials in [`Reason::ALL`] order.
    pub decisions: [AtomicU64; 1 + Reason::ALL.len()],
    /// Observations per bucket (not cumulative), then those above the last bound.
    pub latency: [AtomicU64; BUCKETS.len() + 1],
    pub latency_nanos: AtomicU64,
    pub verifications: [AtomicU64; Verification::ALL.len()],
    pub cache_hits: AtomicU64,
    pub slots: [Slot; SLOTS],
}

impl Shared {
    /// Whether `self` was laid out by this build (a zone kept across a reload).
    pub fn is_current(&self) -> bool {
        self.layout.load(Ordering::Acquire) == LAYOUT
    }

    /// Marks freshly zeroed memory as laid out by this build.
    pub fn init(&self) {
        self.layout.store(LAYOUT, Ordering::Release);
    }

    pub fn slot(&self, worker: usize) -> Option<&Slot> {
        self.slots.get(worker)
    }

    /// The live workers' slots.
    pub fn live(&self) -> impl Iterator<Item = &Slot> {
        self.slots
            .iter()
            .filter(|s| s.pid.load(Ordering::Acquire) != 0)
    }
}

/// The authorizer's observer in a worker: every report goes straight to the zone.
pub struct ZoneObserver(&'static Shared);

impl ZoneObserver {
    pub fn new(shared: &'static Shared) -> ZoneObserver {
        ZoneObserver(shared)
    }
}

impl Observer for ZoneObserver {
    fn decision(&self, _: Frontend, denied: Option<Reason>, seconds: f64) {
        let s = self.0;
        let i = denied.map_or(0, |r| {
            1 + Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)
        });
        s.decisions[i].fetch_add(1, Ordering::Relaxed);
        let b = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        s.latency[b].fetch_add(1, Ordering::Relaxed);
        s.latency_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    fn verification(&self, v: Verification) {
        self.0.verifications[v as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn cache_hit(&self) {
        self.0.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Box<Shared> {
        // SAFETY: every field is an atomic integer, for which all-zero bytes are valid.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn observations_land_in_their_bucket() {
        let s: &'static Shared = Box::leak(zeroed());
        let o = ZoneObserver::new(s);
        o.decision(Frontend::NginxModule, None, 3e-6);
        o.decision(Frontend::NginxModule, Some(Reason::ALL[0]), 2e-4);
        o.decision(Frontend::NginxModule, None, 5.0);
        assert_eq!(s.latency[0].load(Ordering::Relaxed), 1);
        assert_eq!(s.latency[5].load(Ordering::Relaxed), 1);
        assert_eq!(s.latency[BUCKETS.len()].load(Ordering::Relaxed), 1);
        assert_eq!(s.decisions[0].load(Ordering::Relaxed), 2);
        assert_eq!(s.decisions[1].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_zone_is_recognised_only_once_marked() {
        let s = zeroed();
        assert!(!s.is_current());
        s.init();
        assert!(s.is_current());
    }
}
