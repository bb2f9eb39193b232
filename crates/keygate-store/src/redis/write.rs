//! Writes: the shared rules applied to what they need to read, then one Lua script that
//! checks the revision has not moved and writes records, indexes, the change entry and the
//! audit events atomically (or the write is tried again).

use keygate_core::key::to_hex;

use super::{ChangeData, RedisStore, err};
use crate::StoreError;
use crate::state::{AuditEvent, Change, ChangeError, State};

pub(super) const CAS_WRITE: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur ~= tonumber(ARGV[1]) then return -1 end
-- The snapshot follows the records only while it is complete at this revision (or the store
-- is new); then this write must bring the buckets it changes, or be tried again.
local srev = redis.call('GET', KEYS[8])
local insync = (srev and tonumber(srev) == cur)
  or (not srev and cur == 0 and redis.call('HLEN', KEYS[2]) == 0)
local nb = tonumber(ARGV[6])
if insync and nb < 0 then return -2 end
local rev = redis.call('INCR', KEYS[1])
-- Field-value pairs set with one HSET per 500, not one call each: a bulk write of thousands of
-- keys spends most of its time in calls otherwise.
local function hset_all(key, pairs)
  for j = 1, #pairs, 1000 do
    redis.call('HSET', key, unpack(pairs, j, math.min(j + 999, #pairs)))
  end
end
local i = 7
if nb > 0 then
  local b = {}
  for _ = 1, nb do
    b[#b + 1] = ARGV[i]; b[#b + 1] = ARGV[i + 1]
    i = i + 2
  end
  if insync then hset_all(KEYS[7], b) end
end
if insync then redis.call('SET', KEYS[8], rev) end
local nk = tonumber(ARGV[i]); i = i + 1
local recs, digs = {}, {}
for _ = 1, nk do
  recs[#recs + 1] = ARGV[i]; recs[#recs + 1] = ARGV[i + 1]
  redis.call('SADD', ARGV[4] .. ARGV[i + 2], ARGV[i])
  if ARGV[i + 3] ~= '' then digs[#digs + 1] = ARGV[i + 3]; digs[#digs + 1] = ARGV[i] end
  i = i + 4
end
hset_all(KEYS[2], recs)
hset_all(KEYS[6], digs)
local na = tonumber(ARGV[i]); i = i + 1
for _ = 1, na do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[2], '*', 'rev', rev, 'data', ARGV[5])
for ev in string.gmatch(ARGV[3], '[^\n]+') do
  redis.call('XADD', KEYS[5], '*', 'data', ev)
end
return rev
"#;

impl RedisStore {
    /// Applies one change with the shared rules, atomically, retrying if another writer
    /// got in first.
    pub(super) async fn apply_once(
        &self,
        change: Change,
        event: AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut con = self.conn().await?;
        for _ in 0..50 {
            let (rev, snap_rev): (Option<u64>, Option<u64>) = redis::pipe()
                .get(self.k("rev"))
                .get(self.k("snap_rev"))
                .query_async(&mut con)
                .await
                .map_err(err)?;
            let mut st = State {
                revision: rev.unwrap_or(0),
                ..State::default()
            };
            // What the rules read: the records the change names, and the keys of the
            // accounts whose limits it checks.
            let accounts: Vec<String> = match &change {
                Change::CreateKey { record, .. } => {
                    // The key holding its digest, if any, for the rule that there is one.
                    if let Some(d) = record.hash.sha256() {
                        let holder = self.ids_of_digests_once(&[to_hex(d)]).await?;
                        let ids: Vec<&str> = holder.iter().flatten().map(String::as_str).collect();
                        for k in self.get_keys_once(&ids).await? {
                            st.keys.insert(k.id.clone(), k);
                        }
                    }
                    vec![record.account.clone()]
                }
                Change::RevokeKey { id, .. }
                | Change::RotateKey { old_id: id, .. }
                | Change::UpdateKey { id, .. } => {
                    let k = self
                        .get_key_once(id)
                        .await?
                        .ok_or(ChangeError::KeyNotFound)?;
                    let a = k.account.clone();
                    st.keys.insert(k.id.clone(), k);
                    vec![a]
                }
                Change::SetAccount { id, .. } => {
                    if let Some(a) = self.get_account_once(id).await? {
                        st.accounts.insert(a.id.clone(), a);
                    }
                    vec![]
                }
                Change::ImportKeys {
                    records,
                    max_active,
                } => {
                    let hexes: Vec<String> = (records.iter())
                        .filter_map(|r| r.hash.sha256().map(|d| to_hex(d)))
                        .collect();
                    let holders = self.ids_of_digests_once(&hexes).await?;
                    let ids: Vec<&str> = records
                        .iter()
                        .map(|r| r.id.as_str())
                        .chain(holders.iter().flatten().map(String::as_str))
                        .collect();
                    for k in self.get_keys_once(&ids).await? {
                        st.keys.insert(k.id.clone(), k);
                    }
                    max_active.keys().cloned().collect()
                }
            };
            for a in accounts {
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
                .key(self.k("snap"))
                .key(self.k("snap_rev"))
                .arg(rev.unwrap_or(0))
                .arg(self.max_len)
                .arg(events(&st.audit[before.audit.len()..]))
                .arg(self.k("acct:"))
                .arg(serde_json::to_string(&data).unwrap_or_default());
            // As the script decides it (a missing revision is 0); for a store without a
            // revision the script also checks there are no records, and ignores the buckets
            // if there are.
            let in_sync =
                snap_rev == Some(rev.unwrap_or(0)) || (snap_rev.is_none() && rev.is_none());
            if in_sync {
                let buckets = self.merged_buckets(&mut con, &data.keys).await?;
                inv.arg(buckets.len());
                for (b, v) in buckets {
                    inv.arg(b).arg(v);
                }
            } else {
                inv.arg(-1);
            }
            inv.arg(data.keys.len());
            for k in &data.keys {
                let digest = k.hash.sha256().map(|d| to_hex(d)).unwrap_or_default();
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
            // -1: another writer got in first; -2: the snapshot came into step (a migration
            // finished) and this write brought no buckets. Either way: read again.
        }
        Err(StoreError::Contention)
    }
}

/// The audit events of a write, one JSON document a line (JSON strings escape newlines).
fn events(evs: &[AuditEvent]) -> String {
    evs.iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}
