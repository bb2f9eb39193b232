//! The whole table: the compact snapshot's buckets (or, while there is no snapshot in step,
//! every key record) scanned with HSCAN in batches (never blocking Redis), decoded and added
//! to a table under construction on two threads of their own while the next batch is asked
//! for, with the revision and change-log position it is at. A batch that fails
//! because Redis is busy or the connection dropped is asked for again, from the same cursor,
//! after a jittered pause: the load resumes instead of starting over. The table being
//! replaced keeps serving until the new one is installed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use keygate_core::key::{Account, KeyRecord};
use keygate_core::policy::Plan;
use keygate_core::scheme::Scheme;
use keygate_core::snapshot;
use keygate_core::table::{KeyEntry, Maker, Table};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;

use super::{RedisStore, bad_json, err};
use crate::replica::Replica;
use crate::state::{Snapshot, State};
use crate::{StoreError, StoreStats};
use decode::{Decoded, EntryMaker, decode_batch};

mod decode;

/// Times one batch of a load is asked for again before the load gives up.
const RESUME_ATTEMPTS: u32 = 6;

/// `d` scaled by a random factor from 0.5 to 1.5, so that instances failed together do not
/// come back together.
pub(super) fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::hash::RandomState::new().build_hasher().finish();
    d.mul_f64(0.5 + (r % 1000) as f64 / 1000.0)
}

/// One HSCAN reply's field/value pairs, as raw bytes.
pub(super) type ScanBatch = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a full read of the table's records goes, record by record as batches arrive.
pub(super) trait Sink {
    fn reserve(&mut self, keys: usize);
    fn key(&mut self, rec: KeyRecord);
    /// After the last record.
    fn finish(&mut self) {}
    fn account(&mut self, a: Account);
    /// What makes a snapshot's records into table entries on the decoding thread, for a sink
    /// that takes entries.
    fn maker(&self) -> Option<EntryMaker> {
        None
    }
    /// Entries made by the sink's [`Sink::maker`], and how many records it skipped.
    fn entries(&mut self, _entries: Vec<KeyEntry>, _skipped: usize) {}
}

/// Records into plain vectors (scan order is random; sorting them would cost more than the
/// table build itself).
impl Sink for Snapshot {
    fn reserve(&mut self, keys: usize) {
        self.keys.reserve(keys + keys / 16);
    }
    fn key(&mut self, rec: KeyRecord) {
        self.keys.push(rec);
    }
    fn account(&mut self, a: Account) {
        self.accounts.push(a);
    }
}

/// Records straight into a table under construction.
pub(super) struct TableSink {
    table: Table,
    schemes: Arc<[Scheme]>,
    plans: BTreeMap<String, Plan>,
    /// The table being replaced, for the verifications it cached.
    prev: Arc<Table>,
}

impl Sink for TableSink {
    fn reserve(&mut self, keys: usize) {
        self.table.reserve(keys);
    }
    fn key(&mut self, rec: KeyRecord) {
        self.table.upsert_key(&self.schemes, &rec, Some(&self.prev));
    }
    fn finish(&mut self) {
        self.table.index_pending();
    }
    fn maker(&self) -> Option<EntryMaker> {
        Some(EntryMaker {
            maker: Maker::default(),
            schemes: Arc::clone(&self.schemes),
            prev: Arc::clone(&self.prev),
        })
    }
    fn entries(&mut self, entries: Vec<KeyEntry>, skipped: usize) {
        for e in entries {
            self.table.push_entry(e);
        }
        self.table.skipped += skipped;
    }
    fn account(&mut self, a: Account) {
        self.table.upsert_account(&self.plans, &a);
    }
}

impl RedisStore {
    /// After a failed batch: a jittered pause growing with `failures`, then a new connection
    /// (the old one kept if none can be made now).
    async fn pause_and_reconnect(
        &self,
        con: &mut MultiplexedConnection,
        e: &StoreError,
        cursor: u64,
        failures: u32,
    ) {
        tracing::warn!(error = %e, cursor, "key table load interrupted; resuming");
        tokio::time::sleep(jittered(Duration::from_millis(100) * (1 << failures))).await;
        if let Ok(c) = self.read_connection().await {
            *con = c;
        }
    }

    /// The id of the Redis process `con` reaches (`INFO server`'s `run_id`, new at every start).
    async fn run_id(&self, con: &mut MultiplexedConnection) -> Result<String, StoreError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(con)
            .await
            .map_err(err)?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .unwrap_or_default()
            .trim()
            .to_string())
    }

    /// Reads every key record and account into `sink` without blocking Redis (HSCAN), and
    /// returns it with the revision and the change-log position they are at, and whether the
    /// records came from the snapshot (`snapshot_ok` and one in step) or from the records.
    ///
    /// Batches are parsed and put into the sink on a thread of their own while this task
    /// asks Redis for the next one, so Redis producing a batch and keygate taking in the
    /// previous one run on different cores.
    pub(super) async fn scan<S: Sink + Send + 'static>(
        &self,
        con: &mut MultiplexedConnection,
        mut sink: S,
        snapshot_ok: bool,
    ) -> Result<(S, u64, String, bool), StoreError> {
        // `None`: this Redis user may not run INFO; a resumed scan then goes on unchecked.
        let server = self.run_id(con).await.ok();
        let (rev, snap_rev, last, count): (Option<u64>, Option<u64>, StreamRangeReply, usize) =
            redis::pipe()
                .atomic()
                .get(self.k("rev"))
                .get(self.k("snap_rev"))
                .cmd("XREVRANGE")
                .arg(self.k("changes"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .hlen(self.k("keys"))
                .query_async(con)
                .await
                .map_err(err)?;
        let last_id = last
            .ids
            .first()
            .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
        let revision = rev.unwrap_or(0);
        // The snapshot is read only when complete at the revision read with it; what changes
        // while it is scanned comes from the change log, as for the records.
        let from_snapshot = snapshot_ok && snap_rev == Some(revision);
        let (hash, count_hint) = if from_snapshot {
            (self.k("snap"), 512)
        } else {
            (self.k("keys"), 10_000)
        };
        let started = std::time::Instant::now();
        // Two batches in flight at each stage: memory stays bounded if a stage falls behind.
        // Decoding and building the table run on threads of their own, so Redis producing a
        // batch, keygate decoding the previous one and adding the one before to the table
        // overlap.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ScanBatch>(2);
        let (rtx, rrx) = std::sync::mpsc::sync_channel::<Decoded>(2);
        let mut maker = sink.maker();
        let decoder = tokio::task::spawn_blocking(move || {
            // A scan may return a field twice; a bucket holds distinct ids, and no id is in
            // two buckets, so skipping repeated buckets leaves every id once.
            let mut seen = vec![false; snapshot::BUCKETS as usize];
            while let Some(items) = rx.blocking_recv() {
                let recs = decode_batch(items, from_snapshot, &mut seen, maker.as_mut())?;
                if rtx.send(recs).is_err() {
                    break;
                }
            }
            Ok::<_, StoreError>(())
        });
        let taker = tokio::task::spawn_blocking(move || {
            sink.reserve(count);
            let mut keys = 0usize;
            for batch in rrx {
                let before = keys;
                match batch {
                    Decoded::Entries(entries, skipped) => {
                        keys += entries.len() + skipped;
                        sink.entries(entries, skipped);
                    }
                    Decoded::Records(recs) => {
                        keys += recs.len();
                        for rec in recs {
                            sink.key(rec);
                        }
                    }
                }
                if keys / 100_000 != before / 100_000 {
                    tracing::info!(keys, "loading the key table");
                }
            }
            sink.finish();
            (sink, keys)
        });
        let mut cursor: u64 = 0;
        let mut failures = 0;
        // After a reconnect: whether the connection still reaches the process the scan began
        // on must be known before the next batch is asked for.
        let mut reconnected = false;
        loop {
            if reconnected && let Some(s) = &server {
                // A cursor walks one process's hash table (its hash seed is random): on
                // another process the rest of the scan would skip and repeat fields.
                match self.run_id(con).await {
                    Ok(id) if id != *s => return Err(StoreError::ServerChanged),
                    Ok(_) => {}
                    Err(e) if failures < RESUME_ATTEMPTS => {
                        failures += 1;
                        self.pause_and_reconnect(con, &e, cursor, failures).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            reconnected = false;
            let batch: Result<(u64, ScanBatch), StoreError> = redis::cmd("HSCAN")
                .arg(&hash)
                .arg(cursor)
                .arg("COUNT")
                .arg(count_hint)
                .query_async(con)
                .await
                .map_err(err);
            let (next, items) = match batch {
                Ok(b) => b,
                // Redis busy (many instances loading at once) or the connection lost (which
                // can also surface as a reply cut short): go on from this cursor on a new
                // connection, keeping what was read, instead of starting over — a load that
                // starts over adds to the storm that failed it.
                Err(e @ (StoreError::Redis(_) | StoreError::RedisUnavailable(_)))
                    if failures < RESUME_ATTEMPTS =>
                {
                    failures += 1;
                    self.pause_and_reconnect(con, &e, cursor, failures).await;
                    reconnected = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            failures = 0;
            // A send fails only when the decoder stopped on a bad record: its error follows.
            if tx.send(items).await.is_err() || next == 0 {
                break;
            }
            cursor = next;
        }
        drop(tx);
        decoder.await.map_err(StoreError::Loader)??;
        let (mut sink, keys) = taker.await.map_err(StoreError::Loader)?;
        let accounts: HashMap<String, String> =
            con.hgetall(self.k("accounts")).await.map_err(err)?;
        for js in accounts.into_values() {
            let a: Account = serde_json::from_str(&js).map_err(|e| bad_json("redis account", e))?;
            sink.account(a);
        }
        tracing::info!(
            keys,
            revision,
            from = if from_snapshot { "snapshot" } else { "records" },
            ms = started.elapsed().as_millis() as u64,
            "key table loaded from redis"
        );
        Ok((sink, revision, last_id, from_snapshot))
    }

    /// A connection for loading and following: to the read URL, or the primary.
    pub(super) async fn read_connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        self.read_client()
            .await?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(err)
    }

    pub async fn load(&self) -> Result<State, StoreError> {
        let mut con = self.read_connection().await?;
        // Whole records: the snapshot holds only what the table needs.
        let (snapshot, revision, ..) = self.scan(&mut con, Snapshot::default(), false).await?;
        Ok(Snapshot {
            revision,
            ..snapshot
        }
        .into())
    }

    /// A table of the whole store and its revision, read from the snapshot (`None` when
    /// there is none in step) or from the records: what a full load builds, without
    /// installing it (to compare the two sources).
    pub async fn load_table(
        &self,
        schemes: Arc<[Scheme]>,
        plans: BTreeMap<String, Plan>,
        from_snapshot: bool,
    ) -> Result<Option<(Table, u64)>, StoreError> {
        let mut con = self.read_connection().await?;
        let sink = TableSink {
            table: Table::with_capacity(0),
            schemes,
            plans,
            prev: Arc::new(Table::not_loaded()),
        };
        let (sink, revision, _, used) = self.scan(&mut con, sink, from_snapshot).await?;
        Ok((used == from_snapshot).then_some((sink.table, revision)))
    }

    /// Loads the whole table into `replica`; returns its revision and change-log position.
    pub(super) async fn full_load(
        &self,
        con: &mut MultiplexedConnection,
        replica: &Replica,
        stats: &StoreStats,
    ) -> Result<(u64, String), StoreError> {
        let (revision, id, replaced, from_snapshot) = loop {
            let (policy, generation) = replica.policy();
            let (schemes, plans) = (policy.schemes.clone(), policy.plans.clone());
            // Built while the scan goes on: no million-record vector, and the build overlaps
            // Redis producing the next batch. Verifications cached by the table being
            // replaced carry over.
            let sink = TableSink {
                table: Table::with_capacity(0),
                schemes,
                plans,
                prev: Arc::clone(&replica.snapshot()),
            };
            let (TableSink { table, prev, .. }, revision, id, from_snapshot) =
                self.scan(con, sink, true).await?;
            if replica.install_built(revision, table, generation) {
                break (revision, id, prev, from_snapshot);
            }
            tracing::info!("config reloaded during the key table load: loading again");
        };
        stats.full_load();
        if !from_snapshot {
            // A store written by an older keygate, or whose snapshot fell out of step: one
            // instance (whichever takes the lease) builds it, in the background.
            let store = self.clone();
            tokio::spawn(async move {
                if let Err(e) = store.build_snapshot().await {
                    tracing::warn!(error = %e, "key table snapshot not built; loads read the records");
                }
            });
        }
        // Off the runtime: freeing a replaced table of a million entries takes a few hundred
        // milliseconds. The loader's buffers (hundreds of MB) are free by then, but glibc keeps
        // them resident unless asked; a full load is rare, so asking costs nothing that matters.
        let _ = tokio::task::spawn_blocking(move || {
            drop(replaced);
            release_free_memory();
        })
        .await;
        Ok((revision, id))
    }
}

/// Returns the heap's free pages to the OS (glibc only; elsewhere nothing to do).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that is already free; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
