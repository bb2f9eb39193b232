//! Fleet-wide rate limit budgets: one counter per subject, limit and window
//! (`{ns}:rl:<counter>`, expiring after its window), from which instances take leases of a few
//! requests at a time, by one Lua script for every counter a request needs; and the instance
//! heartbeats (`{ns}:instances`, a sorted set by last beat) that size each instance's share
//! while Redis cannot be reached.

use redis::AsyncCommands;

use super::{RedisStore, err};
use crate::StoreError;
use crate::state::BudgetTake;

/// KEYS: the counters; ARGV: per counter, its ttl, limit and wanted requests.
/// Returns per counter: granted, left after.
pub(super) const TAKE: &str = r#"
local out = {}
for i, k in ipairs(KEYS) do
  local ttl, limit, want = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local used = tonumber(redis.call('GET', k) or '0')
  local granted = math.min(want, math.max(limit - used, 0))
  if granted > 0 then
    used = redis.call('INCRBY', k, granted)
    if used == granted then redis.call('EXPIRE', k, ttl) end
  end
  out[2*i-1] = granted
  out[2*i] = math.max(limit - used, 0)
end
return out
"#;

/// How long an instance counts as alive after its last beat, in seconds.
pub const HEARTBEAT_TTL: i64 = 15;

impl RedisStore {
    pub async fn take_budgets(&self, takes: &[BudgetTake]) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut con = self.conn().await?;
        let mut inv = self.budget_script.prepare_invoke();
        for t in takes {
            inv.key(self.k(&format!("rl:{}", t.counter)))
                .arg(t.ttl)
                .arg(t.limit)
                .arg(t.want);
        }
        let flat: Vec<u64> = inv.invoke_async(&mut con).await.map_err(err)?;
        Ok(flat.chunks(2).map(|c| (c[0], c[1])).collect())
    }

    /// Records that `instance` is alive at `now`; returns how many instances are.
    pub async fn heartbeat(&self, instance: &str, now: i64) -> Result<u64, StoreError> {
        let mut con = self.conn().await?;
        let key = self.k("instances");
        let _: () = con.zadd(&key, instance, now).await.map_err(err)?;
        let _: () = con
            .zrembyscore(&key, "-inf", now - HEARTBEAT_TTL)
            .await
            .map_err(err)?;
        con.zcard(&key).await.map_err(err)
    }
}
