//! The compact snapshot beside the key records (`{ns}:snap`, see [`keygate_core::snapshot`]):
//! kept in step by every write while `{ns}:snap_rev` equals `{ns}:rev`, and built once from
//! the records when it does not (a store written by an older keygate): one instance takes a
//! lease, scans the records into buckets, catches up from the change log, and installs the
//! buckets with the revision they are complete at, atomically.

use std::collections::BTreeMap;
use std::time::Duration;

use keygate_core::key::KeyRecord;
use keygate_core::snapshot::{self, BUCKETS};
use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use redis::streams::StreamRangeReply;

use super::{ChangeData, RedisStore, bad_json, err};
use crate::StoreError;

/// Installs the new buckets if no write landed since the revision they were caught up to.
const INSTALL: &str = r#"
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[4], ARGV[1])
return 1
"#;

fn corrupt(e: snapshot::SnapshotError) -> StoreError {
    StoreError::Corrupt {
        path: "redis key table snapshot".into(),
        message: e.to_string(),
    }
}

/// How long a build may hold the lease; another instance takes over after that.
const LEASE: Duration = Duration::from_secs(300);
/// Catch-up rounds before a build gives up (writes kept landing between them).
const ROUNDS: usize = 20;

impl RedisStore {
    /// The buckets `keys` fall into, with `keys` merged into what they hold now.
    pub(super) async fn merged_buckets(
        &self,
        con: &mut impl ConnectionLike,
        keys: &[KeyRecord],
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let mut by_bucket: BTreeMap<u32, Vec<&KeyRecord>> = BTreeMap::new();
        for k in keys {
            by_bucket
                .entry(snapshot::bucket_of(&k.id))
                .or_default()
                .push(k);
        }
        if by_bucket.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = redis::cmd("HMGET");
        q.arg(self.k("snap"));
        for b in by_bucket.keys() {
            q.arg(*b);
        }
        let now: Vec<Option<Vec<u8>>> = q.query_async(con).await.map_err(err)?;
        by_bucket
            .into_iter()
            .zip(now)
            .map(|((b, recs), cur)| {
                snapshot::merge(cur.as_deref().unwrap_or_default(), recs)
                    .map(|v| (b, v))
                    .map_err(corrupt)
            })
            .collect()
    }

    /// Builds the snapshot from the records if no other instance is building it. Returns
    /// whether this instance built and installed it.
    pub async fn build_snapshot(&self) -> Result<bool, StoreError> {
        let mut con = self.conn().await?;
        let lease: Option<String> = redis::cmd("SET")
            .arg(self.k("snap_builder"))
            .arg(&*self.instance)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        if lease.is_none() {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let built = self.build_under_lease(&mut con).await;
        let _: Result<(), _> = con.del(self.k("snap_builder")).await;
        let rev = built?;
        tracing::info!(
            revision = rev,
            ms = started.elapsed().as_millis() as u64,
            "key table snapshot built from the records"
        );
        Ok(true)
    }

    async fn build_under_lease(
        &self,
        con: &mut redis::aio::ConnectionManager,
    ) -> Result<u64, StoreError> {
        let (rev, last): (Option<u64>, StreamRangeReply) = redis::pipe()
            .atomic()
            .get(self.k("rev"))
            .cmd("XREVRANGE")
            .arg(self.k("changes"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(con)
            .await
            .map_err(err)?;
        let mut at = rev.unwrap_or(0);
        let mut last_id = last
            .ids
            .first()
            .map_or_else(|| "0-0".into(), |e| e.id.clone());
        let mut buckets: Vec<Vec<u8>> = vec![Vec::new(); BUCKETS as usize];
        let mut cursor: u64 = 0;
        loop {
            let (next, items): (u64, super::load::ScanBatch) = redis::cmd("HSCAN")
                .arg(self.k("keys"))
                .arg(cursor)
                .arg("COUNT")
                .arg(10_000)
                .query_async(con)
                .await
                .map_err(err)?;
            for (_, js) in items {
                let rec: KeyRecord =
                    serde_json::from_slice(&js).map_err(|e| bad_json("redis key record", e))?;
                snapshot::encode(&rec, &mut buckets[snapshot::bucket_of(&rec.id) as usize]);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // A scan may return a record twice: merging dedupes and sorts each bucket.
        let mut dirty: Vec<u32> = Vec::new();
        for (b, v) in buckets.iter_mut().enumerate() {
            if !v.is_empty() {
                let recs: Vec<KeyRecord> = snapshot::decode(v)
                    .collect::<Result<_, _>>()
                    .map_err(corrupt)?;
                *v = snapshot::merge(&[], &recs).map_err(corrupt)?;
                dirty.push(b as u32);
            }
        }
        let _: () = con.del(self.k("snap_new")).await.map_err(err)?;
        for _ in 0..ROUNDS {
            // Writes that landed since: from the change log, newest version kept.
            let (changed, rev, id) = self.changes_after(con, &last_id, at).await?;
            for k in &changed {
                let b = snapshot::bucket_of(&k.id);
                let v = &mut buckets[b as usize];
                *v = snapshot::merge(v, [k]).map_err(corrupt)?;
                dirty.push(b);
            }
            (at, last_id) = (rev, id);
            dirty.sort_unstable();
            dirty.dedup();
            for part in dirty.chunks(256) {
                let mut q = redis::cmd("HSET");
                q.arg(self.k("snap_new"));
                for &b in part {
                    q.arg(b).arg(&buckets[b as usize]);
                }
                let _: () = q.query_async(con).await.map_err(err)?;
            }
            dirty.clear();
            let done: i64 = redis::Script::new(INSTALL)
                .key(self.k("rev"))
                .key(self.k("snap"))
                .key(self.k("snap_new"))
                .key(self.k("snap_rev"))
                .arg(at)
                .invoke_async(con)
                .await
                .map_err(err)?;
            if done == 1 {
                return Ok(at);
            }
        }
        Err(StoreError::Contention)
    }

    /// Key records of the change-log entries after `id` (whose revision is `rev`), and the
    /// revision and id of the last one. A gap (the log trimmed past `id`) is an error: the
    /// build starts over next time.
    async fn changes_after(
        &self,
        con: &mut redis::aio::ConnectionManager,
        id: &str,
        rev: u64,
    ) -> Result<(Vec<KeyRecord>, u64, String), StoreError> {
        let (mut rev, mut id) = (rev, id.to_string());
        let mut keys = Vec::new();
        loop {
            let r: StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.k("changes"))
                .arg(format!("({id}"))
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query_async(con)
                .await
                .map_err(err)?;
            if r.ids.is_empty() {
                return Ok((keys, rev, id));
            }
            for e in &r.ids {
                let r: u64 = e.get("rev").unwrap_or(0);
                if r > rev + 1 {
                    return Err(StoreError::Corrupt {
                        path: "redis change log".into(),
                        message: "trimmed during a snapshot build".into(),
                    });
                }
                let js: String = e.get("data").unwrap_or_default();
                let d: ChangeData =
                    serde_json::from_str(&js).map_err(|e| bad_json("redis change entry", e))?;
                keys.extend(d.keys);
                rev = rev.max(r);
                id = e.id.clone();
            }
        }
    }
}
