//! The thread an in-proxy data plane (Envoy's module, nginx's module) keeps its table current
//! on: a current-thread runtime of its own, away from the proxy's workers, that loads the table,
//! then follows the store, writes usage back and keeps credit and rate limit leases, until it
//! is stopped. The sidecar runs the same work on its own runtime.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use keygate_store::replica::Replica;
use keygate_store::{Store, StoreError, StoreStats};
use tokio::sync::watch;

use crate::Engine;

/// Why the thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The first load failed (a file store that cannot be read); the thread is gone.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the store follower: {0}")]
    Thread(std::io::Error),
}

/// What the thread works on.
pub struct StoreWork {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub replica: Arc<Replica>,
    pub stats: Arc<StoreStats>,
    /// How often usage is written back.
    pub every: Duration,
}

/// A running store thread; stopped (its last usage written back) when dropped.
pub struct StoreThread {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// Resolves once `stopped` turns true (or its sender is gone).
pub async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

impl StoreThread {
    /// Starts the thread and waits for the first load: a file store is loaded before this
    /// returns, Redis when it can be reached. `beside(stopped)` runs on the same runtime once
    /// loaded, until `stopped` (a data plane's own periodic work).
    pub fn start<B, F>(work: StoreWork, beside: B) -> Result<StoreThread, StartError>
    where
        B: FnOnce(watch::Receiver<bool>) -> F + Send + 'static,
        F: Future<Output = ()>,
    {
        let (stop, stopped) = watch::channel(false);
        let (first, first_load) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("keygate-follower".into())
            .spawn(move || run(work, stopped, first, beside))
            .map_err(StartError::Thread)?;
        let mut t = StoreThread {
            stop,
            thread: Some(thread),
        };
        let loaded = first_load
            .recv()
            .map_err(|_| StartError::Thread(std::io::Error::other("the follower stopped")));
        match loaded.and_then(|r| r.map_err(StartError::from)) {
            Ok(()) => Ok(t),
            Err(e) => {
                t.stop();
                Err(e)
            }
        }
    }

    /// Stops the thread, once, after its last usage write-back.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<B, F>(
    work: StoreWork,
    stopped: watch::Receiver<bool>,
    first: std::sync::mpsc::Sender<Result<(), StoreError>>,
    beside: B,
) where
    B: FnOnce(watch::Receiver<bool>) -> F,
    F: Future<Output = ()>,
{
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
    let StoreWork {
        store,
        engine,
        replica,
        stats,
        every,
    } = work;
    rt.block_on(async move {
        let loaded = store.load_at_start(&replica, &stats).await;
        let failed = loaded.is_err();
        let _ = first.send(loaded);
        if failed {
            return;
        }
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
            engine.limiter.keep(until(stopped.clone())),
            beside(stopped),
        );
    });
}
