//! Durable state and its replication into the in-memory table.
//!
//! [`state`] is the data model and the pure rules of every write; [`file`] is the embedded
//! backend (one JSON file); [`Store`] is the one interface the rest of keygate uses; [`replica`]
//! keeps the decision table current from the side, never on a request's road.

pub mod file;
pub mod replica;
pub mod state;

use std::path::PathBuf;

use crate::config::StoreSettings;
use state::{AuditEvent, Change, ChangeError, State, UsageBatch};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store file {path} is not valid keygate state: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("the {0} store backend is not available in this build")]
    Unsupported(&'static str),
    #[error(transparent)]
    Change(#[from] ChangeError),
}

/// The store named by the config.
#[derive(Debug, Clone)]
pub enum Store {
    File(file::FileStore),
}

impl Store {
    pub fn open(settings: &StoreSettings) -> Result<Store, StoreError> {
        match settings {
            StoreSettings::File { path } => Ok(Store::File(file::FileStore::new(path.clone()))),
            StoreSettings::Redis { .. } => Err(StoreError::Unsupported("redis")),
        }
    }

    /// The whole state.
    pub async fn load(&self) -> Result<State, StoreError> {
        match self {
            Store::File(f) => {
                let f = f.clone();
                blocking(move || f.read()).await
            }
        }
    }

    /// Applies one change and records its audit event, atomically.
    pub async fn apply(&self, change: Change, event: AuditEvent) -> Result<(), StoreError> {
        match self {
            Store::File(f) => {
                let f = f.clone();
                blocking(move || f.update(|s| s.apply(change, event).map_err(StoreError::from)))
                    .await
            }
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
