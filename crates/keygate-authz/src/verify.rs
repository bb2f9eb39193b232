//! Argon2 verification off the request threads, bounded four ways: a fixed pool of hash
//! threads (the concurrency limit) takes jobs in order; the threads run at the lowest CPU
//! priority, so decisions for cached keys keep the CPU while a flood of wrong secrets keeps
//! them busy; a successful verification is remembered on the key's table entry as an HMAC of
//! the presented key under a per-process random key (never the key itself), and dies with the
//! entry when the record changes; and each key id has a budget of failed verifications per
//! minute, past which wrong secrets for it are refused without running Argon2 (a cached valid
//! key still passes).
//!
//! The API is a callback, not a future, so that data planes without an async runtime (a proxy
//! worker thread) can use it: [`Verifier::submit`] runs the job on a pool thread and calls
//! `done` there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use keygate_core::decide::SecretCheck;
use keygate_core::table::{KeyEntry, KeyRef};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::observe::{Observer, Verification};

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run Argon2 verifications, at nice 19 on Linux (the lowest priority): the
/// scheduler then gives request threads the CPU first. They end when the pool is dropped.
struct HashPool {
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

impl HashPool {
    fn new(threads: usize) -> HashPool {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
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
        HashPool {
            jobs: Mutex::new(tx),
        }
    }

    /// Queues `job`; `false` if the pool is gone.
    fn run(&self, job: Job) -> bool {
        let tx = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        tx.send(job).is_ok()
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

/// Entries kept in the failure map before stale minutes are swept.
const FAILURE_MAP_SWEEP: usize = 10_000;

struct Inner {
    mac: Hmac<Sha256>,
    pool: HashPool,
    failures_per_minute: u32,
    /// key id -> (minute, failures in that minute).
    failures: Mutex<HashMap<Box<str>, (i64, u32)>>,
    observer: Arc<dyn Observer>,
}

/// Argon2 verification: cache, throttle and bounded pool. Cheap to clone.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

impl Verifier {
    pub fn new(
        concurrency: usize,
        failures_per_minute: u32,
        observer: Arc<dyn Observer>,
    ) -> Verifier {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut k[..]).expect("the OS random number generator failed");
        Verifier(Arc::new(Inner {
            mac: Hmac::<Sha256>::new_from_slice(&k[..]).expect("HMAC takes any key length"),
            pool: HashPool::new(concurrency.max(1)),
            failures_per_minute,
            failures: Mutex::new(HashMap::new()),
            observer,
        }))
    }

    fn digest(&self, key: &[u8]) -> [u8; 32] {
        let mut m = self.0.mac.clone();
        m.update(key);
        m.finalize().into_bytes().into()
    }

    fn throttled(&self, id: &str, now: i64) -> bool {
        let map = self.0.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .is_some_and(|(minute, n)| *minute == now / 60 && *n >= self.0.failures_per_minute)
    }

    fn failed(&self, id: &str, now: i64) {
        let minute = now / 60;
        let mut map = self.0.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FAILURE_MAP_SWEEP {
            map.retain(|_, (m, _)| *m == minute);
        }
        let e = map.entry(id.into()).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
    }

    /// Verifies `presented` against `entry` on a hash thread and calls `done` there with the
    /// answer; a success is cached on the entry. Wrong secrets that queued together do not all
    /// run once the id's budget is spent: the budget is checked when the job starts.
    pub fn submit(
        &self,
        entry: KeyRef,
        presented: Zeroizing<Vec<u8>>,
        now: i64,
        done: impl FnOnce(bool) + Send + 'static,
    ) {
        let v = self.clone();
        let job = move || {
            if v.throttled(entry.id(), now) {
                v.0.observer.verification(Verification::Throttled);
                return done(false);
            }
            let ok =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry.verify(&presented)))
                    .unwrap_or(false);
            if ok {
                entry.set_verified(v.digest(&presented));
                v.0.observer.verification(Verification::Ok);
            } else {
                v.failed(entry.id(), now);
                v.0.observer.verification(Verification::Failed);
            }
            done(ok);
        };
        if !self.0.pool.run(Box::new(job)) {
            tracing::error!("the hash pool is gone; refusing the verification");
        }
    }

    /// The cache and throttle as `decide` reads them at `now`.
    pub fn check(&self, now: i64) -> Cached<'_> {
        Cached {
            v: self,
            now,
            just: None,
        }
    }
}

/// The cache and throttle as the core sees them.
pub struct Cached<'a> {
    v: &'a Verifier,
    now: i64,
    /// The answer of a verification that just ran, for the second pass of `decide`.
    just: Option<(&'a KeyEntry, bool)>,
}

impl<'a> Cached<'a> {
    /// The same, also answering `ok` for `entry` (its verification just ran).
    pub fn with_result(self, entry: &'a KeyEntry, ok: bool) -> Cached<'a> {
        Cached {
            just: Some((entry, ok)),
            ..self
        }
    }
}

impl SecretCheck for Cached<'_> {
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool> {
        if let Some((e, ok)) = self.just
            && e.id() == entry.id()
            && e.hash() == entry.hash()
        {
            return Some(ok);
        }
        if let Some(d) = entry.verified()
            && bool::from(self.v.digest(key).ct_eq(d))
        {
            self.v.0.observer.cache_hit();
            return Some(true);
        }
        if self.v.throttled(entry.id(), self.now) {
            self.v.0.observer.verification(Verification::Throttled);
            return Some(false);
        }
        None
    }
}
