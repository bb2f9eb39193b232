//! The sidecar's authorizer: the shared [`Engine`] with what the sidecar's frontends need
//! beside it — the whole settings, the HTTP frontend's prebuilt header values, the Prometheus
//! registry it reports into, the store's stats, and the draining flag of a graceful shutdown.
//! A config reload replaces the settings and the values made from them together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use keygate_authz::{Engine, VerifyLimits};
use keygate_store::StoreStats;
use keygate_store::usage::UsageCounter;

use crate::config::Settings;
use crate::core::request::{Headers, Request};
use crate::frontend::http::AllowHeaders;
use crate::metrics::{Frontend, Metrics};
use crate::store::replica::Replica;

pub use keygate_authz::{Decision, unix_now};

/// The settings in force, with the wire values made from them once.
pub struct Current {
    pub settings: Arc<Settings>,
    pub allow_headers: AllowHeaders,
}

pub struct Authorizer {
    engine: Engine,
    current: ArcSwap<Current>,
    /// Set when shutdown begins: `/readyz` answers 503 so traffic moves elsewhere first.
    pub draining: AtomicBool,
    pub replica: Arc<Replica>,
    pub metrics: Arc<Metrics>,
    pub store_stats: Arc<StoreStats>,
}

impl Authorizer {
    pub fn new(
        settings: Arc<Settings>,
        replica: Arc<Replica>,
        metrics: Arc<Metrics>,
    ) -> Authorizer {
        let engine = Engine::new(
            settings.policy.clone(),
            VerifyLimits {
                concurrency: settings.verify_concurrency,
                failures_per_minute: settings.failures_per_minute,
            },
            replica.clone(),
            metrics.clone(),
        );
        Authorizer {
            engine,
            current: ArcSwap::new(Arc::new(current(settings))),
            draining: AtomicBool::new(false),
            replica,
            metrics,
            store_stats: Arc::default(),
        }
    }

    /// The current settings (replaced as a whole by a config reload).
    pub fn settings(&self) -> Arc<Settings> {
        self.current.load().settings.clone()
    }

    /// The current settings with the values made from them.
    pub fn current(&self) -> arc_swap::Guard<Arc<Current>> {
        self.current.load()
    }

    /// Installs reloaded settings; requests already deciding finish with the old ones.
    pub fn set_settings(&self, s: Arc<Settings>) {
        self.engine.set_policy(s.policy.clone());
        self.current.store(Arc::new(current(s)));
    }

    /// Allowed requests counted since the last write-back.
    pub fn usage(&self) -> &UsageCounter {
        &self.engine.usage
    }

    /// This process's rate limit counters.
    pub fn limiter(&self) -> &Arc<keygate_authz::limiter::Limiter> {
        &self.engine.limiter
    }

    /// This process's credit leases.
    pub fn wallet(&self) -> &keygate_authz::wallet::Wallet {
        &self.engine.wallet
    }

    /// Ready to take traffic: the table is loaded and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.replica.is_loaded() && !self.draining.load(Ordering::Acquire)
    }

    /// Decides one request and records it.
    pub async fn check<H: Headers + ?Sized>(
        &self,
        req: &Request<'_, H>,
        frontend: Frontend,
    ) -> Decision {
        self.engine.check(req, frontend).await
    }
}

fn current(settings: Arc<Settings>) -> Current {
    let p = &settings.policy;
    // The config accepts only names `http` accepts too; the defaults stand in otherwise.
    let allow_headers = AllowHeaders::new(&p.identity, &p.schemes).unwrap_or_else(|| {
        tracing::error!("identity header names not valid in HTTP; using the defaults");
        AllowHeaders::new(&Default::default(), &p.schemes).expect("the default names are valid")
    });
    Current {
        settings,
        allow_headers,
    }
}
