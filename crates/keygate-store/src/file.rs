//! The embedded backend: the whole state in one JSON file.
//!
//! Writers (the server, and CLI processes running beside it) serialize on an exclusive lock
//! of a sibling `.lock` file, read the current file, apply their change and replace the file
//! atomically (temp file, fsync, rename, fsync of the directory). Readers never lock: a rename
//! is atomic, so they see the old file or the new one, never half of one. A file that does not
//! parse is reported and never overwritten.
//!
//! Every query reads the whole file (it is the whole state) on the blocking pool. The follower
//! polls the file's stamp every [`FILE_POLL`], so a change made by another process (the CLI)
//! reaches a running table within that plus one read.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keygate_core::credits::{self, Balance};
use keygate_core::key::{Account, KeyRecord};

use super::replica::Replica;
use super::state::{AuditEvent, Change, CreditLease, KeyDays, State, UsageBatch};
use super::{StoreError, StoreStats};

/// How often the file is checked for changes.
pub const FILE_POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

/// Identity of the file's current version, for cheap change detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStore {
    pub fn new(path: PathBuf) -> FileStore {
        FileStore { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The current version's stamp; `None` if the file does not exist yet.
    pub fn stamp(&self) -> Option<Stamp> {
        let m = fs::metadata(&self.path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            inode,
        })
    }

    /// Reads the state; a missing file is an empty state.
    pub fn read(&self) -> Result<State, StoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Locks, reads, applies `f`, and writes the result atomically if `f` succeeds.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.with_extension("lock"))
            .map_err(|e| self.io(e))?;
        lock.lock().map_err(|e| self.io(e))?;
        let mut state = self.read()?;
        let out = f(&mut state)?;
        let bytes = serde_json::to_vec(&state).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(e));
        }
        drop(lock);
        Ok(out)
    }
}

/// The queries every backend answers ([`super::Store`] forwards to them).
impl FileStore {
    /// Runs `op` on the state read from the file, on the blocking pool.
    async fn read_with<T: Send + 'static>(
        &self,
        op: impl FnOnce(State) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let f = self.clone();
        blocking(move || f.read().map(op)).await
    }

    /// Runs `op` on the state under the write lock, and writes the file if it succeeds.
    async fn update_with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut State) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let f = self.clone();
        blocking(move || f.update(op)).await
    }

    pub async fn load_at_start(
        &self,
        replica: &Replica,
        stats: &StoreStats,
    ) -> Result<(), StoreError> {
        replica.install(&self.load().await?);
        stats.set_connected(true);
        Ok(())
    }

    pub async fn load(&self) -> Result<State, StoreError> {
        self.read_with(|s| s).await
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_string();
        self.read_with(move |s| s.keys.get(&id).cloned()).await
    }

    pub async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let id = id.to_string();
        self.read_with(move |s| s.accounts.get(&id).cloned()).await
    }

    pub async fn get_accounts(&self, ids: &[String]) -> Result<Vec<Option<Account>>, StoreError> {
        let ids = ids.to_vec();
        self.read_with(move |s| ids.iter().map(|id| s.accounts.get(id).cloned()).collect())
            .await
    }

    pub async fn keys_of(&self, account: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let a = account.map(String::from);
        self.read_with(move |s| {
            s.keys
                .into_values()
                .filter(|k| a.as_ref().is_none_or(|a| &k.account == a))
                .collect()
        })
        .await
    }

    pub async fn ids_of_digests(
        &self,
        digests: &[[u8; 32]],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let wanted: Vec<[u8; 32]> = digests.to_vec();
        self.read_with(move |s| {
            let by: std::collections::HashMap<&[u8; 32], &str> = s
                .keys
                .values()
                .filter_map(|k| Some((k.hash.sha256()?, k.id.as_str())))
                .collect();
            wanted
                .iter()
                .map(|d| by.get(d).map(|id| id.to_string()))
                .collect()
        })
        .await
    }

    pub async fn usage(&self, ids: &[String]) -> Result<BTreeMap<String, KeyDays>, StoreError> {
        let ids = ids.to_vec();
        self.read_with(move |s| {
            ids.into_iter()
                .map(|id| {
                    let d = s.usage_of(&id);
                    (id, d)
                })
                .collect()
        })
        .await
    }

    pub async fn audit(&self, account: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        let a = account.map(String::from);
        self.read_with(move |s| {
            s.audit
                .into_iter()
                .filter(|e| a.as_ref().is_none_or(|a| &e.account == a))
                .collect()
        })
        .await
    }

    pub async fn apply(&self, change: Change, event: AuditEvent) -> Result<u64, StoreError> {
        self.update_with(move |s| {
            s.apply(change, event)?;
            Ok(s.revision)
        })
        .await
    }

    pub async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let batch = batch.clone();
        self.update_with(move |s| {
            s.record_usage(&batch);
            Ok(())
        })
        .await
    }

    pub async fn take_credits(
        &self,
        lease: &CreditLease,
        want: u64,
    ) -> Result<(u64, Balance), StoreError> {
        let lease = lease.clone();
        let now = lease.now;
        self.update_with(move |s| {
            let stored = s.credits.get(&*lease.id).copied();
            let mut b = credits::current(&lease.credits, lease.version, stored, now);
            let granted = credits::take(&mut b, want);
            s.credits.insert(lease.id.to_string(), b);
            Ok((granted, b))
        })
        .await
    }

    pub async fn credit_balances(&self, ids: &[&str]) -> Result<Vec<Option<Balance>>, StoreError> {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        self.read_with(move |s| ids.iter().map(|id| s.credits.get(id).copied()).collect())
            .await
    }

    pub async fn give_back_credits(&self, lease: &CreditLease, n: u64) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.update_with(move |s| {
            if let Some(b) = s.credits.get_mut(&*lease.id) {
                credits::give_back(b, lease.version, lease.period, n);
            }
            Ok(())
        })
        .await
    }

    /// Reads the file again into `replica`: the write is there once it returns.
    pub async fn settle(&self, replica: &Replica, _revision: u64) {
        match self.load().await {
            Ok(state) => replica.install(&state),
            Err(e) => {
                tracing::error!(error = %e, "change written but the table could not be reloaded")
            }
        }
    }

    /// Follows the file until `shutdown`: a new stamp means another process wrote it.
    pub async fn follow(
        &self,
        replica: Arc<Replica>,
        _stats: Arc<StoreStats>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut seen = None;
        let mut tick = tokio::time::interval(FILE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let stamp = self.stamp();
            if stamp == seen && replica.is_loaded() {
                replica.confirm();
                continue;
            }
            match self.load().await {
                // Older than the table, and still the file as it is (not overtaken while it was
                // read by a write this process has installed already).
                Ok(state)
                    if replica.is_loaded()
                        && state.revision < replica.revision()
                        && self.stamp() == stamp =>
                {
                    // Only a file that went back has an older revision than the table it fed
                    // (restored from a backup, or deleted and made anew): its state is the
                    // truth now, or no later write would be seen until it caught up.
                    tracing::warn!(
                        revision = state.revision,
                        held = replica.revision(),
                        "the store file went back to an older revision; installing it"
                    );
                    replica.install_older(&state);
                    seen = stamp;
                }
                Ok(state) => {
                    replica.install(&state);
                    seen = stamp;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the store; keeping the current table")
                }
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
