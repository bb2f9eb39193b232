//! Binds the listeners and runs keygate: the initial table load, the replica follower, usage
//! write-back, the gRPC, HTTP and admin servers, and an orderly shutdown.
//!
//! [`start`] takes the config and returns the bound addresses, so tests can listen on port 0.
//! [`listener`] is the accept loop every listener shares; [`tls`] its TLS.

pub mod listener;
pub mod tls;

pub use tls::Tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::api::Admin;
use crate::admin::manage::Manager;
use crate::authz::store_thread::until;
use crate::config::Settings;
use crate::frontend::envoy_grpc::EnvoyGrpc;
use crate::metrics::{Listener, Metrics};
use crate::service::Authorizer;
use crate::store::Store;
use crate::store::replica::Replica;
use crate::store::usage::write_back;

/// A running keygate.
pub struct Running {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub authorizer: Arc<Authorizer>,
    store: Store,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Why a reloaded config was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} cannot change without a restart")]
    NeedsRestart(&'static str),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), flushes usage, and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let limit = self.authorizer.settings().drain_timeout + std::time::Duration::from_secs(1);
        let drained = tokio::time::timeout(limit, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("drain time exceeded; closing the remaining connections");
            self.tasks.shutdown().await;
        }
    }

    /// Graceful shutdown: `/readyz` turns 503 at once, traffic has `drain_delay` to move
    /// elsewhere, then listeners close and in-flight requests finish.
    pub async fn drain_and_shutdown(self) {
        self.authorizer
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        let delay = self.authorizer.settings().drain_delay;
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "draining: not ready, then shutting down"
        );
        tokio::time::sleep(delay).await;
        self.shutdown().await;
    }

    /// Applies a reloaded config: routes, schemes, plans, identity headers and limits change
    /// atomically; listeners and the store need a restart and are refused.
    pub async fn reload(&self, new: Settings) -> Result<(), ReloadError> {
        let cur = self.authorizer.settings();
        if (new.grpc, new.http, new.admin, &new.tls) != (cur.grpc, cur.http, cur.admin, &cur.tls) {
            return Err(ReloadError::NeedsRestart("listen"));
        }
        if new.store != cur.store {
            return Err(ReloadError::NeedsRestart("store"));
        }
        let new = Arc::new(new);
        // Build the table under the new schemes before requests see them: both change together.
        loop {
            let state = self.store.load().await?;
            if self.authorizer.replica.install_policy(&new.policy, &state) {
                break;
            }
        }
        self.authorizer.set_settings(new);
        Ok(())
    }
}

/// Why keygate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

async fn bind(
    addr: Option<SocketAddr>,
    what: &'static str,
) -> Result<Option<TcpListener>, StartError> {
    match addr {
        None => Ok(None),
        Some(a) => Ok(Some(TcpListener::bind(a).await.map_err(|e| {
            StartError::Bind {
                addr: a,
                what,
                source: e,
            }
        })?)),
    }
}

/// Starts keygate. The admin listener starts only with a token.
pub async fn start(settings: Settings, admin_token: Option<String>) -> Result<Running, StartError> {
    let settings = Arc::new(settings);
    let store = Store::open(&settings.store)?;
    let metrics = Arc::new(Metrics::new());
    let replica = Arc::new(Replica::new(settings.policy.clone()));
    let auth = Arc::new(Authorizer::new(
        settings.clone(),
        replica.clone(),
        metrics.clone(),
    ));
    // Until the table is loaded keygate is not ready and refuses every request with 503.
    store.load_at_start(&replica, &auth.store_stats).await?;

    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let tls = settings.tls.as_ref().map(Tls::load).transpose()?;
    let grpc_l = bind(settings.grpc, "gRPC").await?;
    let http_l = bind(settings.http, "HTTP").await?;
    let token = admin_token.filter(|t| !t.is_empty());
    let admin_l = match (&token, settings.admin) {
        (Some(_), a) => bind(a, "admin").await?,
        (None, Some(a)) => {
            tracing::warn!(%a, "admin listener not started: KEYGATE_ADMIN_TOKEN is not set");
            None
        }
        (None, None) => None,
    };
    let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (grpc, http, admin) = (addr(&grpc_l), addr(&http_l), addr(&admin_l));

    {
        let (store, replica, stats) = (store.clone(), replica.clone(), auth.store_stats.clone());
        let done = until(stop_rx.clone());
        tasks.spawn(async move { store.follow(replica, stats, done).await });
    }
    {
        let (store, auth) = (store.clone(), auth.clone());
        let done = until(stop_rx.clone());
        tasks.spawn(async move {
            let every = auth.settings().flush_interval;
            write_back(auth.usage(), &store, &auth.store_stats, every, done).await
        });
    }
    {
        let rt = tokio::runtime::Handle::current();
        auth.wallet().attach(store.clone(), rt.clone());
        auth.limiter().attach(store.clone(), rt);
        let (auth, done) = (auth.clone(), until(stop_rx.clone()));
        let beat = until(stop_rx.clone());
        tasks.spawn(async move {
            tokio::join!(auth.wallet().keep(done), auth.limiter().keep(beat));
        });
    }

    let opts = |which: Listener, http2_only: bool| {
        let (open, refused) = metrics.listener(which);
        let l = &settings.limits;
        listener::Options {
            max_connections: l.max_connections,
            idle_timeout: l.idle_timeout,
            header_read_timeout: l.header_read_timeout,
            max_concurrent_streams: l.max_concurrent_streams,
            http2_only,
            drain_timeout: settings.drain_timeout,
            tls: tls.as_ref().map(|t| t.acceptor.clone()),
            open,
            refused,
        }
    };
    if let Some(l) = grpc_l {
        let svc = EnvoyGrpc::new(auth.clone()).into_service();
        tasks.spawn(listener::serve(
            l,
            until(stop_rx.clone()),
            opts(Listener::Grpc, true),
            move |req| {
                let mut svc = svc.clone();
                tower_service::Service::call(&mut svc, req)
            },
        ));
    }
    if let Some(l) = http_l {
        let a = auth.clone();
        tasks.spawn(listener::serve(
            l,
            until(stop_rx.clone()),
            opts(Listener::Http, false),
            move |req| crate::frontend::http::handle(a.clone(), req),
        ));
    }
    if let (Some(l), Some(t)) = (admin_l, token) {
        let manager = Manager::new(settings.clone(), store.clone(), Some(replica.clone()));
        let router = crate::admin::api::router(Arc::new(Admin::new(
            manager,
            &t,
            settings.admin_label.clone(),
            settings.limits.admin_failures_per_minute,
            metrics.admin_auth_failures.clone(),
        )));
        tasks.spawn(listener::serve(
            l,
            until(stop_rx.clone()),
            opts(Listener::Admin, false),
            move |req| {
                let mut router = router.clone();
                tower_service::Service::call(&mut router, req)
            },
        ));
    }
    tracing::info!(
        grpc = %opt(grpc),
        http = %opt(http),
        admin = %opt(admin),
        keys = replica.snapshot().len(),
        "keygate listening"
    );
    Ok(Running {
        grpc,
        http,
        admin,
        authorizer: auth,
        store,
        stop,
        tasks,
    })
}

fn opt(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "off".to_string(), |a| a.to_string())
}
