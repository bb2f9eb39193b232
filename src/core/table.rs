//! The key table snapshot the core decides from: immutable, shared behind an `Arc`, replaced
//! whole when the store changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use super::key::{Account, AccountStatus, KeyHash, KeyRecord};
use super::scheme::Scheme;
use crate::config::Plan;

/// One key, ready for decisions.
pub struct KeyEntry {
    pub id: Box<str>,
    pub account: Box<str>,
    pub scheme: usize,
    pub scopes: Option<Box<[Box<str>]>>,
    /// Scopes joined by spaces, for the identity header.
    pub scopes_joined: Box<str>,
    pub hash: KeyHash,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub version: u64,
    /// Keyed digest of the key that last verified against `hash` (Argon2 schemes). It lives
    /// and dies with this entry, so a change of the record (which makes a new entry) drops it.
    pub verified: OnceLock<[u8; 32]>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("account", &self.account)
            .field("scheme", &self.scheme)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What the core needs of an account.
#[derive(Debug, Clone)]
pub struct AccountEntry {
    pub plan: Option<Arc<str>>,
    pub status: AccountStatus,
    /// From the plan; an account on a plan missing from the config has no access.
    pub api_access: bool,
}

/// The immutable snapshot.
#[derive(Debug, Default)]
pub struct Table {
    loaded: bool,
    by_id: HashMap<Box<str>, Arc<KeyEntry>>,
    by_digest: HashMap<[u8; 32], Arc<KeyEntry>>,
    accounts: HashMap<Box<str>, AccountEntry>,
    /// Records skipped because their scheme is not configured.
    pub skipped: usize,
}

impl Table {
    /// The table before the first load: every decision is `not_ready`.
    pub fn not_loaded() -> Table {
        Table::default()
    }

    /// Builds a snapshot. Entries whose record is unchanged since `prev` keep their
    /// verification cache.
    pub fn build<'r>(
        schemes: &[Scheme],
        plans: &BTreeMap<String, Plan>,
        keys: impl IntoIterator<Item = &'r KeyRecord>,
        accounts: impl IntoIterator<Item = &'r Account>,
        prev: Option<&Table>,
    ) -> Table {
        let mut t = Table {
            loaded: true,
            ..Table::default()
        };
        for rec in keys {
            let Some(scheme) = schemes.iter().position(|s| s.name == rec.scheme) else {
                t.skipped += 1;
                continue;
            };
            let entry = Arc::new(KeyEntry {
                id: rec.id.as_str().into(),
                account: rec.account.as_str().into(),
                scheme,
                scopes: rec
                    .scopes
                    .as_ref()
                    .map(|v| v.iter().map(|s| s.as_str().into()).collect()),
                scopes_joined: rec
                    .scopes
                    .as_ref()
                    .map(|v| v.join(" "))
                    .unwrap_or_default()
                    .into(),
                hash: rec.hash.clone(),
                expires_at: rec.expires_at,
                revoked_at: rec.revoked_at,
                version: rec.version,
                verified: OnceLock::new(),
            });
            if let Some(old) = prev.and_then(|p| p.by_id.get(rec.id.as_str()))
                && old.version == rec.version
                && old.hash == rec.hash
                && let Some(d) = old.verified.get()
            {
                let _ = entry.verified.set(*d);
            }
            if let KeyHash::Sha256(d) = &entry.hash {
                t.by_digest.insert(*d, entry.clone());
            }
            t.by_id.insert(entry.id.clone(), entry);
        }
        for a in accounts {
            let api_access = match &a.plan {
                None => true,
                Some(p) => plans.get(p).is_some_and(|p| p.api_access),
            };
            t.accounts.insert(
                a.id.as_str().into(),
                AccountEntry {
                    plan: a.plan.as_deref().map(Into::into),
                    status: a.status,
                    api_access,
                },
            );
        }
        t
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn by_id(&self, id: &[u8]) -> Option<&Arc<KeyEntry>> {
        std::str::from_utf8(id)
            .ok()
            .and_then(|id| self.by_id.get(id))
    }

    pub fn by_digest(&self, digest: &[u8; 32]) -> Option<&Arc<KeyEntry>> {
        self.by_digest.get(digest)
    }

    pub fn account(&self, id: &str) -> Option<&AccountEntry> {
        self.accounts.get(id)
    }
}
