//! Following the change log into the replica: the table is loaded, then every change entry
//! is applied in order with a blocking read; a revision gap (the log was trimmed past this
//! instance's position while it was away) or a store that went back in time reloads the whole
//! table. While Redis is unreachable the table stays as it is and reconnects back off.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::StreamReadReply;

use super::{ChangeData, RedisStore, bad_json, err};
use crate::replica::Replica;
use crate::{StoreError, StoreStats};

impl RedisStore {
    /// Follows the change log into `replica` until `shutdown`: loads the table, then applies
    /// every change in order. A gap in revisions (the log was trimmed past our position while
    /// we were away) or a store that went back in time triggers a full reload and an atomic
    /// swap. While Redis is unreachable the table stays as it is and reconnects back off
    /// (100 ms doubling to 5 s, each pause jittered by ±50 %).
    pub async fn follow(
        &self,
        replica: Arc<Replica>,
        stats: Arc<StoreStats>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // Revision and change-log position the table holds; `None` before the first load.
        let mut at: Option<(u64, String)> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let session = async {
                let mut con = self.read_connection().await?;
                let rev: Option<u64> = con.get(self.k("rev")).await.map_err(err)?;
                if at.as_ref().is_none_or(|(r, _)| rev.unwrap_or(0) < *r) {
                    at = Some(self.full_load(&mut con, &replica, &stats).await?);
                }
                stats.set_connected(true);
                while let Some((cur, last_id)) = at.as_mut() {
                    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(1000)
                        .arg("BLOCK")
                        .arg(1000)
                        .arg("STREAMS")
                        .arg(self.k("changes"))
                        .arg(&*last_id)
                        .query_async(&mut con)
                        .await
                        .map_err(err)?;
                    let mut data = ChangeData::default();
                    let mut reload = None;
                    for e in reply
                        .iter()
                        .flat_map(|r| r.keys.iter())
                        .flat_map(|k| k.ids.iter())
                    {
                        // After the table's position every entry is the next revision. One at
                        // or below it means the store's history went back (a failover that lost
                        // writes, then new ones); one past it, that the log was trimmed past
                        // this position. Either way the entries no longer follow the table.
                        let rev: u64 = e.get("rev").unwrap_or(0);
                        if rev != *cur + 1 {
                            reload = Some(if rev <= *cur {
                                "the store's history went back"
                            } else {
                                "the change log was trimmed past this instance's position"
                            });
                            break;
                        }
                        let js: String = e.get("data").unwrap_or_default();
                        match serde_json::from_str::<ChangeData>(&js) {
                            Ok(d) => {
                                data.keys.extend(d.keys);
                                data.accounts.extend(d.accounts);
                            }
                            Err(e) => {
                                // Never skipped (it may be a revocation): the whole table is
                                // read again instead, and that fails loudly if the record does.
                                tracing::error!(error = %bad_json("redis change entry", e), "a change entry does not parse");
                                reload = Some("a change entry does not parse");
                                break;
                            }
                        }
                        *cur = rev;
                        *last_id = e.id.clone();
                    }
                    if data.keys.is_empty() && data.accounts.is_empty() {
                        replica.confirm();
                    } else {
                        // Entries apply in order; later versions of a record win.
                        replica.apply_changes(*cur, &data.keys, &data.accounts);
                    }
                    if let Some(why) = reload {
                        tracing::warn!("{why}; reloading the whole table");
                        at = Some(self.full_load(&mut con, &replica, &stats).await?);
                    }
                    // Backed off afresh only once the table is in step again: a session that
                    // keeps failing (a reload that cannot read a record) keeps doubling its
                    // pause instead of reading the whole table ten times a second.
                    backoff = Duration::from_millis(100);
                }
                Ok::<(), StoreError>(())
            };
            tokio::select! {
                _ = &mut shutdown => return,
                r = session => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "redis unavailable; deciding from the current table");
                    }
                }
            }
            stats.set_connected(false);
            stats.reconnected();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(super::load::jittered(backoff)) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
