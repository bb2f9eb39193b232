//! Usage write-back that grows with instances, not with instances × active keys: each instance
//! appends one entry per interval to `{ns}:usage_in` (every key it counted, in one field), and
//! one elected instance (the holder of `{ns}:usage_folder`, a lease renewed each interval)
//! folds the entries into the per-key hashes: one Lua call per chunk that checks the lease,
//! adds the counts, raises last-use times and deletes the entries it folded, atomically, so a
//! count is folded exactly once whoever folds and whenever one dies. Reads of usage see the
//! folded hashes and the entries not yet folded in one transaction, so they are exact too.
//!
//! A key's hash `{ns}:usage:<id>` holds allowed requests under the day number (`20432`) and
//! refusals under the day and reason (`20432/scope`).

use std::collections::{BTreeMap, HashMap};

use redis::streams::StreamRangeReply;

use keygate_core::decide::Reason;

use super::{RedisStore, err};
use crate::StoreError;
use crate::state::{KeyDays, KeyUsage, UsageBatch};

/// Entries folded per call.
const FOLD_CHUNK: usize = 100;
/// Chunks folded per interval at most: a backlog is worked off over several intervals.
const FOLD_ROUNDS: usize = 50;
/// How long the folder's lease lasts without renewal, in milliseconds.
const FOLDER_LEASE_MS: u64 = 10_000;
/// How often an instance that does not fold asks whether the lease is free, in seconds: the
/// others' idle cost on Redis stays a command every few seconds.
const FOLDER_ASK_EVERY: i64 = 5;

/// KEYS: the folder lease, the stream, the last-use hash. ARGV: the instance, the usage key
/// prefix, the number of entry ids, the ids, then (key id, day, count) triples until the
/// last-use pairs, which follow a `|` marker as (key id, time).
pub(super) const FOLD: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[3])
local i = 4
local ids = {}
for _ = 1, n do ids[#ids + 1] = ARGV[i]; i = i + 1 end
while ARGV[i] ~= '|' do
  redis.call('HINCRBY', ARGV[2] .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
i = i + 1
while i <= #ARGV do
  local cur = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
  i = i + 2
end
if n > 0 then redis.call('XDEL', KEYS[2], unpack(ids)) end
return n
"#;

/// One batch as a stream field: a line per key, `id last_used day:count,day/reason:count`.
fn encode(batch: &UsageBatch) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for (id, u) in &batch.keys {
        let _ = write!(s, "{id} {} ", u.last_used);
        let allowed = u.per_day.iter().map(|(day, n)| format!("{day}:{n}"));
        let denied = u
            .denied
            .iter()
            .map(|((day, r), n)| format!("{day}/{}:{n}", r.as_str()));
        s.push_str(&allowed.chain(denied).collect::<Vec<_>>().join(","));
        s.push('\n');
    }
    s
}

/// A usage hash field: a day number, or a day and the reason of refusals.
fn field(f: &str) -> Option<(i64, Option<Reason>)> {
    match f.split_once('/') {
        None => Some((f.parse().ok()?, None)),
        Some((day, r)) => Some((day.parse().ok()?, Some(Reason::parse(r)?))),
    }
}

/// A batch back from its field; lines that do not parse are skipped.
fn decode(s: &str, into: &mut HashMap<String, KeyUsage>) {
    for line in s.lines() {
        let mut parts = line.split(' ');
        let (Some(id), Some(last), Some(days)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let u = into.entry(id.to_string()).or_default();
        u.last_used = u.last_used.max(last.parse().unwrap_or(0));
        for d in days.split(',').filter(|d| !d.is_empty()) {
            let Some((f, n)) = d.split_once(':') else {
                continue;
            };
            match (field(f), n.parse::<u64>()) {
                (Some((day, None)), Ok(n)) => *u.per_day.entry(day).or_default() += n,
                (Some((day, Some(r))), Ok(n)) => *u.denied.entry((day, r)).or_default() += n,
                _ => {}
            }
        }
    }
}

fn entries(r: &StreamRangeReply) -> Vec<(String, String)> {
    r.ids
        .iter()
        .map(|e| (e.id.clone(), e.get::<String>("data").unwrap_or_default()))
        .collect()
}

impl RedisStore {
    /// One entry for the whole batch.
    pub(super) async fn record_usage_once(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let mut con = self.conn().await?;
        redis::cmd("XADD")
            .arg(self.k("usage_in"))
            .arg("*")
            .arg("data")
            .arg(encode(batch))
            .query_async::<()>(&mut con)
            .await
            .map_err(err)
    }

    /// Folds pending entries if this instance holds (or can take) the folder's lease. Only
    /// an instance that just `wrote` usage asks for the lease, and the folder lets it expire
    /// once a round of its own finds nothing to fold: an idle fleet sends no fold traffic.
    pub async fn fold_usage(&self, wrote: bool) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let holding = self.folding.load(Ordering::Relaxed);
        if !holding && (!wrote || now < self.fold_next_ask.load(Ordering::Relaxed)) {
            return Ok(());
        }
        let mut con = self.conn().await?;
        let lease = self.k("usage_folder");
        let took: Option<String> = redis::cmd("SET")
            .arg(&lease)
            .arg(&*self.instance)
            .arg("NX")
            .arg("PX")
            .arg(FOLDER_LEASE_MS)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        if took.is_none() {
            let holder: Option<String> = redis::cmd("GET")
                .arg(&lease)
                .query_async(&mut con)
                .await
                .map_err(err)?;
            if holder.as_deref() != Some(&*self.instance) {
                self.folding.store(false, Ordering::Relaxed);
                self.fold_next_ask
                    .store(now + FOLDER_ASK_EVERY, Ordering::Relaxed);
                return Ok(());
            }
            redis::cmd("PEXPIRE")
                .arg(&lease)
                .arg(FOLDER_LEASE_MS)
                .query_async::<()>(&mut con)
                .await
                .map_err(err)?;
        }
        self.folding.store(true, Ordering::Relaxed);
        for round in 0..FOLD_ROUNDS {
            let r: StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.k("usage_in"))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(FOLD_CHUNK)
                .query_async(&mut con)
                .await
                .map_err(err)?;
            let got = entries(&r);
            if got.is_empty() {
                if round == 0 {
                    // Nothing to fold: the lease runs out, and the next instance with usage
                    // to write takes it.
                    self.folding.store(false, Ordering::Relaxed);
                }
                return Ok(());
            }
            let mut sum = HashMap::new();
            for (_, data) in &got {
                decode(data, &mut sum);
            }
            let mut inv = self.usage_fold.key(&lease);
            inv.key(self.k("usage_in"))
                .key(self.k("last_used"))
                .arg(&*self.instance)
                .arg(self.k("usage:"))
                .arg(got.len());
            for (id, _) in &got {
                inv.arg(id);
            }
            for (id, u) in &sum {
                for (day, n) in &u.per_day {
                    inv.arg(id).arg(day).arg(n);
                }
                for ((day, r), n) in &u.denied {
                    inv.arg(id).arg(format!("{day}/{}", r.as_str())).arg(n);
                }
            }
            inv.arg("|");
            for (id, u) in sum.iter().filter(|(_, u)| u.last_used > 0) {
                inv.arg(id).arg(u.last_used);
            }
            let folded: i64 = inv.invoke_async(&mut con).await.map_err(err)?;
            if folded < 0 {
                // The lease went to another instance meanwhile: it folds from here.
                self.folding.store(false, Ordering::Relaxed);
                return Ok(());
            }
            if got.len() < FOLD_CHUNK {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Usage per day of these keys and their last use: the folded counts and last uses plus
    /// the entries not yet folded, read in one transaction (a fold between two reads would
    /// otherwise move a use from one to the other unseen).
    pub(super) async fn usage_once(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, KeyDays>, StoreError> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut con = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for id in ids {
            pipe.hgetall(self.k(&format!("usage:{id}")));
        }
        pipe.cmd("HMGET").arg(self.k("last_used")).arg(ids);
        pipe.cmd("XRANGE").arg(self.k("usage_in")).arg("-").arg("+");
        let (fields, folded_last, pending): (
            Vec<HashMap<String, u64>>,
            Vec<Option<i64>>,
            StreamRangeReply,
        ) = {
            let mut v: Vec<redis::Value> = pipe.query_async(&mut con).await.map_err(err)?;
            let parsed = |e: redis::ParsingError| err(e.into());
            let pending = v
                .pop()
                .map(redis::from_redis_value)
                .transpose()
                .map_err(parsed)?;
            let folded_last = v
                .pop()
                .map(redis::from_redis_value)
                .transpose()
                .map_err(parsed)?;
            let fields = v
                .into_iter()
                .map(redis::from_redis_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(parsed)?;
            (
                fields,
                folded_last.unwrap_or_default(),
                pending.unwrap_or_default(),
            )
        };
        let mut sum: HashMap<String, KeyUsage> = HashMap::new();
        for (_, data) in entries(&pending) {
            decode(&data, &mut sum);
        }
        let mut out = BTreeMap::new();
        let folded_last = folded_last.into_iter().chain(std::iter::repeat(None));
        for ((id, fields), last) in ids.iter().zip(fields).zip(folded_last) {
            let mut days = KeyDays {
                last_used: last,
                ..KeyDays::default()
            };
            let mut add = |day, reason: Option<Reason>, n| match reason {
                None => *days.allowed.entry(day).or_default() += n,
                Some(r) => {
                    let d = days.denied.entry(day).or_default();
                    *d.entry(r.as_str().to_string()).or_default() += n;
                }
            };
            for (f, n) in fields {
                if let Some((day, r)) = field(&f) {
                    add(day, r, n);
                }
            }
            if let Some(u) = sum.get(id) {
                if u.last_used > 0 {
                    days.last_used = days.last_used.max(Some(u.last_used));
                }
                for (day, n) in &u.per_day {
                    add(*day, None, *n);
                }
                for ((day, r), n) in &u.denied {
                    add(*day, Some(*r), *n);
                }
            }
            out.insert(id.clone(), days);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_their_encoding() {
        let mut b = UsageBatch::default();
        b.add("k1", 86_400 * 3 + 5);
        b.add("k1", 86_400 * 3 + 9);
        b.add("k1", 86_400 * 4);
        b.add("k2", 7);
        b.deny("k2", Reason::Scope, 86_400 * 2);
        b.deny("k2", Reason::Scope, 86_400 * 2 + 1);
        b.deny("k4", Reason::RateLimited, 86_400);
        let mut back = HashMap::new();
        decode(&encode(&b), &mut back);
        decode(&encode(&b), &mut back);
        let k1 = &back["k1"];
        assert_eq!(k1.last_used, 86_400 * 4);
        assert_eq!(k1.per_day, BTreeMap::from([(3, 4), (4, 2)]));
        assert_eq!(back["k2"].per_day, BTreeMap::from([(0, 2)]));
        assert_eq!(back["k2"].denied, BTreeMap::from([((2, Reason::Scope), 4)]));
        assert_eq!(back["k4"].last_used, 0, "a refusal is not a use");
        assert_eq!(
            back["k4"].denied,
            BTreeMap::from([((1, Reason::RateLimited), 2)])
        );
        decode("garbage\nk3 x 1:y\n", &mut back);
        assert!(back["k3"].per_day.is_empty());
    }
}
