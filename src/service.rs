//! The authorizer every frontend calls: it takes the current snapshot, runs the pure core,
//! performs Argon2 verification off the async runtime when the core asks for it, and records
//! metrics and usage from the typed outcome.
//!
//! Argon2 cost is bounded four ways: a semaphore caps verifications running at once; they run
//! on threads of their own at the lowest CPU priority, so decisions for cached keys keep the
//! CPU while a flood of wrong secrets keeps the hash threads busy; a successful verification
//! is remembered on the key's table entry as an HMAC of the presented key under a per-process
//! random key (never the key itself), and dies with the entry when the record changes; and
//! each key id has a budget of failed verifications per minute, past which wrong secrets for
//! it are refused without running Argon2 (a cached valid key still passes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::config::Settings;
use crate::core::decide::{Allow, Denial, Outcome, Reason, SecretCheck, decide};
use crate::core::key;
use crate::core::request::{Headers, Request};
use crate::core::table::KeyEntry;
use crate::metrics::{Frontend, Metrics, Verification};
use crate::store::replica::Replica;
use crate::store::state::UsageBatch;

/// The decision a frontend turns into its wire format.
pub type Decision = Result<Allow, Denial>;

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Threads that run Argon2 verifications, at nice 19 on Linux (the lowest priority): the
/// scheduler then gives the runtime's threads the CPU first. They end when the pool is dropped.
struct HashPool {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl HashPool {
    fn new(threads: usize) -> HashPool {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("keygate-hash-{i}"))
                .spawn(move || {
                    lowest_priority();
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("cannot start a hash thread");
        }
        HashPool { jobs: tx }
    }

    /// Runs `f` on a pool thread; `None` if it panicked.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r.ok());
        };
        self.jobs.send(Box::new(job)).ok()?;
        rx.await.ok().flatten()
    }
}

#[cfg(target_os = "linux")]
fn lowest_priority() {
    // On Linux a nice value belongs to the thread named by its id, not to the process.
    // SAFETY: plain system calls on the calling thread's own id.
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
    };
    if r != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the priority of a hash thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() {}

/// Argon2 verification: cache, throttle and bounded pool.
pub struct Verifier {
    mac: Hmac<Sha256>,
    permits: Arc<Semaphore>,
    pool: HashPool,
    failures_per_minute: u32,
    /// key id -> (minute, failures in that minute).
    failures: Mutex<HashMap<Box<str>, (i64, u32)>>,
    metrics: Arc<Metrics>,
}

/// Entries kept in the failure map before stale minutes are swept.
const FAILURE_MAP_SWEEP: usize = 10_000;

impl Verifier {
    pub fn new(concurrency: usize, failures_per_minute: u32, metrics: Arc<Metrics>) -> Verifier {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut k[..]).expect("the OS random number generator failed");
        Verifier {
            mac: Hmac::<Sha256>::new_from_slice(&k[..]).expect("HMAC takes any key length"),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            pool: HashPool::new(concurrency.max(1)),
            failures_per_minute,
            failures: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn digest(&self, key: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(key);
        m.finalize().into_bytes().into()
    }

    fn throttled(&self, id: &str, now: i64) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .is_some_and(|(minute, n)| *minute == now / 60 && *n >= self.failures_per_minute)
    }

    fn failed(&self, id: &str, now: i64) {
        let minute = now / 60;
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FAILURE_MAP_SWEEP {
            map.retain(|_, (m, _)| *m == minute);
        }
        let e = map.entry(id.into()).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
    }

    /// Runs Argon2 on the hash pool, bounded by the semaphore; caches a success.
    async fn verify(&self, entry: Arc<KeyEntry>, presented: &[u8], now: i64) -> bool {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        // Wrong secrets that queued together must not all run once the budget is spent.
        if self.throttled(&entry.id, now) {
            self.metrics.verification(Verification::Throttled);
            return false;
        }
        let key = Zeroizing::new(presented.to_vec());
        let e = entry.clone();
        // The permit goes with the job: a request given up while its hash runs does not
        // let another start beside it.
        let ok = self
            .pool
            .run(move || {
                let _permit = permit;
                key::verify(&e.hash, &key)
            })
            .await
            .unwrap_or(false);
        if ok {
            entry.set_verified(self.digest(presented));
            self.metrics.verification(Verification::Ok);
        } else {
            self.failed(&entry.id, now);
            self.metrics.verification(Verification::Failed);
        }
        ok
    }
}

/// The cache and throttle as the core sees them.
struct Cached<'a> {
    v: &'a Verifier,
    now: i64,
    /// The answer of a verification that just ran, for the second pass of `decide`.
    just: Option<(&'a KeyEntry, bool)>,
}

impl SecretCheck for Cached<'_> {
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool> {
        if let Some((e, ok)) = self.just
            && e.id == entry.id
            && e.hash == entry.hash
        {
            return Some(ok);
        }
        if let Some(d) = entry.verified()
            && bool::from(self.v.digest(key).ct_eq(d))
        {
            self.v.metrics.cache_hits.inc();
            return Some(true);
        }
        if self.v.throttled(&entry.id, self.now) {
            self.v.metrics.verification(Verification::Throttled);
            return Some(false);
        }
        None
    }
}

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

pub struct Authorizer {
    settings: arc_swap::ArcSwap<Settings>,
    /// Set when shutdown begins: `/readyz` answers 503 so traffic moves elsewhere first.
    pub draining: std::sync::atomic::AtomicBool,
    pub replica: Arc<Replica>,
    pub metrics: Arc<Metrics>,
    pub usage: UsageCounter,
    verifier: Verifier,
}

impl Authorizer {
    pub fn new(
        settings: Arc<Settings>,
        replica: Arc<Replica>,
        metrics: Arc<Metrics>,
    ) -> Authorizer {
        let verifier = Verifier::new(
            settings.verify_concurrency,
            settings.failures_per_minute,
            metrics.clone(),
        );
        Authorizer {
            settings: arc_swap::ArcSwap::new(settings),
            draining: std::sync::atomic::AtomicBool::new(false),
            replica,
            metrics,
            usage: UsageCounter::default(),
            verifier,
        }
    }

    /// The current settings (replaced as a whole by a config reload).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Installs reloaded settings; requests already deciding finish with the old ones.
    pub fn set_settings(&self, s: Arc<Settings>) {
        self.settings.store(s);
    }

    /// Ready to take traffic: the table is loaded and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.replica.is_loaded() && !self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Decides one request and records it.
    pub async fn check<H: Headers + ?Sized>(
        &self,
        req: &Request<'_, H>,
        frontend: Frontend,
    ) -> Decision {
        let start = Instant::now();
        let now = unix_now();
        let s = &*self.settings.load();
        let first = {
            let table = self.replica.snapshot();
            let check = Cached {
                v: &self.verifier,
                now,
                just: None,
            };
            decide(&s.schemes, &s.routes, &table, req, now, &check)
        };
        let outcome = match first {
            Outcome::NeedsVerify { entry, key } => {
                let ok = self.verifier.verify(entry.clone(), key, now).await;
                // Decide again on the newest table: the key may have changed meanwhile.
                let table = self.replica.snapshot();
                let check = Cached {
                    v: &self.verifier,
                    now,
                    just: Some((&entry, ok)),
                };
                decide(&s.schemes, &s.routes, &table, req, now, &check)
            }
            o => o,
        };
        let decision = match outcome {
            Outcome::Allow(a) => Ok(a),
            Outcome::Deny(d) => Err(d),
            // Only reachable if the key was replaced by one with another hash mid-request.
            Outcome::NeedsVerify { .. } => Err(Denial {
                reason: Reason::Unknown,
                bearer: false,
                presented: true,
                scope: None,
                account_status: None,
            }),
        };
        if let Ok(a) = &decision {
            self.usage.add(&a.key.id, now);
        }
        let reason = decision.as_ref().err().map(|d| d.reason);
        self.metrics
            .decision(frontend, reason, start.elapsed().as_secs_f64());
        if let Some(r) = reason {
            tracing::debug!(frontend = frontend.as_str(), reason = r.as_str(), "denied");
        } else if let Ok(a) = &decision {
            tracing::trace!(
                frontend = frontend.as_str(),
                key_id = &*a.key.id,
                account = &*a.key.account,
                "allowed"
            );
        }
        decision
    }
}
