//! One keygate per nginx worker process: the settings the master parsed, the authorizer with
//! its own key table, and the follower thread that loads and follows the store, writes usage
//! back and publishes the worker's table state to the shared zone, as the sidecar does.
//!
//! Why one table per worker: workers are processes, and the table is a copy-on-write tree of
//! `Arc`s that cannot live in a shared memory zone without an allocator of its own there. A
//! table per worker costs memory per worker (measured in the README's "Inside nginx"), and
//! every worker follows the store by itself, so a revocation reaches each within a second.
//! Nothing here runs in the master: threads started before the fork would not survive it, so
//! all of it starts in `init_process`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use keygate_authz::store_thread::{self, StartError, StoreThread, StoreWork};
use keygate_authz::{Engine, VerifyLimits};
use keygate_config::Settings;
use keygate_store::replica::Replica;
use keygate_store::{Store, StoreStats};

use crate::shared::{Shared, Slot, ZoneObserver};

/// Header names an allow sets or removes, lowercase, with nginx's hash of each.
pub struct Wire {
    /// The identity headers, in the order of `Allow::identity`.
    pub identity: [Name; 4],
    /// Every scheme's credential header, once.
    pub credentials: Vec<Name>,
    /// `identity_headers.meta_prefix`, lowercase: a key's metadata goes upstream under it, and
    /// a client-sent header under it never does.
    pub meta_prefix: Option<String>,
}

pub struct Name {
    pub lower: String,
    pub hash: usize,
    /// The name lives as long as the worker (a [`Wire`] name), so nginx's header may point
    /// at it; a name made for one request is copied into the request's pool instead.
    pub stable: bool,
}

impl Name {
    fn new(name: &str) -> Name {
        Name {
            stable: true,
            ..Name::transient(name)
        }
    }

    /// A name made for one request (a metadata header).
    pub fn transient(name: &str) -> Name {
        let lower = name.to_ascii_lowercase();
        Name {
            hash: crate::headers::hash(lower.as_bytes()),
            lower,
            stable: false,
        }
    }
}

pub struct Worker {
    pub engine: Arc<Engine>,
    pub wire: Wire,
    follower: Mutex<Option<StoreThread>>,
    slot: Option<&'static Slot>,
}

/// Why a worker's keygate could not start (it then answers 503, as before a first load).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] keygate_store::StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
}

static WORKER: OnceLock<Worker> = OnceLock::new();

/// This worker's keygate, once started.
pub fn get() -> Option<&'static Worker> {
    WORKER.get()
}

/// Starts this worker's keygate: the table loaded from a file before the first request (from
/// Redis when it can be reached), then followed. `index`: nginx's number for this worker.
///
/// Every thread keygate starts blocks every signal: nginx's handlers only set flags that the
/// worker's event loop reads when a signal interrupts its wait, which a signal delivered to
/// another thread would not do.
pub fn start(
    settings: Arc<Settings>,
    shared: &'static Shared,
    index: usize,
) -> Result<(), WorkerError> {
    let _blocked = SignalsBlocked::new();
    start_threads(settings, shared, index)
}

/// Blocks every signal in the calling thread (and so in the threads it starts) until dropped.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigset_t is plain data; the masks are the calling thread's.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            SignalsBlocked(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask `new` saved, in the same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

fn start_threads(
    settings: Arc<Settings>,
    shared: &'static Shared,
    index: usize,
) -> Result<(), WorkerError> {
    let store = Store::open(&settings.store)?;
    let replica = Arc::new(Replica::new(settings.policy.clone()));
    let engine = Arc::new(Engine::new(
        settings.policy.clone(),
        VerifyLimits {
            concurrency: settings.verify_concurrency,
            failures_per_minute: settings.failures_per_minute,
        },
        replica.clone(),
        Arc::new(ZoneObserver::new(shared)),
    ));
    let slot = shared.slot(index);
    if let Some(s) = slot {
        s.claim(std::process::id());
    }
    let stats: Arc<StoreStats> = Arc::default();
    let work = StoreWork {
        store,
        engine: engine.clone(),
        replica: replica.clone(),
        stats: stats.clone(),
        every: settings.flush_interval,
    };
    let follower = StoreThread::start(work, move |stopped| async move {
        match slot {
            Some(slot) => publish_every(slot, &replica, &stats, stopped).await,
            None => store_thread::until(stopped).await,
        }
    })?;
    let p = &settings.policy;
    let wire = Wire {
        identity: p.identity.all().map(Name::new),
        credentials: keygate_core::credential::headers(&p.schemes)
            .map(Name::new)
            .collect(),
        meta_prefix: p.identity.meta_prefix.clone(),
    };
    let worker = Worker {
        engine,
        wire,
        follower: Mutex::new(Some(follower)),
        slot,
    };
    // Started once per process (init_process runs once): a second start keeps the first.
    let _ = WORKER.set(worker);
    Ok(())
}

/// Stops the follower, writing the last usage back, and frees this worker's slot.
pub fn stop() {
    let Some(w) = WORKER.get() else {
        return;
    };
    // Dropped: stopped after its last usage write-back.
    drop(w.follower.lock().unwrap_or_else(|p| p.into_inner()).take());
    if let Some(s) = w.slot {
        s.release(std::process::id());
    }
}

/// How often a worker publishes its table state to its slot.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Publishes this worker's table state to its slot every [`PUBLISH_EVERY`] until `stopped`.
async fn publish_every(
    slot: &Slot,
    replica: &Replica,
    stats: &StoreStats,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let stop = store_thread::until(stopped);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => publish(slot, replica, stats),
        }
    }
}

/// Writes what this worker knows into its slot of the shared zone.
fn publish(slot: &Slot, replica: &Replica, stats: &StoreStats) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let confirmed = replica
        .age()
        .map_or(0, |a| now_ms.saturating_sub(a.as_millis() as u64).max(1));
    let r = stats.read();
    for (field, v) in [
        (&slot.keys, replica.snapshot().len() as u64),
        (&slot.revision, replica.revision()),
        (&slot.confirmed_ms, confirmed),
        (&slot.connected, u64::from(r.connected)),
        (&slot.reconnects, r.reconnects),
        (&slot.full_loads, r.full_loads),
        (&slot.usage_flushes, r.usage_flushes),
        (&slot.usage_flush_failures, r.usage_flush_failures),
    ] {
        field.store(v, Ordering::Relaxed);
    }
}
