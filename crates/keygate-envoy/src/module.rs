//! One keygate per Envoy process and config file: the settings, the authorizer with its
//! table, and the follower thread that loads and follows the store and writes usage back, as
//! the sidecar does. Every filter config naming the same file shares it; the last one to go
//! stops the follower.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use keygate_authz::{Engine, Observer, Verification, VerifyLimits};
use keygate_config::Settings;
use keygate_core::decide::Reason;
use keygate_store::replica::Replica;
use keygate_store::{Store, StoreStats};

use crate::stats::Pending;

pub struct Module {
    pub settings: Arc<Settings>,
    pub engine: Arc<Engine>,
    pub store_stats: Arc<StoreStats>,
    /// Decisions, verifications and cache hits not yet in Envoy's stats.
    pub pending: Arc<Pending>,
    follower: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
}

/// Why a module could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(transparent)]
    Config(#[from] keygate_config::ConfigError),
    #[error(transparent)]
    Store(#[from] keygate_store::StoreError),
    #[error("cannot start the store follower: {0}")]
    Thread(std::io::Error),
}

static MODULES: Mutex<Vec<(PathBuf, Weak<Module>)>> = Mutex::new(Vec::new());

impl Module {
    /// The module for `path`: the running one, or a new one that has loaded the table (from a
    /// file) or started to (from Redis). `validate_only` parses the config and starts nothing.
    pub fn get(path: &Path, validate_only: bool) -> Result<Arc<Module>, ModuleError> {
        let settings = Arc::new(Settings::load(path)?);
        if validate_only {
            return Ok(Arc::new(Module::inert(settings)));
        }
        let mut modules = MODULES.lock().unwrap_or_else(|p| p.into_inner());
        modules.retain(|(_, w)| w.strong_count() > 0);
        if let Some(m) = modules
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(m);
        }
        let m = Arc::new(Module::start(settings)?);
        modules.push((path.to_owned(), Arc::downgrade(&m)));
        Ok(m)
    }

    fn engine(settings: &Settings, pending: Arc<Pending>) -> (Arc<Engine>, Arc<Replica>) {
        let replica = Arc::new(Replica::new(settings.policy.clone()));
        let engine = Engine::new(
            settings.policy.clone(),
            VerifyLimits {
                concurrency: settings.verify_concurrency,
                failures_per_minute: settings.failures_per_minute,
            },
            replica.clone(),
            pending,
        );
        (Arc::new(engine), replica)
    }

    fn inert(settings: Arc<Settings>) -> Module {
        let pending = Arc::new(Pending::default());
        let (engine, _) = Module::engine(&settings, pending.clone());
        Module {
            settings,
            engine,
            store_stats: Arc::default(),
            pending,
            follower: None,
        }
    }

    fn start(settings: Arc<Settings>) -> Result<Module, ModuleError> {
        let store = Store::open(&settings.store)?;
        let pending = Arc::new(Pending::default());
        let (engine, replica) = Module::engine(&settings, pending.clone());
        let stats: Arc<StoreStats> = Arc::default();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (first, first_load) = std::sync::mpsc::channel();
        let thread = {
            let (engine, stats) = (engine.clone(), stats.clone());
            let every = settings.flush_interval;
            std::thread::Builder::new()
                .name("keygate-follower".into())
                .spawn(move || follow(store, engine, replica, stats, every, stopped, first))
                .map_err(ModuleError::Thread)?
        };
        // A local file is loaded before the first request (unreadable, it refuses the
        // config, as the sidecar refuses to start); Redis is loaded when it can be reached.
        let loaded = first_load.recv().map_err(|_| {
            ModuleError::Thread(std::io::Error::other("the follower stopped before loading"))
        });
        if let Err(e) = loaded.and_then(|r| r.map_err(ModuleError::from)) {
            let _ = stop.send(true);
            let _ = thread.join();
            return Err(e);
        }
        Ok(Module {
            settings,
            engine,
            store_stats: stats,
            pending,
            follower: Some((stop, thread)),
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.follower.take() {
            let _ = stop.send(true);
            let _ = thread.join();
        }
    }
}

/// The follower thread: the store followed into the table, usage written back, until `stop`.
fn follow(
    store: Store,
    engine: Arc<Engine>,
    replica: Arc<Replica>,
    stats: Arc<StoreStats>,
    every: std::time::Duration,
    stopped: tokio::sync::watch::Receiver<bool>,
    first: std::sync::mpsc::Sender<Result<(), keygate_store::StoreError>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the store follower's runtime");
            return;
        }
    };
    rt.block_on(async move {
        let loaded = store.load_at_start(&replica, &stats).await;
        let failed = loaded.is_err();
        let _ = first.send(loaded);
        if failed {
            return;
        }
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let rt = tokio::runtime::Handle::current();
        engine.wallet.attach(store.clone(), rt.clone());
        engine.limiter.attach(store.clone(), rt);
        tokio::join!(
            store.follow(replica, stats.clone(), until(stopped.clone())),
            keygate_store::usage::write_back(
                &engine.usage,
                &store,
                &stats,
                every,
                until(stopped.clone())
            ),
            engine.wallet.keep(until(stopped.clone())),
            engine.limiter.keep(until(stopped)),
        );
    });
}

impl Observer for Pending {
    /// Counted here; the latency is recorded by the filter, on the worker.
    fn decision(&self, _: keygate_authz::Frontend, denied: Option<Reason>, _: f64) {
        self.add_decision(denied);
    }

    fn verification(&self, v: Verification) {
        self.add_verification(v);
    }

    fn cache_hit(&self) {
        self.add_cache_hit();
    }
}
