//! Key operations: create, update, list, revoke, rotate.

use serde::Deserialize;
use serde_json::json;

use super::{Manager, check_account};
use crate::admin::error::{ManageError, bad};
use crate::admin::views::{Created, KeyList, KeyView};
use crate::core::credits;
use crate::core::credits::Credits;
use crate::core::key::KeyRecord;
use crate::core::limit::{RateLimit, check_limits};
use crate::core::meta::{self, Meta};
use crate::service::unix_now;
use crate::store::state::{Change, CreditLease, DAY, KeyUpdate};

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
    /// In place of the plan's limits; `[]`: none.
    #[serde(default)]
    pub rate_limits: Option<Vec<RateLimit>>,
    #[serde(default)]
    pub credits: Option<Credits>,
    /// Forwarded upstream under `identity_headers.meta_prefix`.
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// `PATCH /api/keys/{id}` and `keygate keys update`: absent fields are kept, `null` clears.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub scopes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limits: Option<Option<Vec<RateLimit>>>,
    #[serde(default, deserialize_with = "present")]
    pub credits: Option<Option<Credits>>,
    /// `false` refuses the key (401 `disabled`) until it is `true` again; `null` is `true`.
    #[serde(default, deserialize_with = "present")]
    pub enabled: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    pub meta: Option<Option<Meta>>,
}

/// A field that was sent, `null` or not.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Most credits a key may hold or be refilled to.
const MAX_CREDITS: u64 = 1 << 50;

pub(super) fn check_meta(m: Option<&Meta>) -> Result<(), ManageError> {
    match m.map(meta::check) {
        Some(Err((k, why))) if k.is_empty() => Err(bad("meta", why.to_string())),
        Some(Err((k, why))) => Err(bad("meta", format!("`{k}`: {why}"))),
        _ => Ok(()),
    }
}

fn check_budgets(
    limits: Option<&[RateLimit]>,
    credits: Option<&Credits>,
) -> Result<(), ManageError> {
    if let Some(l) = limits {
        check_limits(l).map_err(|(at, why)| bad("rateLimits", format!("{at}: {why}")))?;
    }
    if let Some(c) = credits {
        if c.balance_of.is_some() {
            return Err(bad("credits", "balanceOf: set by rotation only"));
        }
        if c.remaining > MAX_CREDITS {
            return Err(bad("credits", format!("remaining: at most {MAX_CREDITS}")));
        }
        if let Some(r) = &c.refill
            && !(1..=MAX_CREDITS).contains(&r.amount)
        {
            return Err(bad("credits", format!("refill.amount: 1 to {MAX_CREDITS}")));
        }
    }
    Ok(())
}

impl Manager {
    pub async fn create_key(&self, actor: &str, req: CreateKey) -> Result<Created, ManageError> {
        let now = unix_now();
        check_account("account", &req.account)?;
        let si = self.scheme(req.scheme.as_deref())?;
        let expires = self.check_common(&req.name, &req.scopes, &req.expires_at, now)?;
        check_budgets(req.rate_limits.as_deref(), req.credits.as_ref())?;
        check_meta(req.meta.as_ref())?;
        let plan = self.account_plan(&req.account).await?;
        let (mut rec, nk) = self
            .new_record(si, &req.account, req.name, req.scopes, expires, now)
            .await?;
        rec.rate_limits = req.rate_limits;
        rec.credits = req.credits;
        rec.meta = req.meta.filter(|m| !m.is_empty());
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

    pub async fn update_key(
        &self,
        actor: &str,
        id: &str,
        req: UpdateKey,
    ) -> Result<KeyView, ManageError> {
        let now = unix_now();
        let none = None;
        let name = req.name.as_ref().unwrap_or(&none);
        let scopes = req.scopes.as_ref().map_or(&None, |s| s);
        self.check_common(name, scopes, &None, now)?;
        let expires_at = match req.expires_at {
            None => None,
            Some(None) => Some(None),
            Some(t) => Some(self.check_common(&None, &None, &t, now)?),
        };
        check_budgets(
            req.rate_limits.as_ref().and_then(|l| l.as_deref()),
            req.credits.as_ref().and_then(|c| c.as_ref()),
        )?;
        check_meta(req.meta.as_ref().and_then(|m| m.as_ref()))?;
        let k = self.store.get_key(id).await?.ok_or(ManageError::NotFound)?;
        let mut ev = self.event(actor, "key.updated", &k.account, Some(id), now);
        let update = KeyUpdate {
            name: req.name,
            scopes: req.scopes,
            expires_at,
            rate_limits: req.rate_limits,
            credits: req.credits,
            enabled: req.enabled.map(|e| e.unwrap_or(true)),
            meta: req.meta.map(|m| m.filter(|m| !m.is_empty())),
        };
        ev.detail = Some(changed(&update));
        let credits_set = matches!(update.credits, Some(Some(_)));
        self.write(
            Change::UpdateKey {
                id: id.to_string(),
                update,
            },
            ev,
        )
        .await?;
        let k = self.store.get_key(id).await?.ok_or(ManageError::NotFound)?;
        if credits_set && let Some(c) = &k.credits {
            self.start_balance(&k, c, now).await;
        }
        let mut views = [KeyView::from(&k)];
        self.live_credits(std::slice::from_ref(&k), &mut views)
            .await?;
        let [view] = views;
        Ok(view)
    }

    /// Starts the balance of credits just set on `k` in the store, at their version. Otherwise
    /// it would start at the first request of `k` itself, and a key made by rotating `k`,
    /// which spends the same balance under the setting it was made with, would find the old
    /// balance until then. If the store cannot be reached now, that first request still does.
    async fn start_balance(&self, k: &KeyRecord, c: &Credits, now: i64) {
        let lease = CreditLease {
            id: c.balance_id(&k.id).into(),
            credits: c.clone(),
            version: k.credits_version,
            period: credits::period(c, now),
            now,
        };
        if let Err(e) = self.store.take_credits(&lease, 0).await {
            tracing::warn!(error = %e, "cannot start the new credit balance now; its first use will");
        }
    }

    /// Shows the credits left now (the store's balance; credits leased by instances and not
    /// yet spent count as spent until given back) in place of the amount set.
    async fn live_credits(
        &self,
        keys: &[KeyRecord],
        views: &mut [KeyView],
    ) -> Result<(), ManageError> {
        let with: Vec<usize> = (0..keys.len())
            .filter(|&i| keys[i].credits.is_some())
            .collect();
        let ids: Vec<&str> = (with.iter())
            .filter_map(|&i| Some(keys[i].credits.as_ref()?.balance_id(&keys[i].id)))
            .collect();
        let balances = self.store.credit_balances(&ids).await?;
        let now = unix_now();
        for (&i, stored) in with.iter().zip(balances) {
            if let (Some(c), Some(v)) = (&keys[i].credits, views[i].credits.as_mut()) {
                v.remaining = credits::current(c, keys[i].credits_version, stored, now).remaining;
            }
        }
        Ok(())
    }

    pub async fn list_keys(&self, account: Option<&str>) -> Result<KeyList, ManageError> {
        let mut keys = self.store.keys_of(account).await?;
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
        self.live_credits(&keys, &mut views).await?;
        Ok(KeyList { keys: views })
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
        rec.rate_limits = old.rate_limits.clone();
        // The replacement spends the same balance (the first key's of a chain of rotations):
        // while both work, they share what is left, and rotating never refills it.
        rec.credits = old.credits.as_ref().map(|c| Credits {
            balance_of: Some(c.balance_id(&old.id).to_string()),
            ..c.clone()
        });
        rec.credits_version = old.credits_version;
        rec.meta = old.meta.clone();
        // A disabled key's replacement is disabled too: rotating is not a way to enable it.
        rec.enabled = old.enabled;
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
}

/// What an update sets, for its audit event: each field it names with its new value (`null`
/// for cleared). A key's fields hold no secret.
fn changed(u: &KeyUpdate) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(v) = &u.name {
        put("name", json!(v));
    }
    if let Some(v) = &u.scopes {
        put("scopes", json!(v));
    }
    if let Some(v) = &u.expires_at {
        put("expiresAt", json!(v.map(crate::admin::views::rfc3339)));
    }
    if let Some(v) = &u.rate_limits {
        put("rateLimits", json!(v));
    }
    if let Some(v) = &u.credits {
        put("credits", json!(v));
    }
    if let Some(v) = u.enabled {
        put("enabled", json!(v));
    }
    if let Some(v) = &u.meta {
        put("meta", json!(v));
    }
    json!({ "changed": m })
}
