//! keygate's Envoy stats, under the module's metrics namespace (`keygate` in the shipped
//! config, so Envoy's `/stats/prometheus` shows `envoy_keygate_decisions{result,reason}` and
//! the rest): decisions by result and reason, decision latency, keys in the table, replication
//! age, store connection, Argon2 verifications by result and cache hits.
//!
//! Stats are defined once per filter config and recorded on a stream's worker (Envoy's stats
//! callbacks take the stream). Verifications finish on hash threads, so they are counted in
//! [`Pending`] and flushed by the next stream that records a decision; the table gauges are
//! refreshed at most once a second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keygate_authz::Verification;
use keygate_core::decide::Reason;
use keygate_store::StoreStats;
use keygate_store::replica::Replica;

use crate::abi::{self, FilterConfigEnvoyPtr, FilterEnvoyPtr, ModuleBuffer};

/// Ids of the stats one filter config defined.
pub struct StatIds {
    decisions: usize,
    latency: usize,
    keys: usize,
    age: usize,
    connected: usize,
    verifications: usize,
    cache_hits: usize,
    /// Unix second of the last gauge refresh.
    gauges_at: AtomicU64,
}

/// What the hash threads counted since the last flush.
#[derive(Default)]
pub struct Pending {
    verifications: [AtomicU64; 3],
    cache_hits: AtomicU64,
    dirty: AtomicBool,
}

impl Pending {
    pub fn add_verification(&self, v: Verification) {
        self.verifications[v as usize].fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }

    pub fn add_cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }
}

fn define(
    config: FilterConfigEnvoyPtr,
    kind: fn(FilterConfigEnvoyPtr, ModuleBuffer, *const ModuleBuffer, usize, *mut usize) -> u32,
    name: &str,
    labels: &[&str],
) -> Option<usize> {
    let labels: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    let mut id = 0usize;
    let r = kind(
        config,
        ModuleBuffer::of(name.as_bytes()),
        labels.as_ptr(),
        labels.len(),
        &mut id,
    );
    (r == abi::METRICS_OK).then_some(id)
}

fn counter(
    c: FilterConfigEnvoyPtr,
    n: ModuleBuffer,
    l: *const ModuleBuffer,
    ln: usize,
    id: *mut usize,
) -> u32 {
    // SAFETY: called in config_new with Envoy's config pointer; Envoy copies the names.
    unsafe { abi::envoy_dynamic_module_callback_http_filter_config_define_counter(c, n, l, ln, id) }
}

fn gauge(
    c: FilterConfigEnvoyPtr,
    n: ModuleBuffer,
    l: *const ModuleBuffer,
    ln: usize,
    id: *mut usize,
) -> u32 {
    // SAFETY: as for `counter`.
    unsafe { abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(c, n, l, ln, id) }
}

fn histogram(
    c: FilterConfigEnvoyPtr,
    n: ModuleBuffer,
    l: *const ModuleBuffer,
    ln: usize,
    id: *mut usize,
) -> u32 {
    // SAFETY: as for `counter`.
    unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_define_histogram(c, n, l, ln, id)
    }
}

impl StatIds {
    /// Defines the stats on `config` (only possible inside config_new).
    pub fn define(config: FilterConfigEnvoyPtr) -> Option<StatIds> {
        Some(StatIds {
            decisions: define(config, counter, "decisions", &["result", "reason"])?,
            latency: define(config, histogram, "decision_duration_us", &[])?,
            keys: define(config, gauge, "keys", &[])?,
            age: define(config, gauge, "replication_age_seconds", &[])?,
            connected: define(config, gauge, "store_connected", &[])?,
            verifications: define(config, counter, "hash_verifications", &["result"])?,
            cache_hits: define(config, counter, "verify_cache_hits", &[])?,
            gauges_at: AtomicU64::new(0),
        })
    }

    /// Records one decision on `filter` (on its worker), with what is pending.
    pub fn decision(
        &self,
        filter: FilterEnvoyPtr,
        denied: Option<Reason>,
        micros: u64,
        pending: &Pending,
        replica: &Replica,
        store: &StoreStats,
    ) {
        let (result, reason) = match denied {
            None => ("allow", "ok"),
            Some(r) => ("deny", r.as_str()),
        };
        let labels = [
            ModuleBuffer::of(result.as_bytes()),
            ModuleBuffer::of(reason.as_bytes()),
        ];
        // SAFETY: `filter` is the stream whose hook is running; Envoy copies label values.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                filter,
                self.decisions,
                labels.as_ptr(),
                2,
                1,
            );
            abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                filter,
                self.latency,
                std::ptr::null(),
                0,
                micros,
            );
        }
        if pending.dirty.swap(false, Ordering::AcqRel) {
            self.flush(filter, pending);
        }
        let now = keygate_authz::unix_now() as u64;
        if self.gauges_at.swap(now, Ordering::Relaxed) != now {
            self.gauges(filter, replica, store);
        }
    }

    fn flush(&self, filter: FilterEnvoyPtr, pending: &Pending) {
        for v in Verification::ALL {
            let n = pending.verifications[v as usize].swap(0, Ordering::Relaxed);
            if n > 0 {
                let label = [ModuleBuffer::of(v.as_str().as_bytes())];
                // SAFETY: as in `decision`.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                        filter,
                        self.verifications,
                        label.as_ptr(),
                        1,
                        n,
                    );
                }
            }
        }
        let n = pending.cache_hits.swap(0, Ordering::Relaxed);
        if n > 0 {
            // SAFETY: as in `decision`.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                    filter,
                    self.cache_hits,
                    std::ptr::null(),
                    0,
                    n,
                );
            }
        }
    }

    fn gauges(&self, filter: FilterEnvoyPtr, replica: &Replica, store: &StoreStats) {
        let age = replica.age().map_or(u64::MAX, |a| a.as_secs());
        for (id, v) in [
            (self.keys, replica.snapshot().len() as u64),
            (self.age, age),
            (self.connected, u64::from(store.read().connected)),
        ] {
            // SAFETY: as in `decision`.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_set_gauge(
                    filter,
                    id,
                    std::ptr::null(),
                    0,
                    v,
                );
            }
        }
    }
}
