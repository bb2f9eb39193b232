//! What management calls answer, as types: the admin API serializes them and the CLI prints
//! the same JSON. Times are RFC 3339 UTC to the second. Only [`Created`] ever holds a key.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::credits::Credits;
use crate::core::key::{Account, KeyRecord};
use crate::core::limit::RateLimit;
use crate::core::meta::Meta;
use crate::store::state::{AuditEvent, DAY, KeyDays};

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(t: i64) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(st).to_string()
}

/// The one response that carries a key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub id: String,
    pub key: String,
    pub name: Option<String>,
    pub prefix: String,
    pub account: String,
    pub scheme: String,
    pub scopes: Option<Vec<String>>,
    pub created_at: String,
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A key as listed: never the key or its hash.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: String,
    pub name: Option<String>,
    pub prefix: String,
    pub account: String,
    pub scheme: String,
    pub scopes: Option<Vec<String>>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Vec<RateLimit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

impl From<&KeyRecord> for KeyView {
    fn from(k: &KeyRecord) -> Self {
        KeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            account: k.account.clone(),
            scheme: k.scheme.clone(),
            scopes: k.scopes.clone(),
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            replaces: k.replaces.clone(),
            replaced_by: k.replaced_by.clone(),
            rate_limits: k.rate_limits.clone(),
            credits: k.credits.clone(),
            enabled: k.enabled,
            meta: k.meta.clone(),
        }
    }
}

/// `GET /api/keys`.
#[derive(Debug, Serialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// `DELETE /api/keys/{id}`.
#[derive(Debug, Serialize)]
pub struct Revoked {
    pub success: bool,
}

/// An account.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: String,
    pub plan: Option<String>,
    pub status: &'static str,
    pub updated_at: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.id.clone(),
            plan: a.plan.clone(),
            status: a.status.as_str(),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// `GET /api/accounts/{id}/usage`: allowed requests per key and per UTC day, and refused
/// ones of each key by reason.
#[derive(Debug, Serialize)]
pub struct UsageView {
    pub account: String,
    pub keys: Vec<KeyUsage>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsage {
    pub id: String,
    pub name: Option<String>,
    pub prefix: String,
    pub last_used_at: Option<String>,
    /// Allowed requests in all.
    pub total: u64,
    /// `YYYY-MM-DD` → allowed requests that UTC day.
    pub days: BTreeMap<String, u64>,
    /// Reason → refused requests in all.
    pub denied: BTreeMap<String, u64>,
    /// `YYYY-MM-DD` → reason → refused requests that UTC day.
    pub denied_days: BTreeMap<String, BTreeMap<String, u64>>,
}

fn date(day: i64) -> String {
    rfc3339(day * DAY)[..10].to_string()
}

impl KeyUsage {
    pub fn new(k: &KeyRecord, usage: Option<&KeyDays>) -> KeyUsage {
        let empty = KeyDays::default();
        let u = usage.unwrap_or(&empty);
        let mut denied = BTreeMap::new();
        for reasons in u.denied.values() {
            for (r, n) in reasons {
                *denied.entry(r.clone()).or_default() += n;
            }
        }
        KeyUsage {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            last_used_at: k.last_used_at.max(u.last_used).map(rfc3339),
            total: u.allowed.values().sum(),
            days: u.allowed.iter().map(|(d, n)| (date(*d), *n)).collect(),
            denied,
            denied_days: u
                .denied
                .iter()
                .map(|(d, r)| (date(*d), r.clone()))
                .collect(),
        }
    }
}

/// `GET /api/audit`.
#[derive(Debug, Serialize)]
pub struct AuditView {
    pub events: Vec<EventView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub account: String,
    pub key_id: Option<String>,
    pub detail: Option<serde_json::Value>,
}

impl From<&AuditEvent> for EventView {
    fn from(e: &AuditEvent) -> Self {
        EventView {
            at: rfc3339(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            account: e.account.clone(),
            key_id: e.key_id.clone(),
            detail: e.detail.clone(),
        }
    }
}
