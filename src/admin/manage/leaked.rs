//! Leaked keys: a report in the shape of a secret-scanning alert (GitHub's partner format),
//! each token checked against the store. A token that is a live key is a true positive and is
//! revoked at once, audited as `key.leaked` with where it was found; anything else is a false
//! positive. The answer never says more about a false positive than that.

use serde::{Deserialize, Serialize};

use super::Manager;
use crate::admin::error::{ManageError, bad};
use crate::core::key::{self, HashRef, KeyRecord};
use crate::service::unix_now;
use crate::store::state::Change;

/// Most tokens in one report.
pub const MAX_TOKENS: usize = 1_000;

/// One token a scanner found.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakedToken {
    pub token: String,
    /// The scanner's name for the kind of token.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Where it was found.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

/// The verdict on one token, as a scanner expects it.
#[derive(Debug, Serialize)]
pub struct LeakVerdict {
    pub token_raw: String,
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: &'static str,
}

impl Manager {
    /// Checks each token; revokes and audits the true positives.
    pub async fn report_leaked(
        &self,
        actor: &str,
        tokens: Vec<LeakedToken>,
    ) -> Result<Vec<LeakVerdict>, ManageError> {
        if tokens.len() > MAX_TOKENS {
            return Err(bad("tokens", format!("at most {MAX_TOKENS} a report")));
        }
        let mut out = Vec::with_capacity(tokens.len());
        for t in tokens {
            let found = self.live_key_of(&t.token).await?;
            let label = match &found {
                Some(k) => {
                    self.revoke_leaked(actor, k, &t).await?;
                    "true_positive"
                }
                None => "false_positive",
            };
            let token_type = t
                .kind
                .clone()
                .or_else(|| found.map(|k| k.scheme))
                .unwrap_or_default();
            out.push(LeakVerdict {
                token_raw: t.token,
                token_type,
                label,
            });
        }
        Ok(out)
    }

    /// The key record `token` is, if it is a key of this store (revoked ones too: a leak of a
    /// revoked key is still that key).
    async fn live_key_of(&self, token: &str) -> Result<Option<KeyRecord>, ManageError> {
        let bytes = token.trim().as_bytes();
        let schemes = &self.settings.policy.schemes;
        let Some(scheme) = schemes
            .iter()
            .find(|s| bytes.starts_with(s.key_prefix.as_bytes()) && s.shape(bytes).is_some())
        else {
            return Ok(None);
        };
        let rec = if scheme.is_argon2() {
            let id = std::str::from_utf8(scheme.shape(bytes).unwrap_or_default()).unwrap_or("");
            self.store.get_key(id).await?
        } else {
            let digest = key::sha256(bytes);
            match self.store.ids_of_digests(&[digest]).await?.pop().flatten() {
                Some(id) => self.store.get_key(&id).await?,
                None => None,
            }
        };
        let Some(rec) = rec.filter(|r| r.scheme == scheme.name) else {
            return Ok(None);
        };
        // Argon2 keys are found by their public id: the secret must verify too.
        let hash = rec.hash.clone();
        let presented = zeroize::Zeroizing::new(bytes.to_vec());
        let ok = tokio::task::spawn_blocking(move || key::verify(HashRef::of(&hash), &presented))
            .await
            .map_err(|_| ManageError::Internal("verification failed"))?;
        Ok(ok.then_some(rec))
    }

    async fn revoke_leaked(
        &self,
        actor: &str,
        k: &KeyRecord,
        t: &LeakedToken,
    ) -> Result<(), ManageError> {
        if k.revoked_at.is_some() {
            return Ok(());
        }
        let now = unix_now();
        let mut ev = self.event(actor, "key.leaked", &k.account, Some(&k.id), now);
        ev.detail = Some(serde_json::json!({
            "url": t.url, "source": t.source, "type": t.kind,
        }));
        let change = Change::RevokeKey {
            id: k.id.clone(),
            at: now,
        };
        self.write(change, ev).await
    }
}
