//! Durable state and its replication into the in-memory table.
//!
//! [`state`] is the data model and the pure rules of every write; [`file`] is the embedded
//! backend (one JSON file); [`redis`] the shared backend; [`Store`] is the one interface the
//! rest of keygate uses; [`replica`] keeps the decision table current from the side, never on
//! a request's road.

pub mod file;
pub mod redis;
pub mod replica;
pub mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::StoreSettings;
use crate::core::key::{Account, KeyHash, KeyRecord, to_hex};
use state::{AuditEvent, Change, ChangeError, State, UsageBatch};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store data in {path} is not valid keygate state: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// A Redis error; the message never includes the URL (it may hold a password).
    #[error("redis: {0}")]
    Redis(String),
    /// Redis could not be reached (connection refused, dropped, timed out).
    #[error("redis unavailable: {0}")]
    RedisUnavailable(String),
    #[error(transparent)]
    Change(#[from] ChangeError),
}

/// The store named by the config.
#[derive(Debug, Clone)]
pub enum Store {
    File(file::FileStore),
    Redis(Box<redis::RedisStore>),
}

impl Store {
    /// Opens the store; no I/O happens until it is used.
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

    async fn file<T: Send + 'static>(
        f: &file::FileStore,
        op: impl FnOnce(State) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let f = f.clone();
        blocking(move || f.read().map(op)).await
    }

    /// The table's state: revision, keys and accounts (usage and audit may be left out).
    pub async fn load(&self) -> Result<State, StoreError> {
        match self {
            Store::File(f) => Self::file(f, |s| s).await,
            Store::Redis(r) => r.load().await,
        }
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        match self {
            Store::File(f) => {
                let id = id.to_string();
                Self::file(f, move |s| s.keys.get(&id).cloned()).await
            }
            Store::Redis(r) => r.get_key(id).await,
        }
    }

    pub async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        match self {
            Store::File(f) => {
                let id = id.to_string();
                Self::file(f, move |s| s.accounts.get(&id).cloned()).await
            }
            Store::Redis(r) => r.get_account(id).await,
        }
    }

    /// Keys of one account, or all keys.
    pub async fn keys_of(&self, account: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        match self {
            Store::File(f) => {
                let a = account.map(String::from);
                Self::file(f, move |s| {
                    s.keys
                        .into_values()
                        .filter(|k| a.as_ref().is_none_or(|a| &k.account == a))
                        .collect()
                })
                .await
            }
            Store::Redis(r) => r.keys_of(account).await,
        }
    }

    /// Whether a SHA-256 key with this digest exists.
    pub async fn digest_exists(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        match self {
            Store::File(f) => {
                let h = KeyHash::Sha256(*digest);
                Self::file(f, move |s| s.keys.values().any(|k| k.hash == h)).await
            }
            Store::Redis(r) => r.digest_exists(&to_hex(digest)).await,
        }
    }

    /// Allowed requests per UTC day number, for each key id.
    pub async fn usage(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<i64, u64>>, StoreError> {
        match self {
            Store::File(f) => {
                let ids = ids.to_vec();
                Self::file(f, move |s| {
                    ids.into_iter()
                        .map(|id| {
                            let d = s.usage.get(&id).cloned().unwrap_or_default();
                            (id, d)
                        })
                        .collect()
                })
                .await
            }
            Store::Redis(r) => r.usage(ids).await,
        }
    }

    pub async fn audit(&self, account: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        match self {
            Store::File(f) => {
                let a = account.map(String::from);
                Self::file(f, move |s| {
                    s.audit
                        .into_iter()
                        .filter(|e| a.as_ref().is_none_or(|a| &e.account == a))
                        .collect()
                })
                .await
            }
            Store::Redis(r) => r.audit(account).await,
        }
    }

    /// Applies one change and records its audit event, atomically; returns the new revision.
    pub async fn apply(&self, change: Change, event: AuditEvent) -> Result<u64, StoreError> {
        match self {
            Store::File(f) => {
                let f = f.clone();
                blocking(move || {
                    f.update(|s| {
                        s.apply(change, event)?;
                        Ok(s.revision)
                    })
                })
                .await
            }
            Store::Redis(r) => r.apply(change, event).await,
        }
    }

    /// Adds a batch of usage counts and last-use times.
    pub async fn record_usage(&self, batch: UsageBatch) -> Result<(), StoreError> {
        match self {
            Store::File(f) => {
                let f = f.clone();
                blocking(move || {
                    f.update(|s| {
                        s.record_usage(&batch);
                        Ok(())
                    })
                })
                .await
            }
            Store::Redis(r) => r.record_usage(&batch).await,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
