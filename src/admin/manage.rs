//! Management operations — create, list, revoke, rotate, import keys; set accounts; read usage
//! and audit — shared by the CLI and the admin API so both print the same JSON and follow the
//! same rules. A key appears in exactly one place: the response that creates it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::Settings;
use crate::core::key::{self, Account, AccountStatus, KeyHash, KeyRecord};
use crate::core::policy::valid_scope;
use crate::service::unix_now;
use crate::store::replica::Replica;
use crate::store::state::{AuditEvent, Change, ChangeError, DAY};
use crate::store::{Store, StoreError};

/// Why a management call failed; each maps to one HTTP status and one CLI exit code.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{field}: {message}")]
    BadRequest {
        field: &'static str,
        message: String,
    },
    #[error("not found")]
    NotFound,
    #[error("the account has reached its plan's limit of {max} active keys")]
    KeyLimit { max: u32 },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Change(ChangeError::KeyNotFound) => ManageError::NotFound,
            StoreError::Change(ChangeError::KeyLimit { max }) => ManageError::KeyLimit { max },
            StoreError::Change(c) => ManageError::Conflict(c.to_string()),
            e => ManageError::Store(e),
        }
    }
}

impl ManageError {
    pub fn status(&self) -> u16 {
        match self {
            ManageError::BadRequest { .. } => 400,
            ManageError::NotFound => 404,
            ManageError::KeyLimit { .. } | ManageError::Conflict(_) => 409,
            ManageError::Store(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ManageError::BadRequest { .. } => "bad_request",
            ManageError::NotFound => "not_found",
            ManageError::KeyLimit { .. } => "key_limit_reached",
            ManageError::Conflict(_) => "conflict",
            ManageError::Store(_) => "store_error",
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": self.code(), "message": self.to_string()})
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> ManageError {
    ManageError::BadRequest {
        field,
        message: message.into(),
    }
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(t: i64) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(st).to_string()
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

/// Account ids travel in identity headers: keep them to header-safe characters.
fn check_account(field: &'static str, a: &str) -> Result<(), ManageError> {
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

/// `POST /api/keys` and `keygate keys create`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    pub account: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// `keygate keys import`: an existing SHA-256 digest from another system.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportKey {
    pub account: String,
    pub scheme: String,
    pub sha256: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<String>,
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
        }
    }
}

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

    async fn write(&self, change: Change, event: AuditEvent) -> Result<(), ManageError> {
        let rev = self.store.apply(change, event).await?;
        if let Some(r) = &self.replica {
            match &self.store {
                Store::File(_) => {
                    if let Err(e) = r.reload(&self.store).await {
                        tracing::error!(error = %e, "change written but the table could not be reloaded");
                    }
                }
                // The follower applies the change within milliseconds; wait for it so the
                // caller's next request sees its own write.
                Store::Redis(_) => {
                    if !r.wait_for(rev, std::time::Duration::from_secs(2)).await {
                        tracing::warn!(revision = rev, "change written but not yet in the table");
                    }
                }
            }
        }
        Ok(())
    }

    fn scheme(&self, name: Option<&str>) -> Result<usize, ManageError> {
        match name {
            None => Ok(0),
            Some(n) => self
                .settings
                .scheme_index(n)
                .ok_or_else(|| bad("scheme", format!("unknown scheme `{n}`"))),
        }
    }

    fn check_common(
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

    fn max_keys(&self, state_plan: Option<&str>) -> Option<u32> {
        state_plan
            .and_then(|p| self.settings.policy.plans.get(p))
            .and_then(|p| p.max_keys)
    }

    async fn account_plan(&self, account: &str) -> Result<Option<String>, ManageError> {
        Ok(self.store.get_account(account).await?.and_then(|a| a.plan))
    }

    async fn new_record(
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
        .map_err(|_| ManageError::Conflict("key generation failed".into()))?;
        let hash = hash.map_err(|_| ManageError::Conflict("key hashing failed".into()))?;
        let s = &self.settings.policy.schemes[si];
        let rec = KeyRecord {
            id: nk.id.clone(),
            name,
            prefix: format!("{}{}", s.key_prefix, nk.id),
            account: account.to_string(),
            scheme: s.name.clone(),
            scopes,
            hash,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            replaces: None,
            replaced_by: None,
            version: 1,
        };
        Ok((rec, nk))
    }

    fn created(rec: &KeyRecord, nk: &key::NewKey) -> Created {
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

    fn event(
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

    pub async fn create_key(&self, actor: &str, req: CreateKey) -> Result<Created, ManageError> {
        let now = unix_now();
        check_account("account", &req.account)?;
        let si = self.scheme(req.scheme.as_deref())?;
        let expires = self.check_common(&req.name, &req.scopes, &req.expires_at, now)?;
        let plan = self.account_plan(&req.account).await?;
        let (rec, nk) = self
            .new_record(si, &req.account, req.name, req.scopes, expires, now)
            .await?;
        let ev = self.event(actor, "key.created", &rec.account, Some(&rec.id), now);
        let out = Self::created(&rec, &nk);
        self.write(
            Change::CreateKey {
                record: rec,
                max_active: self.max_keys(plan.as_deref()),
            },
            ev,
        )
        .await?;
        Ok(out)
    }

    pub async fn import_key(&self, actor: &str, req: ImportKey) -> Result<KeyView, ManageError> {
        let now = unix_now();
        check_account("account", &req.account)?;
        let si = self.scheme(Some(&req.scheme))?;
        let s = &self.settings.policy.schemes[si];
        if s.is_argon2() {
            return Err(bad("scheme", "only sha256 schemes take imported digests"));
        }
        let digest =
            key::from_hex32(&req.sha256).ok_or_else(|| bad("sha256", "expected 64 hex digits"))?;
        let expires = self.check_common(&req.name, &req.scopes, &req.expires_at, now)?;
        if self.store.digest_exists(&digest).await? {
            return Err(ManageError::Conflict(
                "a key with this digest exists".into(),
            ));
        }
        let plan = self.account_plan(&req.account).await?;
        let id = key::random_base62(crate::core::scheme::ID_LEN).to_string();
        let rec = KeyRecord {
            id: id.clone(),
            name: req.name,
            prefix: s.key_prefix.clone(),
            account: req.account,
            scheme: s.name.clone(),
            scopes: req.scopes,
            hash: KeyHash::Sha256(digest),
            created_at: now,
            expires_at: expires,
            revoked_at: None,
            last_used_at: None,
            replaces: None,
            replaced_by: None,
            version: 1,
        };
        let view = KeyView::from(&rec);
        let ev = self.event(actor, "key.imported", &rec.account, Some(&id), now);
        self.write(
            Change::CreateKey {
                record: rec,
                max_active: self.max_keys(plan.as_deref()),
            },
            ev,
        )
        .await?;
        Ok(view)
    }

    pub async fn list_keys(&self, account: Option<&str>) -> Result<Vec<KeyView>, ManageError> {
        let mut keys = self.store.keys_of(account).await?;
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys.iter().map(KeyView::from).collect())
    }

    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<(), ManageError> {
        let now = unix_now();
        let k = self.store.get_key(id).await?.ok_or(ManageError::NotFound)?;
        let ev = self.event(actor, "key.revoked", &k.account, Some(id), now);
        self.write(
            Change::RevokeKey {
                id: id.to_string(),
                at: now,
            },
            ev,
        )
        .await
    }

    pub async fn rotate_key(
        &self,
        actor: &str,
        id: &str,
        grace_seconds: Option<u64>,
    ) -> Result<Created, ManageError> {
        let now = unix_now();
        if grace_seconds.is_some_and(|g| g > 90 * DAY as u64) {
            return Err(bad("gracePeriodSeconds", "at most 90 days"));
        }
        let old = self.store.get_key(id).await?.ok_or(ManageError::NotFound)?;
        if old.revoked_at.is_some() {
            return Err(ManageError::Conflict("the key is revoked".into()));
        }
        if old.expires_at.is_some_and(|e| e <= now) {
            return Err(ManageError::Conflict("the key has expired".into()));
        }
        let si = self.scheme(Some(&old.scheme))?;
        let (mut rec, nk) = self
            .new_record(
                si,
                &old.account,
                old.name.clone(),
                old.scopes.clone(),
                old.expires_at,
                now,
            )
            .await?;
        rec.replaces = Some(id.to_string());
        let mut ev = self.event(actor, "key.rotated", &old.account, Some(&rec.id), now);
        ev.detail = Some(json!({"replaces": id, "gracePeriodSeconds": grace_seconds.unwrap_or(0)}));
        let out = Self::created(&rec, &nk);
        self.write(
            Change::RotateKey {
                old_id: id.to_string(),
                record: rec,
                at: now,
                old_expires_at: grace_seconds.filter(|g| *g > 0).map(|g| now + g as i64),
            },
            ev,
        )
        .await?;
        Ok(out)
    }

    pub async fn set_account(
        &self,
        actor: &str,
        id: &str,
        plan: Option<Option<String>>,
        status: Option<&str>,
    ) -> Result<serde_json::Value, ManageError> {
        let now = unix_now();
        check_account("id", id)?;
        if let Some(Some(p)) = &plan
            && !self.settings.policy.plans.contains_key(p)
        {
            return Err(bad("plan", format!("unknown plan `{p}`")));
        }
        let status = match status {
            None => None,
            Some(s) => Some(
                AccountStatus::parse(s)
                    .ok_or_else(|| bad("status", "expected active, past_due or disabled"))?,
            ),
        };
        let mut acc = self.store.get_account(id).await?.unwrap_or(Account {
            id: id.to_string(),
            plan: None,
            status: AccountStatus::Active,
            updated_at: now,
            version: 0,
        });
        if let Some(p) = plan {
            acc.plan = p;
        }
        if let Some(s) = status {
            acc.status = s;
        }
        acc.updated_at = now;
        acc.version += 1;
        let mut ev = self.event(actor, "account.updated", id, None, now);
        ev.detail = Some(json!({"plan": acc.plan, "status": acc.status.as_str()}));
        let view = account_json(&acc);
        self.write(Change::PutAccount { account: acc }, ev).await?;
        Ok(view)
    }

    pub async fn get_account(&self, id: &str) -> Result<serde_json::Value, ManageError> {
        self.store
            .get_account(id)
            .await?
            .as_ref()
            .map(account_json)
            .ok_or(ManageError::NotFound)
    }

    /// Allowed requests per key and per UTC day.
    pub async fn usage(&self, account: &str) -> Result<serde_json::Value, ManageError> {
        let mut keys = self.store.keys_of(Some(account)).await?;
        if keys.is_empty() && self.store.get_account(account).await?.is_none() {
            return Err(ManageError::NotFound);
        }
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        let usage = self.store.usage(&ids).await?;
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                let per_day = usage.get(&k.id);
                let days: serde_json::Map<String, serde_json::Value> = per_day
                    .into_iter()
                    .flatten()
                    .map(|(d, n)| (rfc3339(d * DAY)[..10].to_string(), json!(n)))
                    .collect();
                let total: u64 = per_day.map_or(0, |d| d.values().sum());
                json!({"id": k.id, "name": k.name, "prefix": k.prefix,
                       "lastUsedAt": k.last_used_at.map(rfc3339), "total": total, "days": days})
            })
            .collect();
        Ok(json!({"account": account, "keys": keys}))
    }

    pub async fn audit(&self, account: Option<&str>) -> Result<serde_json::Value, ManageError> {
        let events: Vec<serde_json::Value> = self
            .store
            .audit(account)
            .await?
            .iter()
            .map(|e| {
                json!({"at": rfc3339(e.at), "actor": e.actor, "action": e.action,
                       "account": e.account, "keyId": e.key_id, "detail": e.detail})
            })
            .collect();
        Ok(json!({"events": events}))
    }
}

fn account_json(a: &Account) -> serde_json::Value {
    json!({"id": a.id, "plan": a.plan, "status": a.status.as_str(), "updatedAt": rfc3339(a.updated_at)})
}
