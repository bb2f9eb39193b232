//! Importing existing SHA-256 digests from another system: one key at a time
//! (`keygate keys import --sha256`), or in bulk from JSON Lines (`keygate keys import --file`,
//! `POST /api/keys/import`) for migrations.
//!
//! A bulk import checks every line first; a line that fails is refused with its number and
//! reason and writes nothing. The rest go in chunks (the store's [`Store::bulk_chunk`]), each one
//! atomic write (one Lua call on Redis) that takes only digests not yet present: a digest already in the store,
//! or earlier in the same file, is skipped, so running an import again is safe. A line over
//! its account's plan limit of active keys is refused. Reads are narrow (the chunk's digests,
//! the accounts it names), so a chunk costs the same on a table of any size.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::keys::check_meta;
use super::{Manager, check_account};
use crate::admin::error::{ManageError, bad};
use crate::admin::views::KeyView;
use crate::core::key::{self, KeyHash, KeyRecord};
use crate::core::meta::Meta;
use crate::service::unix_now;

#[cfg(doc)]
use crate::store::Store;
use crate::store::state::Change;

/// One imported key: `keygate keys import` and each line of a bulk import.
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
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// Longest line of a bulk import.
const MAX_LINE: usize = 16 * 1024;

/// What a bulk import did.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub imported: u64,
    /// Digests already present (in the store, or earlier in the file).
    pub skipped: u64,
    pub refused: Vec<RefusedLine>,
}

/// A line that wrote nothing, and why.
#[derive(Debug, Serialize)]
pub struct RefusedLine {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// A line that passed its checks.
struct Ready {
    line: usize,
    record: KeyRecord,
    digest: [u8; 32],
    /// The account's plan limit of active keys, if it has one.
    max: Option<u32>,
}

impl Manager {
    /// Checks one import and makes its record (not yet written).
    fn import_record(
        &self,
        req: ImportKey,
        now: i64,
    ) -> Result<([u8; 32], KeyRecord), ManageError> {
        check_account("account", &req.account)?;
        let si = self.scheme(Some(&req.scheme))?;
        let s = &self.settings.policy.schemes[si];
        if s.is_argon2() {
            return Err(bad("scheme", "only sha256 schemes take imported digests"));
        }
        let digest =
            key::from_hex32(&req.sha256).ok_or_else(|| bad("sha256", "expected 64 hex digits"))?;
        let expires = self.check_common(&req.name, &req.scopes, &req.expires_at, now)?;
        check_meta(req.meta.as_ref())?;
        let id = key::random_base62(crate::core::scheme::ID_LEN).to_string();
        let mut rec = KeyRecord::new(
            id,
            s.key_prefix.clone(),
            req.account,
            s.name.clone(),
            KeyHash::Sha256(digest),
            now,
        );
        rec.name = req.name;
        rec.scopes = req.scopes;
        rec.expires_at = expires;
        rec.meta = req.meta.filter(|m| !m.is_empty());
        Ok((digest, rec))
    }

    /// `keygate keys import --sha256`: one digest; an existing one is a conflict.
    pub async fn import_key(&self, actor: &str, req: ImportKey) -> Result<KeyView, ManageError> {
        let now = unix_now();
        let (digest, rec) = self.import_record(req, now)?;
        let max = self.max_keys(self.account_plan(&rec.account).await?.as_deref());
        if self.store.ids_of_digests(&[digest]).await?[0].is_some() {
            return Err(ManageError::Conflict(
                "a key with this digest exists".into(),
            ));
        }
        let view = KeyView::from(&rec);
        let ev = self.event(actor, "key.imported", &rec.account, Some(&rec.id), now);
        self.write(
            Change::CreateKey {
                record: rec,
                max_active: max,
            },
            ev,
        )
        .await?;
        Ok(view)
    }

    /// A bulk import of JSON Lines; `progress` is told the lines done so far and in all.
    pub async fn import_keys(
        &self,
        actor: &str,
        text: &str,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<ImportReport, ManageError> {
        let now = unix_now();
        let mut report = ImportReport::default();
        let mut seen = HashSet::new();
        let mut ready = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parsed = if line.len() > MAX_LINE {
                Err(format!("longer than {MAX_LINE} bytes"))
            } else if !line.starts_with('{') {
                // serde would fill the fields from an array by position.
                Err("not a JSON object".to_string())
            } else {
                serde_json::from_str::<ImportKey>(line).map_err(|e| format!("invalid JSON: {e}"))
            };
            let checked =
                parsed.and_then(|req| self.import_record(req, now).map_err(|e| e.to_string()));
            match checked {
                Ok((digest, record)) if seen.insert(digest) => ready.push(Ready {
                    line: line_no,
                    record,
                    digest,
                    max: None,
                }),
                Ok(_) => report.skipped += 1,
                Err(reason) => report.refused.push(RefusedLine {
                    line: line_no,
                    reason,
                }),
            }
        }
        // The accounts' plan limits, in one narrow read.
        let mut accounts: Vec<String> = ready.iter().map(|r| r.record.account.clone()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let found = self.store.get_accounts(&accounts).await?;
        let max: HashMap<String, Option<u32>> = accounts
            .into_iter()
            .zip(found)
            .map(|(a, f)| {
                let m = self.max_keys(f.and_then(|f| f.plan).as_deref());
                (a, m)
            })
            .collect();
        for r in &mut ready {
            r.max = max.get(&r.record.account).copied().flatten();
        }
        let mut active: HashMap<String, usize> = HashMap::new();
        let mut done = lines.len() - ready.len();
        progress(done, lines.len());
        // One narrow read for every digest of the file (a re-run finds them all here); a
        // digest written meanwhile by another writer is caught by the chunk's own write.
        let digests: Vec<[u8; 32]> = ready.iter().map(|r| r.digest).collect();
        let present = self.store.ids_of_digests(&digests).await?;
        let before = ready.len();
        let mut present = present.into_iter();
        ready.retain(|_| present.next().flatten().is_none());
        report.skipped += (before - ready.len()) as u64;
        done += before - ready.len();
        for chunk in ready.chunks(self.store.bulk_chunk()) {
            self.import_chunk(actor, chunk, now, &mut active, &mut report)
                .await?;
            done += chunk.len();
            progress(done, lines.len());
        }
        report.refused.sort_by_key(|r| r.line);
        Ok(report)
    }

    /// Writes one chunk: the lines whose digest is new and whose account has room. A write
    /// that another writer beat (a digest or a key taken meanwhile) is worked out again.
    async fn import_chunk(
        &self,
        actor: &str,
        chunk: &[Ready],
        now: i64,
        active: &mut HashMap<String, usize>,
        report: &mut ImportReport,
    ) -> Result<(), ManageError> {
        for attempt in 0..3 {
            // Checked for the whole file already; read again only after a lost race.
            let present = match attempt {
                0 => vec![None; chunk.len()],
                _ => {
                    let digests: Vec<[u8; 32]> = chunk.iter().map(|r| r.digest).collect();
                    self.store.ids_of_digests(&digests).await?
                }
            };
            let mut records = Vec::new();
            let mut max_active = BTreeMap::new();
            let mut adding: HashMap<&str, usize> = HashMap::new();
            let (mut skipped, mut refused) = (0, Vec::new());
            for (r, present) in chunk.iter().zip(&present) {
                if present.is_some() {
                    skipped += 1;
                    continue;
                }
                let account = r.record.account.as_str();
                if let Some(max) = r.max {
                    let have = match active.get(account) {
                        Some(n) => *n,
                        None => {
                            let keys = self.store.keys_of(Some(account)).await?;
                            let n = keys.iter().filter(|k| k.is_active(now)).count();
                            active.insert(account.to_string(), n);
                            n
                        }
                    };
                    let adds = adding.entry(account).or_default();
                    if have + *adds >= max as usize {
                        refused.push(RefusedLine {
                            line: r.line,
                            reason: format!("the account's plan allows {max} active keys"),
                        });
                        continue;
                    }
                    *adds += 1;
                    max_active.insert(account.to_string(), max);
                }
                records.push(r.record.clone());
            }
            let n = records.len() as u64;
            // The store writes one such event per account, naming its keys.
            let ev = self.event(actor, "key.imported", "", None, now);
            let write = match records.is_empty() {
                true => Ok(()),
                false => {
                    let change = Change::ImportKeys {
                        records,
                        max_active,
                    };
                    self.write(change, ev).await
                }
            };
            match write {
                Ok(()) => {
                    for (account, n) in adding {
                        *active.entry(account.to_string()).or_default() += n;
                    }
                    report.imported += n;
                    report.skipped += skipped;
                    report.refused.extend(refused);
                    return Ok(());
                }
                Err(ManageError::Conflict(_) | ManageError::KeyLimit { .. }) => {
                    // Another writer got in: read the chunk's state again.
                    active.clear();
                }
                Err(e) => return Err(e),
            }
        }
        Err(ManageError::Conflict(
            "the keys kept changing while this chunk was written: run the import again".into(),
        ))
    }
}
