//! The state model shared by every backend, and the pure rules of each write: what a change
//! does, what it refuses (unknown key, key limit), and the audit event it leaves.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use keygate_core::credits::Balance;
use keygate_core::credits::Credits;
use keygate_core::key::{Account, AccountStatus, KeyRecord};
use keygate_core::limit::RateLimit;
use keygate_core::meta::Meta;

/// Seconds in a UTC day; usage is counted per `unix_seconds / DAY`.
pub const DAY: i64 = 86_400;

/// Everything keygate stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct State {
    /// Bumped by every change that can affect a decision (not by usage write-back).
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub keys: BTreeMap<String, KeyRecord>,
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
    /// Allowed requests per key id per UTC day number.
    #[serde(default)]
    pub usage: BTreeMap<String, BTreeMap<i64, u64>>,
    /// Refused requests of known keys per key id, UTC day number and reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub denied: BTreeMap<String, BTreeMap<i64, BTreeMap<String, u64>>>,
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
    /// Live credit balances per key id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credits: BTreeMap<String, Balance>,
}

/// A lease wanted from a fleet-wide rate limit counter: `want` requests of at most `limit`
/// in the window the counter names, which expires after `ttl` seconds.
#[derive(Debug, Clone)]
pub struct BudgetTake {
    pub counter: String,
    pub limit: u64,
    pub want: u64,
    pub ttl: u64,
}

/// Which balance a credit lease is taken from: the key's credits as the caller's table has
/// them, and the refill period at `now`.
#[derive(Debug, Clone)]
pub struct CreditLease {
    pub id: Arc<str>,
    pub credits: Credits,
    pub version: u64,
    pub period: i64,
    pub now: i64,
}

/// The table's part of the state as loaded in bulk: plain vectors, no ordering work.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub keys: Vec<KeyRecord>,
    pub accounts: Vec<Account>,
}

impl From<Snapshot> for State {
    fn from(s: Snapshot) -> State {
        State {
            revision: s.revision,
            keys: s.keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
            accounts: s.accounts.into_iter().map(|a| (a.id.clone(), a)).collect(),
            ..State::default()
        }
    }
}

/// A management event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEvent {
    pub at: i64,
    /// `cli`, or the admin token's label.
    pub actor: String,
    /// `key.created`, `key.imported`, `key.revoked`, `key.rotated`, `account.updated`.
    pub action: String,
    pub account: String,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// One write.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert a new key; refused if the account already has `max_active` active keys.
    CreateKey {
        record: KeyRecord,
        max_active: Option<u32>,
    },
    RevokeKey {
        id: String,
        at: i64,
    },
    /// Insert `record` replacing `old_id`, which is revoked at `at` or, with a grace period,
    /// expires at `old_expires_at`.
    RotateKey {
        old_id: String,
        record: KeyRecord,
        at: i64,
        old_expires_at: Option<i64>,
    },
    /// Sets account `id`'s plan and status where given (made with `plan: None, status:
    /// active` if new), on the account as the store holds it when the write is applied: two
    /// concurrent updates of different fields both hold.
    SetAccount {
        id: String,
        plan: Option<Option<String>>,
        status: Option<AccountStatus>,
        at: i64,
    },
    /// Sets the fields `update` names on key `id` (not a revoked one).
    UpdateKey {
        id: String,
        update: KeyUpdate,
    },
    /// Inserts imported keys all at once, or none: refused if a digest or an id is taken, or
    /// an account in `max_active` would have more active keys than its limit.
    ImportKeys {
        records: Vec<KeyRecord>,
        max_active: BTreeMap<String, u32>,
    },
}

/// The fields a key update sets: `None` leaves one as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyUpdate {
    pub name: Option<Option<String>>,
    pub scopes: Option<Option<Vec<String>>>,
    pub expires_at: Option<Option<i64>>,
    pub rate_limits: Option<Option<Vec<RateLimit>>>,
    pub credits: Option<Option<Credits>>,
    pub enabled: Option<bool>,
    pub meta: Option<Option<Meta>>,
}

impl KeyUpdate {
    fn apply_to(self, k: &mut KeyRecord) {
        k.version += 1;
        if let Some(v) = self.name {
            k.name = v;
        }
        if let Some(v) = self.scopes {
            k.scopes = v;
        }
        if let Some(v) = self.expires_at {
            k.expires_at = v;
        }
        if let Some(v) = self.rate_limits {
            k.rate_limits = v;
        }
        if let Some(v) = self.credits {
            // Setting credits starts every counter over from the new value.
            k.credits = v;
            k.credits_version = k.version;
        }
        if let Some(v) = self.enabled {
            k.enabled = v;
        }
        if let Some(v) = self.meta {
            k.meta = v;
        }
    }
}

/// A write the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("no such key")]
    KeyNotFound,
    #[error("a key with this id already exists")]
    DuplicateKey,
    #[error("the account has reached its plan's limit of {max} active keys")]
    KeyLimit { max: u32 },
    #[error("the key is revoked")]
    KeyRevoked,
    #[error("the key has expired")]
    KeyExpired,
    #[error("a key with this digest exists")]
    DuplicateDigest,
}

impl State {
    /// Active keys of an account at `now`.
    pub fn active_keys(&self, account: &str, now: i64) -> usize {
        self.keys
            .values()
            .filter(|k| k.account == account && k.is_active(now))
            .count()
    }

    /// Applies a change and appends its audit event, or changes nothing.
    pub fn apply(&mut self, change: Change, event: AuditEvent) -> Result<(), ChangeError> {
        match change {
            Change::CreateKey { record, max_active } => {
                if self.keys.contains_key(&record.id) {
                    return Err(ChangeError::DuplicateKey);
                }
                // One key per digest, whoever wrote first (an import's check before writing
                // can race another writer).
                if let Some(d) = record.hash.sha256()
                    && self.keys.values().any(|k| k.hash.sha256() == Some(d))
                {
                    return Err(ChangeError::DuplicateDigest);
                }
                if let Some(max) = max_active
                    && self.active_keys(&record.account, event.at) >= max as usize
                {
                    return Err(ChangeError::KeyLimit { max });
                }
                self.keys.insert(record.id.clone(), record);
            }
            Change::RevokeKey { id, at } => {
                let k = self.keys.get_mut(&id).ok_or(ChangeError::KeyNotFound)?;
                if k.revoked_at.is_some() {
                    // Revoking twice changes nothing and records nothing.
                    return Ok(());
                }
                k.revoked_at = Some(at);
                k.version += 1;
            }
            Change::RotateKey {
                old_id,
                mut record,
                at,
                old_expires_at,
            } => {
                if self.keys.contains_key(&record.id) {
                    return Err(ChangeError::DuplicateKey);
                }
                let old = self.keys.get_mut(&old_id).ok_or(ChangeError::KeyNotFound)?;
                if old.revoked_at.is_some() {
                    return Err(ChangeError::KeyRevoked);
                }
                if old.expires_at.is_some_and(|e| e <= at) {
                    return Err(ChangeError::KeyExpired);
                }
                match old_expires_at {
                    Some(e) => old.expires_at = Some(old.expires_at.map_or(e, |x| x.min(e))),
                    None => old.revoked_at = Some(at),
                }
                old.replaced_by = Some(record.id.clone());
                old.version += 1;
                record.replaces = Some(old_id);
                self.keys.insert(record.id.clone(), record);
            }
            Change::SetAccount {
                id,
                plan,
                status,
                at,
            } => {
                let acc = self.accounts.entry(id.clone()).or_insert(Account {
                    id,
                    plan: None,
                    status: AccountStatus::Active,
                    updated_at: at,
                    version: 0,
                });
                if let Some(p) = plan {
                    acc.plan = p;
                }
                if let Some(s) = status {
                    acc.status = s;
                }
                acc.updated_at = at;
                acc.version += 1;
                // The event names the account as the write left it.
                let detail = serde_json::json!({"plan": acc.plan, "status": acc.status.as_str()});
                self.revision += 1;
                self.audit.push(AuditEvent {
                    detail: Some(detail),
                    ..event
                });
                return Ok(());
            }
            Change::UpdateKey { id, update } => {
                let k = self.keys.get_mut(&id).ok_or(ChangeError::KeyNotFound)?;
                if k.revoked_at.is_some() {
                    return Err(ChangeError::KeyRevoked);
                }
                update.apply_to(k);
            }
            Change::ImportKeys {
                records,
                max_active,
            } => {
                // One event per account, naming the keys it got.
                let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for r in &records {
                    ids.entry(r.account.clone()).or_default().push(r.id.clone());
                }
                self.import(records, &max_active, event.at)?;
                self.revision += 1;
                for (account, keys) in ids {
                    self.audit.push(AuditEvent {
                        account,
                        detail: Some(serde_json::json!({ "keys": keys })),
                        ..event.clone()
                    });
                }
                return Ok(());
            }
        }
        self.revision += 1;
        self.audit.push(event);
        Ok(())
    }

    fn import(
        &mut self,
        records: Vec<KeyRecord>,
        max_active: &BTreeMap<String, u32>,
        now: i64,
    ) -> Result<(), ChangeError> {
        let digest = |k: &KeyRecord| k.hash.sha256().copied();
        let mut taken: std::collections::HashSet<[u8; 32]> =
            self.keys.values().filter_map(digest).collect();
        let mut ids = std::collections::HashSet::new();
        let mut adding: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &records {
            if self.keys.contains_key(&r.id) || !ids.insert(r.id.as_str()) {
                return Err(ChangeError::DuplicateKey);
            }
            if digest(r).is_some_and(|d| !taken.insert(d)) {
                return Err(ChangeError::DuplicateDigest);
            }
            if r.is_active(now) {
                *adding.entry(r.account.as_str()).or_default() += 1;
            }
        }
        for (account, n) in adding {
            if let Some(&max) = max_active.get(account)
                && self.active_keys(account, now) + n > max as usize
            {
                return Err(ChangeError::KeyLimit { max });
            }
        }
        for r in records {
            self.keys.insert(r.id.clone(), r);
        }
        Ok(())
    }

    /// Adds usage counts; keys that no longer exist are ignored.
    pub fn record_usage(&mut self, batch: &UsageBatch) {
        for (id, u) in &batch.keys {
            let Some(k) = self.keys.get_mut(id.as_str()) else {
                continue;
            };
            if u.last_used > 0 {
                k.last_used_at = Some(k.last_used_at.map_or(u.last_used, |l| l.max(u.last_used)));
            }
            if !u.per_day.is_empty() {
                let days = self.usage.entry(id.to_string()).or_default();
                for (day, n) in &u.per_day {
                    *days.entry(*day).or_default() += n;
                }
            }
            if !u.denied.is_empty() {
                let days = self.denied.entry(id.to_string()).or_default();
                for ((day, reason), n) in &u.denied {
                    let day = days.entry(*day).or_default();
                    *day.entry(reason.as_str().to_string()).or_default() += n;
                }
            }
        }
    }

    /// A key's usage as reports show it.
    pub fn usage_of(&self, id: &str) -> KeyDays {
        KeyDays {
            allowed: self.usage.get(id).cloned().unwrap_or_default(),
            denied: self.denied.get(id).cloned().unwrap_or_default(),
            last_used: None,
        }
    }
}

mod usage;
pub use usage::{KeyDays, KeyUsage, UsageBatch};
