//! keygate's Envoy stats, under the module's metrics namespace (`keygate` in the shipped
//! config, so Envoy's `/stats/prometheus` shows `envoy_keygate_decisions{result,reason}` and
//! the rest): decisions by result and reason, decision latency, keys in the table, replication
//! age, store connection, Argon2 verifications by result and cache hits.
//!
//! Only the latency histogram is recorded on the request's road. A labelled counter costs
//! Envoy a stat-name lookup per increment (about a tenth of everything the module does per
//! request), so decisions, like the verifications the hash threads finish, are counted in
//! atomics here and added to Envoy's counters once a second, with the gauges, on Envoy's main
//! thread: a thread of the config's commits the config scheduler's event every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use keygate_authz::Verification;
use keygate_core::decide::Reason;
use keygate_store::StoreStats;
use keygate_store::replica::Replica;

use crate::abi::{self, ConfigSchedulerPtr, FilterConfigEnvoyPtr, FilterEnvoyPtr, ModuleBuffer};

/// Ids of the stats one filter config defined.
pub struct StatIds {
    decisions: usize,
    latency: usize,
    keys: usize,
    age: usize,
    connected: usize,
    verifications: usize,
    cache_hits: usize,
}

/// Counts not yet added to Envoy's counters.
#[derive(Default)]
pub struct Pending {
    /// Allows, then denials in [`Reason::ALL`] order.
    decisions: [AtomicU64; 1 + Reason::ALL.len()],
    verifications: [AtomicU64; 3],
    cache_hits: AtomicU64,
}

impl Pending {
    pub fn add_decision(&self, denied: Option<Reason>) {
        let i = denied.map_or(0, |r| {
            1 + Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)
        });
        self.decisions[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_verification(&self, v: Verification) {
        self.verifications[v as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
}

type Define = unsafe extern "C" fn(
    FilterConfigEnvoyPtr,
    ModuleBuffer,
    *const ModuleBuffer,
    usize,
    *mut usize,
) -> u32;

fn define(
    config: FilterConfigEnvoyPtr,
    kind: Define,
    name: &str,
    labels: &[&str],
) -> Option<usize> {
    let labels: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    let mut id = 0usize;
    // SAFETY: called in config_new with Envoy's config pointer; Envoy copies the names.
    let r = unsafe {
        kind(
            config,
            ModuleBuffer::of(name.as_bytes()),
            labels.as_ptr(),
            labels.len(),
            &mut id,
        )
    };
    (r == abi::METRICS_OK).then_some(id)
}

impl StatIds {
    /// Defines the stats on `config` (only possible inside config_new).
    pub fn define(config: FilterConfigEnvoyPtr) -> Option<StatIds> {
        let counter = abi::envoy_dynamic_module_callback_http_filter_config_define_counter;
        let gauge = abi::envoy_dynamic_module_callback_http_filter_config_define_gauge;
        let histogram = abi::envoy_dynamic_module_callback_http_filter_config_define_histogram;
        Some(StatIds {
            decisions: define(config, counter, "decisions", &["result", "reason"])?,
            latency: define(config, histogram, "decision_duration_us", &[])?,
            keys: define(config, gauge, "keys", &[])?,
            age: define(config, gauge, "replication_age_seconds", &[])?,
            connected: define(config, gauge, "store_connected", &[])?,
            verifications: define(config, counter, "hash_verifications", &["result"])?,
            cache_hits: define(config, counter, "verify_cache_hits", &[])?,
        })
    }

    /// Records one decision's latency on `filter` (on its worker).
    pub fn latency(&self, filter: FilterEnvoyPtr, micros: u64) {
        // SAFETY: `filter` is the stream whose hook is running.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                filter,
                self.latency,
                std::ptr::null(),
                0,
                micros,
            );
        }
    }

    /// Adds what is pending to Envoy's counters and sets the gauges: on the main thread, from
    /// the config scheduler's event.
    pub fn flush(
        &self,
        config: FilterConfigEnvoyPtr,
        p: &Pending,
        replica: &Replica,
        store: &StoreStats,
    ) {
        let add = |id: usize, labels: &[&str], n: u64| {
            if n == 0 {
                return;
            }
            let labels: Vec<ModuleBuffer> = labels
                .iter()
                .map(|l| ModuleBuffer::of(l.as_bytes()))
                .collect();
            // SAFETY: on the main thread, in the config's scheduled hook; Envoy copies labels.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                    config,
                    id,
                    labels.as_ptr(),
                    labels.len(),
                    n,
                );
            }
        };
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        add(self.decisions, &["allow", "ok"], take(&p.decisions[0]));
        for (i, r) in Reason::ALL.iter().enumerate() {
            add(
                self.decisions,
                &["deny", r.as_str()],
                take(&p.decisions[1 + i]),
            );
        }
        for v in Verification::ALL {
            add(
                self.verifications,
                &[v.as_str()],
                take(&p.verifications[v as usize]),
            );
        }
        add(self.cache_hits, &[], take(&p.cache_hits));
        let age = replica.age().map_or(u64::MAX, |a| a.as_secs());
        for (id, v) in [
            (self.keys, replica.snapshot().len() as u64),
            (self.age, age),
            (self.connected, u64::from(store.read().connected)),
        ] {
            // SAFETY: as above.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                    config,
                    id,
                    std::ptr::null(),
                    0,
                    v,
                );
            }
        }
    }
}

/// The thread that wakes the config's flush once a second, until dropped.
pub struct Ticker {
    scheduler: SendPtr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct SendPtr(ConfigSchedulerPtr);
// SAFETY: Envoy allows a config scheduler's commit and delete from any thread; it is deleted
// only after the ticking thread has stopped.
unsafe impl Send for SendPtr {}
// SAFETY: as above; the pointer itself is never written.
unsafe impl Sync for SendPtr {}

/// How often pending counts reach Envoy's stats.
const EVERY: Duration = Duration::from_secs(1);

impl Ticker {
    /// Starts ticking `config`'s scheduler (made here: call in config_new).
    pub fn start(config: FilterConfigEnvoyPtr) -> Option<Ticker> {
        // SAFETY: on the main thread, in config_new.
        let scheduler =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config) };
        if scheduler.is_null() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (SendPtr(scheduler), stop.clone());
        let thread = std::thread::Builder::new()
            .name("keygate-stats".into())
            .spawn(move || {
                let s = s;
                while !halt.load(Ordering::Acquire) {
                    std::thread::park_timeout(EVERY);
                    if halt.load(Ordering::Acquire) {
                        break;
                    }
                    // SAFETY: the scheduler lives until this thread has stopped.
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            s.0, 0,
                        )
                    };
                }
            })
            .ok()?;
        Some(Ticker {
            scheduler: SendPtr(scheduler),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        // SAFETY: no commit can come any more; deleted once.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.scheduler.0)
        };
    }
}
