//! Management operations — create, list, revoke, rotate, import keys; set accounts; read usage
//! and audit — shared by the CLI and the admin API so both answer with the same
//! [`views`](super::views) and follow the same rules. A key appears in exactly one place: the
//! response that creates it.
//!
//! This file holds the [`Manager`] and what its operations share; [`keys`], [`import`],
//! [`leaked`] and [`accounts`] the operations.

mod accounts;
mod import;
mod keys;
mod leaked;

use std::sync::Arc;

pub use import::{ImportKey, ImportReport, RefusedLine};
pub use keys::{CreateKey, UpdateKey};
pub use leaked::{LeakVerdict, LeakedToken};
// Where callers found them before views and errors had files of their own.
pub use super::error::ManageError;
pub use super::views::{Created, KeyView, rfc3339};

use super::error::bad;

use crate::config::Settings;
use crate::core::key::{self, KeyRecord};
use crate::core::policy::valid_scope;
use crate::store::Store;
use crate::store::replica::Replica;
use crate::store::state::{AuditEvent, Change};

/// The operations, bound to a store, a config and an actor for the audit trail.
pub struct Manager {
    pub settings: Arc<Settings>,
    pub store: Store,
    /// When set (inside a server), written changes are installed before the call returns, so a
    /// key works on this sidecar as soon as its creation response is sent.
    pub replica: Option<Arc<Replica>>,
}

impl Manager {
    pub fn new(settings: Arc<Settings>, store: Store, replica: Option<Arc<Replica>>) -> Manager {
        Manager {
            settings,
            store,
            replica,
        }
    }

    pub(super) async fn write(&self, change: Change, event: AuditEvent) -> Result<(), ManageError> {
        let rev = self.store.apply(change, event).await?;
        if let Some(r) = &self.replica {
            self.store.settle(r, rev).await;
        }
        Ok(())
    }

    pub(super) fn scheme(&self, name: Option<&str>) -> Result<usize, ManageError> {
        match name {
            None => Ok(0),
            Some(n) => self
                .settings
                .scheme_index(n)
                .ok_or_else(|| bad("scheme", format!("unknown scheme `{n}`"))),
        }
    }

    pub(super) fn check_common(
        &self,
        name: &Option<String>,
        scopes: &Option<Vec<String>>,
        expires_at: &Option<String>,
        now: i64,
    ) -> Result<Option<i64>, ManageError> {
        if let Some(n) = name
            && (n.chars().count() > 200 || n.chars().any(char::is_control))
        {
            return Err(bad("name", "at most 200 characters, no control characters"));
        }
        if let Some(s) = scopes {
            if s.len() > 64 {
                return Err(bad("scopes", "at most 64 scopes"));
            }
            if let Some(b) = s.iter().find(|s| !valid_scope(s)) {
                return Err(bad("scopes", format!("`{b}` is not a valid scope")));
            }
        }
        match expires_at {
            None => Ok(None),
            Some(s) => {
                let t = parse_time("expiresAt", s)?;
                if t <= now {
                    return Err(bad("expiresAt", "must be in the future"));
                }
                Ok(Some(t))
            }
        }
    }

    pub(super) fn max_keys(&self, state_plan: Option<&str>) -> Option<u32> {
        state_plan
            .and_then(|p| self.settings.policy.plans.get(p))
            .and_then(|p| p.max_keys)
    }

    pub(super) async fn account_plan(&self, account: &str) -> Result<Option<String>, ManageError> {
        Ok(self.store.get_account(account).await?.and_then(|a| a.plan))
    }

    pub(super) async fn new_record(
        &self,
        si: usize,
        account: &str,
        name: Option<String>,
        scopes: Option<Vec<String>>,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(KeyRecord, key::NewKey), ManageError> {
        let scheme = self.settings.policy.schemes[si].clone();
        let (nk, hash) = tokio::task::spawn_blocking(move || {
            let nk = key::generate(&scheme);
            let h = key::hash_key(&scheme, nk.key.as_bytes());
            (nk, h)
        })
        .await
        .map_err(|_| ManageError::Internal("key generation failed"))?;
        let hash = hash.map_err(|_| ManageError::Internal("key hashing failed"))?;
        let s = &self.settings.policy.schemes[si];
        // A format without an id shows only the scheme's prefix: any more would be secret.
        let prefix = match s.format.id {
            true => format!("{}{}", s.key_prefix, nk.id),
            false => s.key_prefix.clone(),
        };
        let mut rec = KeyRecord::new(
            nk.id.clone(),
            prefix,
            account.to_string(),
            s.name.clone(),
            hash,
            now,
        );
        rec.name = name;
        rec.scopes = scopes;
        rec.expires_at = expires_at;
        Ok((rec, nk))
    }

    pub(super) fn created(rec: &KeyRecord, nk: &key::NewKey) -> Created {
        Created {
            id: rec.id.clone(),
            key: nk.key.to_string(),
            name: rec.name.clone(),
            prefix: rec.prefix.clone(),
            account: rec.account.clone(),
            scheme: rec.scheme.clone(),
            scopes: rec.scopes.clone(),
            created_at: rfc3339(rec.created_at),
            expires_at: rec.expires_at.map(rfc3339),
            replaces: rec.replaces.clone(),
        }
    }

    pub(super) fn event(
        &self,
        actor: &str,
        action: &str,
        account: &str,
        key_id: Option<&str>,
        now: i64,
    ) -> AuditEvent {
        AuditEvent {
            at: now,
            actor: actor.to_string(),
            action: action.to_string(),
            account: account.to_string(),
            key_id: key_id.map(String::from),
            detail: None,
        }
    }
}

/// Account ids travel in identity headers: keep them to header-safe characters.
pub(super) fn check_account(field: &'static str, a: &str) -> Result<(), ManageError> {
    let ok = !a.is_empty()
        && a.len() <= 128
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(field, "1-128 characters of A-Z a-z 0-9 . _ : @ -"))
    }
}

fn parse_time(field: &'static str, s: &str) -> Result<i64, ManageError> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        bad(
            field,
            "expected an RFC 3339 UTC time such as 2027-01-31T00:00:00Z",
        )
    })?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| bad(field, "before 1970"))
}
