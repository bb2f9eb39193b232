//! The narrow reads behind management calls: one key, one account, an account's keys (its
//! key set, then the records), a digest, usage counts, the audit stream. None reads the whole
//! table.

use keygate_core::key::{Account, KeyRecord};
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;

use super::{RedisStore, bad_json, err};
use crate::StoreError;
use crate::state::AuditEvent;

impl RedisStore {
    pub(super) async fn get_key_once(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let mut con = self.conn().await?;
        let (js, last): (Option<String>, Option<i64>) = redis::pipe()
            .hget(self.k("keys"), id)
            .hget(self.k("last_used"), id)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        js.map(|js| {
            let mut k = Self::parse_key(&js)?;
            k.last_used_at = last;
            Ok(k)
        })
        .transpose()
    }

    pub(super) async fn get_account_once(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let mut con = self.conn().await?;
        let js: Option<String> = con.hget(self.k("accounts"), id).await.map_err(err)?;
        js.map(|js| serde_json::from_str(&js).map_err(|e| bad_json("redis account", e)))
            .transpose()
    }

    pub(super) async fn get_accounts_once(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<Account>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.conn().await?;
        let mut pipe = redis::pipe();
        for part in ids.chunks(10_000) {
            pipe.cmd("HMGET").arg(self.k("accounts")).arg(part);
        }
        let parts: Vec<Vec<Option<String>>> = pipe.query_async(&mut con).await.map_err(err)?;
        parts
            .into_iter()
            .flatten()
            .map(|js| {
                js.map(|js| serde_json::from_str(&js).map_err(|e| bad_json("redis account", e)))
                    .transpose()
            })
            .collect()
    }

    /// Keys of one account, or every key.
    pub(super) async fn keys_of_once(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let mut con = self.conn().await?;
        let ids: Vec<String> = match account {
            Some(a) => con
                .smembers(self.k(&format!("acct:{a}")))
                .await
                .map_err(err)?,
            None => con.hkeys(self.k("keys")).await.map_err(err)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (recs, last): (Vec<Option<String>>, Vec<Option<i64>>) = redis::pipe()
            .cmd("HMGET")
            .arg(self.k("keys"))
            .arg(&ids)
            .cmd("HMGET")
            .arg(self.k("last_used"))
            .arg(&ids)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(ids.len());
        for (js, last) in recs.into_iter().zip(last) {
            if let Some(js) = js {
                let mut k = Self::parse_key(&js)?;
                k.last_used_at = last;
                out.push(k);
            }
        }
        Ok(out)
    }

    /// The key id under each digest (lowercase hex), `None` where there is none.
    pub(super) async fn ids_of_digests_once(
        &self,
        hexes: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        if hexes.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.conn().await?;
        // Pipelined in parts, so that no one reply is huge.
        let mut pipe = redis::pipe();
        for part in hexes.chunks(10_000) {
            pipe.cmd("HMGET").arg(self.k("digests")).arg(part);
        }
        let parts: Vec<Vec<Option<String>>> = pipe.query_async(&mut con).await.map_err(err)?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// The records of these ids that exist.
    pub(super) async fn get_keys_once(&self, ids: &[&str]) -> Result<Vec<KeyRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.conn().await?;
        let recs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.k("keys"))
            .arg(ids)
            .query_async(&mut con)
            .await
            .map_err(err)?;
        recs.into_iter()
            .flatten()
            .map(|js| Self::parse_key(&js))
            .collect()
    }

    pub(super) async fn audit_once(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut con = self.conn().await?;
        let r: StreamRangeReply = con.xrange_all(self.k("audit")).await.map_err(err)?;
        let mut out = Vec::new();
        for e in r.ids {
            let js: String = e.get("data").unwrap_or_default();
            let ev: AuditEvent =
                serde_json::from_str(&js).map_err(|e| bad_json("redis audit event", e))?;
            if account.is_none_or(|a| ev.account == a) {
                out.push(ev);
            }
        }
        Ok(out)
    }
}
