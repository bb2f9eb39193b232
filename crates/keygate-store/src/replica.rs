//! The in-memory replica: the current table snapshot, swapped whole on change, and the task
//! that follows the store.
//!
//! Readers take the snapshot through `arc_swap` (no lock, no await while holding it); a
//! rebuild happens off the request path and is published with one atomic pointer swap. Each
//! backend's follower ([`crate::Store::follow`]) feeds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use keygate_core::key::{Account, KeyRecord};
use keygate_core::policy::Policy;
use keygate_core::table::Table;

use super::Store;
use super::state::State;

pub struct Replica {
    table: ArcSwap<Table>,
    /// The policy whose schemes and plans the table is built with; replaced together with the
    /// table on a config reload.
    policy: std::sync::RwLock<Arc<Policy>>,
    /// Bumped with every policy change, so a table built from an older one is not published.
    policy_generation: AtomicU64,
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
    pub fn new(policy: Arc<Policy>) -> Replica {
        Replica {
            table: ArcSwap::from_pointee(Table::not_loaded()),
            policy: std::sync::RwLock::new(policy),
            policy_generation: AtomicU64::new(0),
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

    pub(crate) fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_update_ms.store(ms, Ordering::Release);
    }

    /// Publishes `state` unless the table already holds this revision or a newer one.
    pub fn install(&self, state: &State) {
        self.install_from(state, false);
    }

    /// Publishes `state` even if the table holds a newer revision: the store itself went back
    /// (a file restored from a backup, or made anew), and its older state is the truth now.
    pub fn install_older(&self, state: &State) {
        self.install_from(state, true);
    }

    fn install_from(&self, state: &State, older: bool) {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.table.load();
        let same = state.revision == self.revision();
        if current.is_loaded() && (same || (state.revision < self.revision() && !older)) {
            self.touch();
            return;
        }
        let policy = self.policy.read().unwrap_or_else(|p| p.into_inner());
        let table = Table::build(
            &policy.schemes,
            &policy.plans,
            state.keys.values(),
            state.accounts.values(),
            Some(&current),
        );
        warn_skipped(&table);
        self.publish(state.revision, table);
    }

    /// The policy to build a table with, and its generation for [`Replica::install_built`].
    pub fn policy(&self) -> (Arc<Policy>, u64) {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (policy, self.policy_generation.load(Ordering::Acquire))
    }

    /// Publishes a table the caller built (a bulk load) at `revision`, whatever the revision
    /// held (a full reload after the store lost or trimmed history), unless the schemes or plans changed since it took them with
    /// [`Replica::policy`]: then nothing changes and the caller builds again.
    pub fn install_built(&self, revision: u64, table: Table, generation: u64) -> bool {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.policy_generation.load(Ordering::Acquire) != generation {
            return false;
        }
        warn_skipped(&table);
        self.publish(revision, table);
        true
    }

    /// Swaps in `table` at `revision`; the caller holds `install_lock`.
    fn publish(&self, revision: u64, table: Table) {
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
            .with_changes(&policy.schemes, &policy.plans, keys, accounts);
        self.publish(revision, table);
    }

    /// Rebuilds the table under new schemes and plans (a config reload) from `state`, unless
    /// the table already holds a newer revision than `state` (then the caller loads again).
    pub fn install_policy(&self, policy: &Arc<Policy>, state: &State) -> bool {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.table.load().is_loaded() && state.revision < self.revision() {
            return false;
        }
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy.clone();
        self.policy_generation.fetch_add(1, Ordering::AcqRel);
        let table = Table::build(
            &policy.schemes,
            &policy.plans,
            state.keys.values(),
            state.accounts.values(),
            None,
        );
        self.publish(state.revision, table);
        true
    }

    /// Reads the store and installs what it holds.
    pub async fn reload(&self, store: &Store) -> Result<(), super::StoreError> {
        let state = store.load().await?;
        self.install(&state);
        Ok(())
    }
}

fn warn_skipped(table: &Table) {
    if table.skipped > 0 {
        tracing::warn!(
            skipped = table.skipped,
            "keys whose scheme is not configured are ignored"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Arc<Policy> {
        Arc::new(Policy {
            schemes: Vec::new().into(),
            routes: Default::default(),
            plans: Default::default(),
            identity: Default::default(),
        })
    }

    #[test]
    fn a_table_built_under_replaced_schemes_is_not_published() {
        let replica = Replica::new(policy());
        let (_, generation) = replica.policy();
        // A config reload lands while a bulk load builds with the old schemes.
        assert!(replica.install_policy(&policy(), &State::default()));
        assert!(!replica.install_built(7, Table::with_capacity(0), generation));
        assert_eq!(replica.revision(), 0);

        let (_, generation) = replica.policy();
        assert!(replica.install_built(7, Table::with_capacity(0), generation));
        assert_eq!(replica.revision(), 7);
        assert!(replica.is_loaded());
    }
}
