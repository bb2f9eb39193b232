//! keygate's durable state and its replication into the in-memory key table.
//!
//! A store is named by [`StoreSettings`]; [`Store`] is the one interface the rest of keygate
//! uses, and each backend answers every query itself, so callers never branch on the backend.
//! The replica keeps the decision table current from the side, never on a request's road, and
//! [`usage`] writes counts back in batches. This crate knows the core's types and nothing of
//! the data planes above it: it takes a [`keygate_core::policy::Policy`], not a config, and
//! reports what it did through [`StoreStats`] for whoever exports metrics.
//!
//! # Layout
//! - [`state`]: the data model and the pure rules of every write, shared by the backends.
//! - [`file`]: the embedded backend, one JSON file on one machine.
//! - [`redis`]: the shared backend: records, a change log and an audit stream in Redis.
//! - [`replica`]: the table snapshot, swapped whole on change.
//! - [`usage`]: allowed requests counted between write-backs, and the write-back loop.
//! - [`stats`]: what the store did, for metrics.

pub mod file;
pub mod redis;
pub mod replica;
pub mod state;
pub mod stats;
pub mod usage;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use keygate_core::credits::Balance;
use keygate_core::key::{Account, KeyRecord};
use state::{AuditEvent, BudgetTake, Change, ChangeError, CreditLease, KeyDays, State, UsageBatch};

pub use stats::StoreStats;

/// Which backend holds the key table, as the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    File {
        path: PathBuf,
    },
    Redis {
        url: String,
        read_url: Option<String>,
        namespace: String,
        max_changes: u64,
        /// PEM file of the CA that signed the Redis servers' certificates (`rediss://`).
        tls_ca_file: Option<PathBuf>,
        /// Sentinel: master name and sentinel URLs; the primary is whatever they name.
        sentinel: Option<(String, Vec<String>)>,
    },
}

/// Why the store could not do what was asked. Messages never hold a Redis URL (it may carry a
/// password): redis-rs errors do not print it, and URL problems are named without it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store data in {path} is not valid keygate state: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Redis answered with an error.
    #[error("redis: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// Redis could not be reached (connection refused, dropped, timed out, read-only).
    #[error("redis unavailable: {0}")]
    RedisUnavailable(#[source] ::redis::RedisError),
    #[error("redis unavailable: no sentinel knows master `{0}`")]
    NoPrimary(String),
    #[error("invalid redis {0}")]
    InvalidUrl(&'static str),
    #[error("too much write contention; try again")]
    Contention,
    /// A load's scan was interrupted and its new connection reached another Redis process (a
    /// restart or a failover): its cursor means nothing there, so the load starts over.
    #[error("redis restarted or failed over during a load; loading again")]
    ServerChanged,
    #[error("the key table loader failed: {0}")]
    Loader(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Change(#[from] ChangeError),
}

impl StoreError {
    /// Whether trying again later may succeed (the store is unreachable right now).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::RedisUnavailable(_) | StoreError::NoPrimary(_) | StoreError::ServerChanged
        )
    }
}

/// The store named by the config.
#[derive(Debug, Clone)]
pub enum Store {
    File(file::FileStore),
    Redis(Box<redis::RedisStore>),
}

/// Calls the same method on whichever backend this is.
macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Store::File($b) => $e,
            Store::Redis($b) => $e,
        }
    };
}

impl Store {
    /// Opens the store; no I/O happens until it is used (but a CA file is read).
    pub fn open(settings: &StoreSettings) -> Result<Store, StoreError> {
        match settings {
            StoreSettings::File { path } => Ok(Store::File(file::FileStore::new(path.clone()))),
            StoreSettings::Redis {
                url,
                read_url,
                namespace,
                max_changes,
                tls_ca_file,
                sentinel,
            } => {
                let ca_pem = match tls_ca_file {
                    Some(p) => Some(std::fs::read(p).map_err(|source| StoreError::Io {
                        path: p.clone(),
                        source,
                    })?),
                    None => None,
                };
                Ok(Store::Redis(Box::new(redis::RedisStore::new(
                    redis::RedisOptions {
                        url,
                        read_url: read_url.as_deref(),
                        namespace,
                        max_changes: *max_changes,
                        ca_pem,
                        sentinel: sentinel.clone(),
                    },
                )?)))
            }
        }
    }

    /// Loads the table before serving where the store is local (a file that cannot be read is
    /// a config error, refused at start); a remote store is loaded by [`Store::follow`] when
    /// it can be reached, and until then nothing is allowed.
    pub async fn load_at_start(
        &self,
        replica: &replica::Replica,
        stats: &StoreStats,
    ) -> Result<(), StoreError> {
        each!(self, b => b.load_at_start(replica, stats).await)
    }

    /// Keeps `replica` current until `shutdown` resolves.
    pub async fn follow(
        &self,
        replica: Arc<replica::Replica>,
        stats: Arc<StoreStats>,
        shutdown: impl Future<Output = ()>,
    ) {
        each!(self, b => b.follow(replica, stats, shutdown).await)
    }

    /// The table's state: revision, keys and accounts (usage and audit may be left out).
    pub async fn load(&self) -> Result<State, StoreError> {
        each!(self, b => b.load().await)
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        each!(self, b => b.get_key(id).await)
    }

    pub async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        each!(self, b => b.get_account(id).await)
    }

    /// The records of these accounts, `None` where there is none (one read).
    pub async fn get_accounts(&self, ids: &[String]) -> Result<Vec<Option<Account>>, StoreError> {
        each!(self, b => b.get_accounts(ids).await)
    }

    /// Keys of one account, or all keys.
    pub async fn keys_of(&self, account: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        each!(self, b => b.keys_of(account).await)
    }

    /// The id of the SHA-256 key with each digest, `None` where there is none (one round trip
    /// on Redis, whatever the table's size).
    pub async fn ids_of_digests(
        &self,
        digests: &[[u8; 32]],
    ) -> Result<Vec<Option<String>>, StoreError> {
        each!(self, b => b.ids_of_digests(digests).await)
    }

    /// Allowed requests per UTC day number, and refused ones per day and reason, for each
    /// key id.
    pub async fn usage(&self, ids: &[String]) -> Result<BTreeMap<String, KeyDays>, StoreError> {
        each!(self, b => b.usage(ids).await)
    }

    pub async fn audit(&self, account: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        each!(self, b => b.audit(account).await)
    }

    /// Applies one change and records its audit event, atomically; returns the new revision.
    pub async fn apply(&self, change: Change, event: AuditEvent) -> Result<u64, StoreError> {
        each!(self, b => b.apply(change, event).await)
    }

    /// Makes a write this process just made (at `revision`) visible in `replica` before the
    /// caller answers, so that a key works here as soon as its creation response is sent.
    pub async fn settle(&self, replica: &replica::Replica, revision: u64) {
        each!(self, b => b.settle(replica, revision).await)
    }

    /// Takes up to `want` credits out of the key's balance (never more than it holds): how
    /// many were granted, and the balance after.
    pub async fn take_credits(
        &self,
        lease: &CreditLease,
        want: u64,
    ) -> Result<(u64, Balance), StoreError> {
        each!(self, b => b.take_credits(lease, want).await)
    }

    /// The stored credit balances of these keys (`None`: never spent from).
    pub async fn credit_balances(&self, ids: &[&str]) -> Result<Vec<Option<Balance>>, StoreError> {
        each!(self, b => b.credit_balances(ids).await)
    }

    /// Puts unspent credits of a lease back, if the balance is still the one they came from.
    pub async fn give_back_credits(&self, lease: &CreditLease, n: u64) -> Result<(), StoreError> {
        each!(self, b => b.give_back_credits(lease, n).await)
    }

    /// Records a bulk write (an import) puts in one atomic change: on Redis small enough that
    /// one Lua call does not hold the server long, on the file store large, since each write
    /// rewrites the whole file.
    pub fn bulk_chunk(&self) -> usize {
        match self {
            Store::Redis(_) => 2_000,
            Store::File(_) => 100_000,
        }
    }

    /// Whether rate limits are counted fleet-wide in this store (Redis), rather than per
    /// process (the file store).
    pub fn shares_budgets(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Leases from fleet-wide rate limit counters, in one call: granted and left, per take.
    /// Only Redis keeps them; elsewhere nothing is granted.
    pub async fn take_budgets(&self, takes: &[BudgetTake]) -> Result<Vec<(u64, u64)>, StoreError> {
        match self {
            Store::Redis(r) => r.take_budgets(takes).await,
            Store::File(_) => Ok(vec![(0, 0); takes.len()]),
        }
    }

    /// Records that this instance is alive; returns how many are (1 on the file store).
    pub async fn heartbeat(&self, instance: &str, now: i64) -> Result<u64, StoreError> {
        match self {
            Store::Redis(r) => r.heartbeat(instance, now).await,
            Store::File(_) => Ok(1),
        }
    }

    /// Folds the usage batches instances wrote into the per-key counts, if this instance is
    /// the one that folds (Redis); nothing to do elsewhere. `wrote`: this instance just
    /// wrote a batch (only such an instance asks to become the folder).
    pub async fn fold_usage(&self, wrote: bool) -> Result<(), StoreError> {
        match self {
            Store::Redis(r) => r.fold_usage(wrote).await,
            Store::File(_) => Ok(()),
        }
    }

    /// Adds a batch of usage counts and last-use times.
    pub async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        each!(self, b => b.record_usage(batch).await)
    }
}
