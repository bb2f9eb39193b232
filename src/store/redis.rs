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
//! - `{ns}:last_used` — hash: key id → Unix seconds; `{ns}:usage:<id>` — hash: day → count.
//!
//! Writes are optimistic: read what the rules need, apply the same pure rules as every
//! backend ([`State::apply`]), then one Lua script checks that `rev` has not moved and writes
//! the records, the change entry and the audit event atomically, or the write is retried.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamRangeReply, StreamReadReply};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::replica::Replica;
use super::state::{AuditEvent, Change, ChangeError, Snapshot, State, UsageBatch};
use crate::config::Plan;
use crate::core::key::{Account, KeyHash, KeyRecord, to_hex};
use crate::core::scheme::Scheme;
use crate::core::table::Table;
use crate::metrics::Metrics;

const CAS_WRITE: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur ~= tonumber(ARGV[1]) then return -1 end
local rev = redis.call('INCR', KEYS[1])
local i = 6
local nk = tonumber(ARGV[i]); i = i + 1
for _ = 1, nk do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('SADD', ARGV[4] .. ARGV[i + 2], ARGV[i])
  if ARGV[i + 3] ~= '' then redis.call('HSET', KEYS[6], ARGV[i + 3], ARGV[i]) end
  i = i + 4
end
local na = tonumber(ARGV[i]); i = i + 1
for _ = 1, na do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[2], '*', 'rev', rev, 'data', ARGV[5])
redis.call('XADD', KEYS[5], '*', 'data', ARGV[3])
return rev
"#;

/// One HSCAN reply's field/value pairs, as raw bytes.
type ScanBatch = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a full read of the table's records goes, record by record as batches arrive.
trait Sink {
    fn reserve(&mut self, keys: usize);
    fn key(&mut self, rec: KeyRecord);
    fn account(&mut self, a: Account);
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
struct TableSink {
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
    fn account(&mut self, a: Account) {
        self.table.upsert_account(&self.plans, &a);
    }
}

/// Records changed by one write: the body of a change-log entry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChangeData {
    #[serde(default)]
    keys: Vec<KeyRecord>,
    #[serde(default)]
    accounts: Vec<Account>,
}

/// How to reach the primary and the nodes: the URL's address, or whatever address Sentinel
/// names for the master, with the URL's credentials, database and TLS settings.
#[derive(Clone)]
pub struct Target {
    info: redis::ConnectionInfo,
    ca_pem: Option<Vec<u8>>,
    sentinel: Option<(String, Vec<redis::Client>)>,
}

impl Target {
    fn client(&self, info: redis::ConnectionInfo) -> Result<redis::Client, StoreError> {
        let r = match &self.ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => redis::Client::open(info),
        };
        r.map_err(|_| {
            StoreError::Redis("cannot build a redis client from the configured URL".into())
        })
    }

    /// The primary's client, asking Sentinel (each sentinel in turn) where it is.
    async fn primary(&self) -> Result<redis::Client, StoreError> {
        let Some((master, sentinels)) = &self.sentinel else {
            return self.client(self.info.clone());
        };
        for s in sentinels {
            let Ok(mut con) = s.get_multiplexed_async_connection().await else {
                continue;
            };
            let addr: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async(&mut con)
                .await;
            if let Ok(Some((host, port))) = addr {
                let addr = match self.info.addr() {
                    redis::ConnectionAddr::TcpTls {
                        insecure,
                        tls_params,
                        ..
                    } => redis::ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure: *insecure,
                        tls_params: tls_params.clone(),
                    },
                    _ => redis::ConnectionAddr::Tcp(host, port),
                };
                return self.client(self.info.clone().set_addr(addr));
            }
        }
        Err(StoreError::RedisUnavailable(format!(
            "no sentinel knows master `{master}`"
        )))
    }
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
        StoreError::RedisUnavailable(e.to_string())
    } else {
        StoreError::Redis(e.to_string())
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
        let info = |u: &str, what: &str| {
            redis::IntoConnectionInfo::into_connection_info(u)
                .map_err(|_| StoreError::Redis(format!("invalid redis {what}")))
        };
        let sentinel = match &o.sentinel {
            None => None,
            Some((master, urls)) => Some((
                master.clone(),
                urls.iter()
                    .map(|u| {
                        redis::Client::open(u.as_str())
                            .map_err(|_| StoreError::Redis("invalid sentinel URL".into()))
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
            script: Arc::new(redis::Script::new(CAS_WRITE)),
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
                Err(StoreError::RedisUnavailable(_)) => {
                    self.reset().await;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                r => return r,
            }
        }
        f().await
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

    /// Reads every key record and account into `sink` without blocking Redis (HSCAN), and
    /// returns it with the revision and the change-log position they are at.
    ///
    /// Batches are parsed and put into the sink on a thread of their own while this task
    /// asks Redis for the next one, so Redis producing a batch and keygate taking in the
    /// previous one run on different cores.
    async fn scan<S: Sink + Send + 'static>(
        &self,
        con: &mut MultiplexedConnection,
        mut sink: S,
    ) -> Result<(S, u64, String), StoreError> {
        let (rev, last, count): (Option<u64>, StreamRangeReply, usize) = redis::pipe()
            .atomic()
            .get(self.k("rev"))
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
        let started = std::time::Instant::now();
        // Two batches in flight at most: memory stays bounded if parsing falls behind.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ScanBatch>(2);
        let taker = tokio::task::spawn_blocking(move || {
            sink.reserve(count);
            let mut keys = 0usize;
            while let Some(items) = rx.blocking_recv() {
                for (_, js) in items {
                    sink.key(
                        serde_json::from_slice(&js).map_err(|e| bad_json("redis key record", e))?,
                    );
                    keys += 1;
                    if keys.is_multiple_of(100_000) {
                        tracing::info!(keys, "loading the key table");
                    }
                }
            }
            Ok::<_, StoreError>((sink, keys))
        });
        let mut cursor: u64 = 0;
        loop {
            let (next, items): (u64, ScanBatch) = redis::cmd("HSCAN")
                .arg(self.k("keys"))
                .arg(cursor)
                .arg("COUNT")
                .arg(10_000)
                .query_async(con)
                .await
                .map_err(err)?;
            // A send fails only when the taker stopped on a bad record: its error follows.
            if tx.send(items).await.is_err() || next == 0 {
                break;
            }
            cursor = next;
        }
        drop(tx);
        let (mut sink, keys) = taker
            .await
            .map_err(|e| StoreError::Redis(format!("key table load: {e}")))??;
        let accounts: HashMap<String, String> =
            con.hgetall(self.k("accounts")).await.map_err(err)?;
        for js in accounts.into_values() {
            let a: Account = serde_json::from_str(&js).map_err(|e| bad_json("redis account", e))?;
            sink.account(a);
        }
        tracing::info!(
            keys,
            revision,
            ms = started.elapsed().as_millis() as u64,
            "key table loaded from redis"
        );
        Ok((sink, revision, last_id))
    }

    pub async fn load(&self) -> Result<State, StoreError> {
        let mut con = self
            .read_client()
            .await?
            .get_multiplexed_async_connection()
            .await
            .map_err(err)?;
        let (snapshot, revision, _) = self.scan(&mut con, Snapshot::default()).await?;
        Ok(Snapshot {
            revision,
            ..snapshot
        }
        .into())
    }

    async fn get_key_once(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let mut con = self.conn().await?;
        let (js, last): (Option<String>, Option<i64>) = redis::pipe()
            .hget(self.k("keys"), id)
            .hget(self.k("last_used"), id)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        js.map(|js| {
            let mut k = Self::parse_key(&js)?;
            k.last_used_at = last;
            Ok(k)
        })
        .transpose()
    }

    async fn get_account_once(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let mut con = self.conn().await?;
        let js: Option<String> = con.hget(self.k("accounts"), id).await.map_err(err)?;
        js.map(|js| serde_json::from_str(&js).map_err(|e| bad_json("redis account", e)))
            .transpose()
    }

    /// Keys of one account, or every key.
    async fn keys_of_once(&self, account: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let mut con = self.conn().await?;
        let ids: Vec<String> = match account {
            Some(a) => con
                .smembers(self.k(&format!("acct:{a}")))
                .await
                .map_err(err)?,
            None => con.hkeys(self.k("keys")).await.map_err(err)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (recs, last): (Vec<Option<String>>, Vec<Option<i64>>) = redis::pipe()
            .cmd("HMGET")
            .arg(self.k("keys"))
            .arg(&ids)
            .cmd("HMGET")
            .arg(self.k("last_used"))
            .arg(&ids)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(ids.len());
        for (js, last) in recs.into_iter().zip(last) {
            if let Some(js) = js {
                let mut k = Self::parse_key(&js)?;
                k.last_used_at = last;
                out.push(k);
            }
        }
        Ok(out)
    }

    async fn digest_exists_once(&self, hex: &str) -> Result<bool, StoreError> {
        let mut con = self.conn().await?;
        con.hexists(self.k("digests"), hex).await.map_err(err)
    }

    async fn usage_once(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<i64, u64>>, StoreError> {
        let mut con = self.conn().await?;
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.k(&format!("usage:{id}")));
        }
        let days: Vec<HashMap<i64, u64>> = pipe.query_async(&mut con).await.map_err(err)?;
        Ok(ids
            .iter()
            .cloned()
            .zip(days.into_iter().map(|d| d.into_iter().collect()))
            .collect())
    }

    async fn audit_once(&self, account: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        let mut con = self.conn().await?;
        let r: StreamRangeReply = con.xrange_all(self.k("audit")).await.map_err(err)?;
        let mut out = Vec::new();
        for e in r.ids {
            let js: String = e.get("data").unwrap_or_default();
            let ev: AuditEvent =
                serde_json::from_str(&js).map_err(|e| bad_json("redis audit event", e))?;
            if account.is_none_or(|a| ev.account == a) {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Applies one change with the shared rules, atomically, retrying if another writer
    /// got in first.
    async fn apply_once(&self, change: Change, event: AuditEvent) -> Result<u64, StoreError> {
        let mut con = self.conn().await?;
        for _ in 0..50 {
            let rev: Option<u64> = con.get(self.k("rev")).await.map_err(err)?;
            let mut st = State {
                revision: rev.unwrap_or(0),
                ..State::default()
            };
            let need_account = |acct: &str| acct.to_string();
            let account = match &change {
                Change::CreateKey { record, .. } => Some(need_account(&record.account)),
                Change::RevokeKey { id, .. } | Change::RotateKey { old_id: id, .. } => {
                    let k = self
                        .get_key_once(id)
                        .await?
                        .ok_or(ChangeError::KeyNotFound)?;
                    let a = k.account.clone();
                    st.keys.insert(k.id.clone(), k);
                    Some(a)
                }
                Change::PutAccount { account } => {
                    if let Some(a) = self.get_account_once(&account.id).await? {
                        st.accounts.insert(a.id.clone(), a);
                    }
                    None
                }
            };
            if let Some(a) = account {
                for k in self.keys_of_once(Some(&a)).await? {
                    st.keys.insert(k.id.clone(), k);
                }
            }
            let before = st.clone();
            st.apply(change.clone(), event.clone())?;
            if st.audit.len() == before.audit.len() {
                // The rules found nothing to change (a second revocation): nothing to write.
                return Ok(rev.unwrap_or(0));
            }
            let mut data = ChangeData::default();
            for (id, k) in &st.keys {
                if before.keys.get(id) != Some(k) {
                    let mut k = k.clone();
                    k.last_used_at = None;
                    data.keys.push(k);
                }
            }
            for (id, a) in &st.accounts {
                if before.accounts.get(id) != Some(a) {
                    data.accounts.push(a.clone());
                }
            }
            let mut inv = self.script.key(self.k("rev"));
            inv.key(self.k("keys"))
                .key(self.k("accounts"))
                .key(self.k("changes"))
                .key(self.k("audit"))
                .key(self.k("digests"))
                .arg(rev.unwrap_or(0))
                .arg(self.max_len)
                .arg(serde_json::to_string(&event).unwrap_or_default())
                .arg(self.k("acct:"))
                .arg(serde_json::to_string(&data).unwrap_or_default())
                .arg(data.keys.len());
            for k in &data.keys {
                let digest = match &k.hash {
                    KeyHash::Sha256(d) => to_hex(d),
                    KeyHash::Argon2id(_) => String::new(),
                };
                inv.arg(&k.id)
                    .arg(serde_json::to_string(k).unwrap_or_default())
                    .arg(&k.account)
                    .arg(digest);
            }
            inv.arg(data.accounts.len());
            for a in &data.accounts {
                inv.arg(&a.id)
                    .arg(serde_json::to_string(a).unwrap_or_default());
            }
            let r: i64 = inv.invoke_async(&mut con).await.map_err(err)?;
            if r >= 0 {
                return Ok(r as u64);
            }
        }
        Err(StoreError::Redis(
            "too much write contention; try again".into(),
        ))
    }

    async fn record_usage_once(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let mut con = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, u) in &batch.keys {
            pipe.hset(self.k("last_used"), id.as_ref(), u.last_used)
                .ignore();
            for (day, n) in &u.per_day {
                pipe.hincr(self.k(&format!("usage:{id}")), day, *n).ignore();
            }
        }
        pipe.query_async::<()>(&mut con).await.map_err(err)
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.retry(|| self.get_key_once(id)).await
    }

    pub async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.retry(|| self.get_account_once(id)).await
    }

    pub async fn keys_of(&self, account: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        self.retry(|| self.keys_of_once(account)).await
    }

    pub async fn digest_exists(&self, hex: &str) -> Result<bool, StoreError> {
        self.retry(|| self.digest_exists_once(hex)).await
    }

    pub async fn usage(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<i64, u64>>, StoreError> {
        self.retry(|| self.usage_once(ids)).await
    }

    pub async fn audit(&self, account: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        self.retry(|| self.audit_once(account)).await
    }

    /// Applies one change. A retry after a lost reply may find the change already made:
    /// a create then fails as a duplicate, a revocation is simply repeated.
    pub async fn apply(&self, change: Change, event: AuditEvent) -> Result<u64, StoreError> {
        self.retry(|| self.apply_once(change.clone(), event.clone()))
            .await
    }

    pub async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.record_usage_once(batch).await
    }

    /// Loads the whole table into `replica`; returns its revision and change-log position.
    async fn full_load(
        &self,
        con: &mut MultiplexedConnection,
        replica: &Replica,
        metrics: &Metrics,
    ) -> Result<(u64, String), StoreError> {
        let (revision, id, replaced) = loop {
            let ((schemes, plans), generation) = replica.policy();
            // Built while the scan goes on: no million-record vector, and the build overlaps
            // Redis producing the next batch. Verifications cached by the table being
            // replaced carry over.
            let sink = TableSink {
                table: Table::with_capacity(0),
                schemes,
                plans,
                prev: Arc::clone(&replica.snapshot()),
            };
            let (TableSink { table, prev, .. }, revision, id) = self.scan(con, sink).await?;
            if replica.install_built(revision, table, generation) {
                break (revision, id, prev);
            }
            tracing::info!("config reloaded during the key table load: loading again");
        };
        metrics.full_reloads.inc();
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

    /// Follows the change log into `replica` until `shutdown`: loads the table, then applies
    /// every change in order. A gap in revisions (the log was trimmed past our position while
    /// we were away) or a store that went back in time triggers a full reload and an atomic
    /// swap. While Redis is unreachable the table stays as it is and reconnects back off
    /// (100 ms doubling to 5 s).
    pub async fn follow(
        &self,
        replica: Arc<Replica>,
        metrics: Arc<Metrics>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // Revision and change-log position the table holds; `None` before the first load.
        let mut at: Option<(u64, String)> = None;
        let mut backoff = Duration::from_millis(100);
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        loop {
            let session = async {
                let mut con = self
                    .read_client()
                    .await?
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(err)?;
                let rev: Option<u64> = con.get(self.k("rev")).await.map_err(err)?;
                if at.as_ref().is_none_or(|(r, _)| rev.unwrap_or(0) < *r) {
                    at = Some(self.full_load(&mut con, &replica, &metrics).await?);
                }
                metrics.store_connected.set(1);
                backoff = Duration::from_millis(100);
                while let Some((cur, last_id)) = at.as_mut() {
                    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(1000)
                        .arg("BLOCK")
                        .arg(1000)
                        .arg("STREAMS")
                        .arg(self.k("changes"))
                        .arg(&*last_id)
                        .query_async(&mut con)
                        .await
                        .map_err(err)?;
                    let mut data = ChangeData::default();
                    let mut gap = false;
                    for e in reply
                        .iter()
                        .flat_map(|r| r.keys.iter())
                        .flat_map(|k| k.ids.iter())
                    {
                        let rev: u64 = e.get("rev").unwrap_or(0);
                        if rev <= *cur {
                            *last_id = e.id.clone();
                            continue;
                        }
                        if rev != *cur + 1 {
                            gap = true;
                            break;
                        }
                        let js: String = e.get("data").unwrap_or_default();
                        let d: ChangeData = serde_json::from_str(&js)
                            .map_err(|e| bad_json("redis change entry", e))?;
                        data.keys.extend(d.keys);
                        data.accounts.extend(d.accounts);
                        *cur = rev;
                        *last_id = e.id.clone();
                    }
                    if data.keys.is_empty() && data.accounts.is_empty() {
                        replica.confirm();
                    } else {
                        // Entries apply in order; later versions of a record win.
                        replica.apply_changes(*cur, &data.keys, &data.accounts);
                    }
                    if gap {
                        tracing::warn!(
                            "change log trimmed past this sidecar's position; reloading the whole table"
                        );
                        at = Some(self.full_load(&mut con, &replica, &metrics).await?);
                    }
                }
                Ok::<(), StoreError>(())
            };
            tokio::select! {
                _ = &mut shutdown => return,
                r = session => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "redis unavailable; deciding from the current table");
                    }
                }
            }
            metrics.store_connected.set(0);
            metrics.reconnects.inc();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
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
