//! Decoding one batch of a load, on a thread of its own: JSON key records, or a snapshot's
//! buckets straight into table entries.

use std::sync::Arc;

use keygate_core::key::KeyRecord;
use keygate_core::scheme::Scheme;
use keygate_core::snapshot;
use keygate_core::table::{KeyEntry, Maker, Table};

use super::ScanBatch;
use crate::StoreError;
use crate::redis::bad_json;

/// A [`Maker`] with what it needs: the schemes, and the table being replaced (for the
/// verifications it cached).
pub(in crate::redis) struct EntryMaker {
    pub maker: Maker,
    pub schemes: Arc<[Scheme]>,
    pub prev: Arc<Table>,
}

/// One batch, decoded.
pub(super) enum Decoded {
    Records(Vec<KeyRecord>),
    Entries(Vec<KeyEntry>, usize),
}

/// The records of one HSCAN reply: a snapshot's buckets (each bucket once per load, `seen`
/// remembers which) or JSON key records.
pub(super) fn decode_batch(
    items: ScanBatch,
    from_snapshot: bool,
    seen: &mut [bool],
    maker: Option<&mut EntryMaker>,
) -> Result<Decoded, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        path: "redis key table snapshot".into(),
        message,
    };
    let mut recs = Vec::with_capacity(items.len());
    let mut entries = Vec::new();
    let mut maker = maker.filter(|_| from_snapshot);
    for (field, value) in items {
        if !from_snapshot {
            recs.push(serde_json::from_slice(&value).map_err(|e| bad_json("redis key record", e))?);
            continue;
        }
        let b = std::str::from_utf8(&field)
            .ok()
            .and_then(|b| b.parse::<usize>().ok())
            .filter(|&b| b < seen.len())
            .ok_or_else(|| corrupt("a field is not a bucket number".into()))?;
        if std::mem::replace(&mut seen[b], true) {
            continue;
        }
        for v in snapshot::views(&value) {
            let v = v.map_err(|e| corrupt(e.to_string()))?;
            match maker.as_deref_mut() {
                Some(m) => entries.extend(m.maker.view(&m.schemes, &v, Some(&m.prev))),
                None => recs.push(v.to_record()),
            }
        }
    }
    Ok(match maker {
        Some(m) => Decoded::Entries(entries, std::mem::take(&mut m.maker.skipped)),
        None => Decoded::Records(recs),
    })
}
