//! Credit balances in `{ns}:credits` (key id → `version:period:remaining`), taken out in leases
//! and given back by two Lua scripts that apply the rules of [`keygate_core::credits`]
//! atomically: no two instances can take the same credit, and a balance never goes below zero.

use keygate_core::credits::Balance;

use super::{RedisStore, err};
use crate::StoreError;
use crate::state::CreditLease;

/// ARGV: id, version, period, initial, refill amount (0: none), want.
/// Returns {granted, version, period, remaining}.
pub(super) const TAKE: &str = r#"
local version, period = tonumber(ARGV[2]), tonumber(ARGV[3])
local initial, refill, want = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ver, per, rem
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s then
  local a, b, c = string.match(s, '^(%d+):(%-?%d+):(%d+)$')
  ver, per, rem = tonumber(a), tonumber(b), tonumber(c)
end
if not ver or ver < version then
  ver, per, rem = version, period, initial
elseif ver == version and refill > 0 and per < period then
  per, rem = period, refill
end
local granted = math.min(want, rem)
rem = rem - granted
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d:%d:%d', ver, per, rem))
return {granted, ver, per, rem}
"#;

/// ARGV: id, version, period, n. Adds `n` back if the balance is still that one.
pub(super) const GIVE_BACK: &str = r#"
local s = redis.call('HGET', KEYS[1], ARGV[1])
if not s then return 0 end
local a, b, c = string.match(s, '^(%d+):(%-?%d+):(%d+)$')
if tonumber(a) ~= tonumber(ARGV[2]) or tonumber(b) ~= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d:%d:%d', a, b, tonumber(c) + tonumber(ARGV[4])))
return 1
"#;

impl RedisStore {
    /// The stored balances of these keys (`None`: never spent from).
    pub(super) async fn credit_balances_once(
        &self,
        ids: &[&str],
    ) -> Result<Vec<Option<Balance>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.conn().await?;
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.k("credits"))
            .arg(ids)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        Ok(raw.iter().map(|r| r.as_deref().and_then(parse)).collect())
    }

    pub(super) async fn take_credits_once(
        &self,
        lease: &CreditLease,
        want: u64,
    ) -> Result<(u64, Balance), StoreError> {
        let mut con = self.conn().await?;
        let refill = lease.credits.refill.as_ref().map_or(0, |r| r.amount);
        let (granted, version, period, remaining): (u64, u64, i64, u64) = self
            .credit_scripts
            .0
            .key(self.k("credits"))
            .arg(&*lease.id)
            .arg(lease.version)
            .arg(lease.period)
            .arg(lease.credits.remaining)
            .arg(refill)
            .arg(want)
            .invoke_async(&mut con)
            .await
            .map_err(err)?;
        let b = Balance {
            version,
            period,
            remaining,
        };
        Ok((granted, b))
    }

    pub(super) async fn give_back_credits_once(
        &self,
        lease: &CreditLease,
        n: u64,
    ) -> Result<(), StoreError> {
        let mut con = self.conn().await?;
        let _: i64 = self
            .credit_scripts
            .1
            .key(self.k("credits"))
            .arg(&*lease.id)
            .arg(lease.version)
            .arg(lease.period)
            .arg(n)
            .invoke_async(&mut con)
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// `version:period:remaining`.
fn parse(s: &str) -> Option<Balance> {
    let mut it = s.split(':');
    let b = Balance {
        version: it.next()?.parse().ok()?,
        period: it.next()?.parse().ok()?,
        remaining: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(b)
}
