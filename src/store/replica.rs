//! The in-memory replica: the current table snapshot, swapped whole on change, and the task
//! that follows the store.
//!
//! Readers take the snapshot through `arc_swap` (no lock, no await while holding it); a
//! rebuild happens off the request path and is published with one atomic pointer swap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::Store;
use super::state::{Snapshot, State};
use crate::config::{Plan, Settings};
use crate::core::key::{Account, KeyRecord};
use crate::core::scheme::Scheme;
use crate::core::table::Table;

/// Schemes and plans, as the table is built with them.
type Policy = (Arc<[Scheme]>, BTreeMap<String, Plan>);

pub struct Replica {
    table: ArcSwap<Table>,
    /// Schemes and plans the table is built with; replaced together with the table on a
    /// config reload.
    policy: std::sync::RwLock<Policy>,
    revision: AtomicU64,
    started: Instant,
    /// Milliseconds since `started` of the last install, or `u64::MAX` before the first.
    last_update_ms: AtomicU64,
    /// Serializes rebuilds so an older state never replaces a newer one.
    install_lock: std::sync::Mutex<()>,
    /// The installed revision, for writers waiting to read their own write.
    rev_tx: tokio::sync::watch::Sender<u64>,
}

impl Replica {
    pub fn new(settings: &Settings) -> Replica {
        Replica {
            table: ArcSwap::from_pointee(Table::not_loaded()),
            policy: std::sync::RwLock::new((settings.schemes.clone(), settings.plans.clone())),
            revision: AtomicU64::new(0),
            started: Instant::now(),
            last_update_ms: AtomicU64::new(u64::MAX),
            install_lock: std::sync::Mutex::new(()),
            rev_tx: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    pub fn is_loaded(&self) -> bool {
        self.table.load().is_loaded()
    }

    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Time since the table was last confirmed current; `None` before the first load.
    pub fn age(&self) -> Option<Duration> {
        match self.last_update_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Marks the table as confirmed current with the store (nothing changed).
    pub fn confirm(&self) {
        self.touch();
    }

    /// Waits until the table holds `revision` or newer; false at the timeout.
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.rev_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_update_ms.store(ms, Ordering::Release);
    }

    /// Publishes `state` unless the table already holds this revision or a newer one.
    pub fn install(&self, state: &State) {
        self.install_inner(state, false)
    }

    /// Publishes `state` whatever its revision (a full reload after the store lost or
    /// trimmed history).
    pub fn install_new(&self, state: &State) {
        self.install_inner(state, true)
    }

    /// Publishes a bulk-loaded snapshot whatever its revision (see `install_new`).
    pub fn install_snapshot(&self, s: &Snapshot) {
        self.install_records(s.revision, &s.keys, &s.accounts, true)
    }

    fn install_inner(&self, state: &State, force: bool) {
        self.install_records(
            state.revision,
            state.keys.values(),
            state.accounts.values(),
            force,
        )
    }

    fn install_records<'r>(
        &self,
        revision: u64,
        keys: impl IntoIterator<Item = &'r KeyRecord>,
        accounts: impl IntoIterator<Item = &'r Account>,
        force: bool,
    ) {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.table.load();
        if !force && current.is_loaded() && revision <= self.revision() {
            self.touch();
            return;
        }
        let policy = self.policy.read().unwrap_or_else(|p| p.into_inner());
        let table = Table::build(&policy.0, &policy.1, keys, accounts, Some(&current));
        if table.skipped > 0 {
            tracing::warn!(
                skipped = table.skipped,
                "keys whose scheme is not configured are ignored"
            );
        }
        tracing::debug!(revision, keys = table.len(), "key table updated");
        self.table.store(Arc::new(table));
        self.revision.store(revision, Ordering::Release);
        self.rev_tx.send_replace(revision);
        self.touch();
    }

    /// Publishes the current table with `keys` and `accounts` changed, at `revision`.
    pub fn apply_changes(&self, revision: u64, keys: &[KeyRecord], accounts: &[Account]) {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        let policy = self.policy.read().unwrap_or_else(|p| p.into_inner());
        let table = self
            .table
            .load()
            .with_changes(&policy.0, &policy.1, keys, accounts);
        tracing::debug!(revision, keys = table.len(), "key table updated");
        self.table.store(Arc::new(table));
        self.revision.store(revision, Ordering::Release);
        self.rev_tx.send_replace(revision);
        self.touch();
    }

    /// Rebuilds the table under new schemes and plans (a config reload) from `state`, unless
    /// the table already holds a newer revision than `state` (then the caller loads again).
    pub fn install_policy(&self, settings: &Settings, state: &State) -> bool {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.table.load().is_loaded() && state.revision < self.revision() {
            return false;
        }
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) =
            (settings.schemes.clone(), settings.plans.clone());
        let table = Table::build(
            &settings.schemes,
            &settings.plans,
            state.keys.values(),
            state.accounts.values(),
            None,
        );
        self.table.store(Arc::new(table));
        self.revision.store(state.revision, Ordering::Release);
        self.rev_tx.send_replace(state.revision);
        self.touch();
        true
    }

    /// Reads the store and installs what it holds.
    pub async fn reload(&self, store: &Store) -> Result<(), super::StoreError> {
        let state = store.load().await?;
        self.install(&state);
        Ok(())
    }
}

/// How often the file backend's file is checked for changes.
pub const FILE_POLL: Duration = Duration::from_millis(25);

/// Follows the store until `shutdown` resolves: a change made by another process (the CLI)
/// reaches the table within [`FILE_POLL`] plus one read.
pub async fn follow(
    replica: Arc<Replica>,
    store: Store,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    match &store {
        Store::Redis(r) => r.follow(replica, metrics, shutdown).await,
        Store::File(file) => {
            let mut seen = None;
            let mut tick = tokio::time::interval(FILE_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tick.tick() => {}
                }
                let stamp = file.stamp();
                if stamp == seen && replica.is_loaded() {
                    replica.touch();
                    continue;
                }
                match replica.reload(&store).await {
                    Ok(()) => seen = stamp,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the store; keeping the current table")
                    }
                }
            }
        }
    }
}
