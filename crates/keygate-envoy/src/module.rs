//! One keygate per Envoy process and config file: the settings, the authorizer with its
//! table, and the follower thread that loads and follows the store and writes usage back, as
//! the sidecar does. Every filter config naming the same file shares it; the last one to go
//! stops the follower.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use keygate_authz::store_thread::{self, StartError, StoreThread, StoreWork};
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
    /// Stopped (usage written back) when the module goes.
    _follower: Option<StoreThread>,
}

/// Why a module could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(transparent)]
    Config(#[from] keygate_config::ConfigError),
    #[error(transparent)]
    Store(#[from] keygate_store::StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
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
            _follower: None,
        }
    }

    fn start(settings: Arc<Settings>) -> Result<Module, ModuleError> {
        let store = Store::open(&settings.store)?;
        let pending = Arc::new(Pending::default());
        let (engine, replica) = Module::engine(&settings, pending.clone());
        let stats: Arc<StoreStats> = Arc::default();
        let work = StoreWork {
            store,
            engine: engine.clone(),
            replica,
            stats: stats.clone(),
            every: settings.flush_interval,
        };
        let follower = StoreThread::start(work, store_thread::until)?;
        Ok(Module {
            settings,
            engine,
            store_stats: stats,
            pending,
            _follower: Some(follower),
        })
    }
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
