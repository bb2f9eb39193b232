//! The Redis backend: the shared key table of many sidecars.
//!
//! Data model (all names under the namespace `ns`, in one hash tag `{ns}` so a cluster keeps
//! them in one slot); see `docs/redis.md`:
//! - `{ns}:rev` — revision, incremented by every management write.
//! - `{ns}:keys` — hash: key id → key record JSON (hashes only; never `lastUsedAt`).
//! - `{ns}:accounts` — hash: account id → account JSON.
//! - `{ns}:acct:<account>` — set of the account's key ids (for plan limits and listings).
//! - `{ns}:digests` — hash: SHA-256 hex → key id (sha256 keys; duplicate imports are refused).
//! - `{ns}:changes` — stream: one entry per write, `rev` and `data` (every changed record).
//! - `{ns}:audit` — stream: one entry per management event; never trimmed.
//! - `{ns}:last_used` — hash: key id → Unix seconds; `{ns}:usage:<id>` — hash: day → count;
//!   `{ns}:usage_in` — stream of usage batches not yet folded; `{ns}:usage_folder` — the
//!   folding instance's lease.
//! - `{ns}:snap` — hash: bucket → compact records of its keys; `{ns}:snap_rev` — the revision
//!   it is complete at (see [`snapshot`]).
//! - `{ns}:credits` — hash: key id → `version:period:remaining`, the live credit balance.
//! - `{ns}:rl:<counter>` — requests leased from a fleet-wide rate limit window (expires with it);
//!   `{ns}:instances` — sorted set: instance → Unix seconds of its last heartbeat.
//!
//! Writes are optimistic: read what the rules need, apply the same pure rules as every
//! backend ([`State::apply`]), then one Lua script checks that `rev` has not moved and writes
//! the records, the change entry and the audit event atomically, or the write is retried.
//!
//! # Layout
//! - this file: the store's handle, connections, retries and error mapping, and the queries
//!   every backend answers;
//! - [`connect`]: finding the primary (the URL, or Sentinel) and building TLS clients;
//! - [`read`]: the narrow reads behind management calls;
//! - [`write`]: the compare-and-set write script and usage write-back;
//! - [`credits`]: credit leases taken and given back atomically;
//! - [`budgets`]: rate limit leases and instance heartbeats;
//! - [`usage`]: usage write-back, one entry per instance per interval, folded by one;
//! - [`load`]: the whole table, scanned in batches into a table under construction;
//! - [`snapshot`]: the compact snapshot beside the records, kept in step and built when missing;
//! - [`follow`]: following the change log into the replica.

mod budgets;
mod connect;
mod credits;
mod follow;
mod load;
mod read;
mod snapshot;
mod usage;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keygate_core::credits::Balance;
use keygate_core::key::{Account, KeyRecord, to_hex};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::replica::Replica;
use super::state::{AuditEvent, Change, ChangeError, CreditLease, KeyDays, UsageBatch};
use super::{StoreError, StoreStats};
use connect::Target;

/// A name for this process unlikely to be any other's: host pid, start time.
fn instance_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{t:x}", std::process::id())
}

/// Whether `url` is a Redis URL the client accepts (nothing is connected).
pub fn valid_url(url: &str) -> bool {
    ::redis::Client::open(url).is_ok()
}

/// Records changed by one write: the body of a change-log entry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChangeData {
    #[serde(default)]
    keys: Vec<KeyRecord>,
    #[serde(default)]
    accounts: Vec<Account>,
}

/// Connection settings of the Redis backend, from the config.
pub struct RedisOptions<'a> {
    pub url: &'a str,
    pub read_url: Option<&'a str>,
    pub namespace: &'a str,
    pub max_changes: u64,
    pub ca_pem: Option<Vec<u8>>,
    pub sentinel: Option<(String, Vec<String>)>,
}

#[derive(Clone)]
pub struct RedisStore {
    target: Target,
    read_target: Option<Target>,
    ns: String,
    max_len: u64,
    conn: Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
    script: Arc<redis::Script>,
    /// Take and give back.
    credit_scripts: Arc<(redis::Script, redis::Script)>,
    budget_script: Arc<redis::Script>,
    usage_fold: Arc<redis::Script>,
    /// This process, as the folder's lease names it.
    instance: Arc<str>,
    /// When an instance that does not fold asks for the lease again (Unix seconds).
    fold_next_ask: Arc<std::sync::atomic::AtomicI64>,
    /// Whether this instance holds the folder's lease (and folds each interval).
    folding: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show the namespace only.
        f.debug_struct("RedisStore")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

fn err(e: redis::RedisError) -> StoreError {
    // After a failover the old primary answers writes with READONLY: look for the new one.
    let readonly = e.code() == Some("READONLY");
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || readonly
    {
        StoreError::RedisUnavailable(e)
    } else {
        StoreError::Redis(e)
    }
}

fn bad_json(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        path: what.into(),
        message: e.to_string(),
    }
}

impl RedisStore {
    pub fn new(o: RedisOptions<'_>) -> Result<RedisStore, StoreError> {
        // rediss:// needs a process-wide rustls provider; keygate uses ring. Installing twice is
        // harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let info = |u: &str, what: &'static str| {
            redis::IntoConnectionInfo::into_connection_info(u)
                .map_err(|_| StoreError::InvalidUrl(what))
        };
        let sentinel = match &o.sentinel {
            None => None,
            Some((master, urls)) => Some((
                master.clone(),
                urls.iter()
                    .map(|u| {
                        redis::Client::open(u.as_str())
                            .map_err(|_| StoreError::InvalidUrl("sentinel URL"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )),
        };
        let target = Target {
            info: info(o.url, "URL")?,
            ca_pem: o.ca_pem.clone(),
            sentinel,
        };
        let read_target = match o.read_url {
            Some(u) => Some(Target {
                info: info(u, "read URL")?,
                ca_pem: o.ca_pem,
                sentinel: None,
            }),
            None => None,
        };
        Ok(RedisStore {
            target,
            read_target,
            ns: o.namespace.to_string(),
            max_len: o.max_changes,
            conn: Arc::new(tokio::sync::Mutex::new(None)),
            script: Arc::new(redis::Script::new(write::CAS_WRITE)),
            budget_script: Arc::new(redis::Script::new(budgets::TAKE)),
            usage_fold: Arc::new(redis::Script::new(usage::FOLD)),
            instance: instance_id().into(),
            fold_next_ask: Arc::default(),
            folding: Arc::default(),
            credit_scripts: Arc::new((
                redis::Script::new(credits::TAKE),
                redis::Script::new(credits::GIVE_BACK),
            )),
        })
    }

    /// The client the follower reads from: the read URL, or the primary.
    async fn read_client(&self) -> Result<redis::Client, StoreError> {
        match &self.read_target {
            Some(t) => t.primary().await,
            None => self.target.primary().await,
        }
    }

    fn k(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.ns)
    }

    fn manager_config() -> redis::aio::ConnectionManagerConfig {
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1))
    }

    /// The write connection (to the primary); reconnects by itself after a failure.
    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = self.target.primary().await?;
        let c = client
            .get_connection_manager_with_config(Self::manager_config())
            .await
            .map_err(err)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Retries an operation that failed because Redis was unreachable: the connection manager
    /// reconnects in the background after a failure (and with Sentinel the primary is looked
    /// up again), so a later attempt usually succeeds.
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(50);
        for _ in 0..5 {
            match f().await {
                Err(e) if e.is_unavailable() => {
                    self.reset().await;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                r => return r,
            }
        }
        f().await
    }

    async fn revision_once(&self) -> Result<u64, StoreError> {
        let mut con = self.conn().await?;
        let rev: Option<u64> = redis::cmd("GET")
            .arg(self.k("rev"))
            .query_async(&mut con)
            .await
            .map_err(err)?;
        Ok(rev.unwrap_or(0))
    }

    /// Forgets the write connection so the next call finds the primary again (Sentinel).
    async fn reset(&self) {
        if self.target.sentinel.is_some() {
            *self.conn.lock().await = None;
        }
    }

    fn parse_key(js: &str) -> Result<KeyRecord, StoreError> {
        serde_json::from_str(js).map_err(|e| bad_json("redis key record", e))
    }

    /// Waits (at most 2 s) for the follower to apply `revision`: it does within milliseconds.
    pub async fn settle(&self, replica: &Replica, revision: u64) {
        if !replica.wait_for(revision, Duration::from_secs(2)).await {
            tracing::warn!(revision, "change written but not yet in the table");
        }
    }

    pub async fn load_at_start(&self, _: &Replica, _: &StoreStats) -> Result<(), StoreError> {
        // Redis may be down at start: the follower loads the table when it can.
        Ok(())
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.retry(|| self.get_key_once(id)).await
    }

    pub async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.retry(|| self.get_account_once(id)).await
    }

    pub async fn get_accounts(&self, ids: &[String]) -> Result<Vec<Option<Account>>, StoreError> {
        self.retry(|| self.get_accounts_once(ids)).await
    }

    pub async fn keys_of(&self, account: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        self.retry(|| self.keys_of_once(account)).await
    }

    pub async fn ids_of_digests(
        &self,
        digests: &[[u8; 32]],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let hexes: Vec<String> = digests.iter().map(|d| to_hex(d)).collect();
        self.retry(|| self.ids_of_digests_once(&hexes)).await
    }

    pub async fn usage(&self, ids: &[String]) -> Result<BTreeMap<String, KeyDays>, StoreError> {
        self.retry(|| self.usage_once(ids)).await
    }

    pub async fn audit(&self, account: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        self.retry(|| self.audit_once(account)).await
    }

    /// Applies one change. A retry after a lost reply may find the change already made: a
    /// revocation is simply repeated, and a key it created is found as written (same id and
    /// hash: ids are random, so no other write made it), which is the write's success, not a
    /// duplicate (its secret was shown to nobody yet).
    pub async fn apply(&self, change: Change, event: AuditEvent) -> Result<u64, StoreError> {
        let r = self
            .retry(|| self.apply_once(change.clone(), event.clone()))
            .await;
        let created = match &change {
            Change::CreateKey { record, .. } | Change::RotateKey { record, .. } => record,
            _ => return r,
        };
        match r {
            Err(StoreError::Change(ChangeError::DuplicateKey)) => {
                let stored = self.retry(|| self.get_key_once(&created.id)).await?;
                match stored {
                    Some(k) if k.hash == created.hash && k.created_at == created.created_at => {
                        self.retry(|| self.revision_once()).await
                    }
                    _ => Err(StoreError::Change(ChangeError::DuplicateKey)),
                }
            }
            r => r,
        }
    }

    pub async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.record_usage_once(batch).await
    }

    pub async fn credit_balances(&self, ids: &[&str]) -> Result<Vec<Option<Balance>>, StoreError> {
        self.retry(|| self.credit_balances_once(ids)).await
    }

    /// Not retried: the caller is a request waiting for its credits.
    pub async fn take_credits(
        &self,
        lease: &CreditLease,
        want: u64,
    ) -> Result<(u64, Balance), StoreError> {
        self.take_credits_once(lease, want).await
    }

    /// Not retried: a retry after a lost reply would give the credits back twice. Credits
    /// lost to an error are never spent; credits given twice would be.
    pub async fn give_back_credits(&self, lease: &CreditLease, n: u64) -> Result<(), StoreError> {
        self.give_back_credits_once(lease, n).await
    }
}
