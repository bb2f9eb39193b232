//! The compact snapshot of the key table that a store keeps beside its key records: what a
//! table entry needs of each record (not its name, prefix or dates), in a binary form of about
//! 80 bytes a SHA-256 key, grouped into [`BUCKETS`] buckets by id so that a load reads a few
//! dozen large values instead of a million small ones, and a write rewrites one bucket.
//!
//! A record: `u16` length of the rest, format byte, flags, `u64` version, then the id, account
//! and scheme (each a `u16` length and bytes), the expiry and revocation times (`i64`) when
//! set, the scopes (`u16` count, then each), the hash (32 bytes, or an Argon2 PHC string), and
//! the limits, credits and metadata as JSON when set. Integers are little-endian. A flag
//! marks a disabled key. Records written before a flag existed read as without it.

use crate::credits::Credits;
use crate::key::{HashRef, KeyHash, KeyRecord, sha256};
use crate::limit::RateLimit;
use crate::meta::Meta;

/// Buckets of a snapshot: a million keys make 15 a bucket, ten million 150.
pub const BUCKETS: u32 = 65_536;

const FORMAT: u8 = 1;
const REVOKED: u8 = 1;
const EXPIRES: u8 = 2;
const SCOPES: u8 = 4;
const ARGON2: u8 = 8;
const LIMITS: u8 = 16;
const CREDITS: u8 = 32;
const DISABLED: u8 = 64;
const META: u8 = 128;

/// The bucket of a key id; the same in every process and version (a snapshot outlives both).
pub fn bucket_of(id: &str) -> u32 {
    let d = sha256(id.as_bytes());
    u32::from(u16::from_le_bytes([d[0], d[1]])) % BUCKETS
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("snapshot record {0}")]
pub struct SnapshotError(&'static str);

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&s[..usize::from(n)]);
}

/// Appends `rec` to a bucket value.
pub fn encode(rec: &KeyRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, FORMAT]);
    let limits = rec
        .rate_limits
        .as_ref()
        .map(|l| serde_json::to_vec(l).unwrap_or_default());
    let credits = rec
        .credits
        .as_ref()
        .map(|c| serde_json::to_vec(c).unwrap_or_default());
    let meta = rec
        .meta
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| serde_json::to_vec(m).unwrap_or_default());
    let flag = |on: bool, f: u8| if on { f } else { 0 };
    out.push(
        flag(rec.revoked_at.is_some(), REVOKED)
            | flag(rec.expires_at.is_some(), EXPIRES)
            | flag(rec.scopes.is_some(), SCOPES)
            | flag(matches!(rec.hash, KeyHash::Argon2id(_)), ARGON2)
            | flag(limits.is_some(), LIMITS)
            | flag(credits.is_some(), CREDITS)
            | flag(!rec.enabled, DISABLED)
            | flag(meta.is_some(), META),
    );
    out.extend_from_slice(&rec.version.to_le_bytes());
    put_str(out, rec.id.as_bytes());
    put_str(out, rec.account.as_bytes());
    put_str(out, rec.scheme.as_bytes());
    for t in [rec.expires_at, rec.revoked_at].into_iter().flatten() {
        out.extend_from_slice(&t.to_le_bytes());
    }
    if let Some(s) = &rec.scopes {
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        for s in s {
            put_str(out, s.as_bytes());
        }
    }
    match &rec.hash {
        KeyHash::Sha256(d) => out.extend_from_slice(d),
        KeyHash::Argon2id(p) => put_str(out, p.as_bytes()),
    }
    for j in [limits, credits].into_iter().flatten() {
        put_str(out, &j);
    }
    if rec.credits.is_some() {
        out.extend_from_slice(&rec.credits_version.to_le_bytes());
    }
    if let Some(m) = &meta {
        put_str(out, m);
    }
    let len = u16::try_from(out.len() - start - 2).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&len.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.0.len() < n {
            return Err(SnapshotError("is cut short"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn str(&mut self) -> Result<&'a str, SnapshotError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| SnapshotError("is not UTF-8"))
    }
}

/// One record of a bucket, borrowed from it: what a table entry is made of, without an
/// allocation for its strings.
#[derive(Debug, Clone, PartialEq)]
pub struct View<'a> {
    pub id: &'a str,
    pub account: &'a str,
    pub scheme: &'a str,
    pub scopes: Option<Vec<&'a str>>,
    pub hash: HashRef<'a>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub version: u64,
    pub rate_limits: Option<Vec<RateLimit>>,
    pub credits: Option<(Credits, u64)>,
    pub disabled: bool,
    pub meta: Option<Meta>,
}

impl View<'_> {
    /// The record this view is of, as a snapshot keeps it.
    pub fn to_record(&self) -> KeyRecord {
        KeyRecord {
            id: self.id.into(),
            name: None,
            prefix: String::new(),
            account: self.account.into(),
            scheme: self.scheme.into(),
            scopes: self
                .scopes
                .as_ref()
                .map(|v| v.iter().map(|s| s.to_string()).collect()),
            hash: match self.hash {
                HashRef::Sha256(d) => KeyHash::Sha256(*d),
                HashRef::Argon2id(p) => KeyHash::Argon2id(p.into()),
            },
            created_at: 0,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: None,
            replaces: None,
            replaced_by: None,
            rate_limits: self.rate_limits.clone(),
            credits: self.credits.as_ref().map(|c| c.0.clone()),
            credits_version: self.credits.as_ref().map_or(0, |c| c.1),
            enabled: !self.disabled,
            meta: self.meta.clone(),
            version: self.version,
        }
    }
}

fn decode_one<'a>(r: &mut Reader<'a>) -> Result<View<'a>, SnapshotError> {
    if r.take(1)?[0] != FORMAT {
        return Err(SnapshotError("has an unknown format"));
    }
    let flags = r.take(1)?[0];
    let version = r.u64()?;
    let (id, account, scheme) = (r.str()?, r.str()?, r.str()?);
    let mut time = |f| -> Result<Option<i64>, SnapshotError> {
        Ok(if flags & f != 0 {
            Some(r.u64()? as i64)
        } else {
            None
        })
    };
    let (expires_at, revoked_at) = (time(EXPIRES)?, time(REVOKED)?);
    let scopes = if flags & SCOPES != 0 {
        let n = r.u16()?;
        Some((0..n).map(|_| r.str()).collect::<Result<Vec<_>, _>>()?)
    } else {
        None
    };
    let hash = if flags & ARGON2 != 0 {
        HashRef::Argon2id(r.str()?)
    } else {
        let d: &[u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| SnapshotError("is cut short"))?;
        HashRef::Sha256(d)
    };
    let rate_limits = match flags & LIMITS {
        0 => None,
        _ => Some(serde_json::from_slice(r.bytes()?).map_err(|_| SnapshotError("has bad limits"))?),
    };
    let credits = match flags & CREDITS {
        0 => None,
        _ => {
            let c =
                serde_json::from_slice(r.bytes()?).map_err(|_| SnapshotError("has bad credits"))?;
            Some((c, r.u64()?))
        }
    };
    let meta = match flags & META {
        0 => None,
        _ => Some(serde_json::from_slice(r.bytes()?).map_err(|_| SnapshotError("has bad meta"))?),
    };
    Ok(View {
        id,
        account,
        scheme,
        scopes,
        hash,
        expires_at,
        revoked_at,
        version,
        rate_limits,
        credits,
        disabled: flags & DISABLED != 0,
        meta,
    })
}

/// The records of a bucket value, in order, borrowed from it.
pub fn views(bucket: &[u8]) -> impl Iterator<Item = Result<View<'_>, SnapshotError>> + '_ {
    let mut r = Reader(bucket);
    std::iter::from_fn(move || {
        if r.0.is_empty() {
            return None;
        }
        let one = r.bytes().and_then(|b| decode_one(&mut Reader(b)));
        if one.is_err() {
            r.0 = &[];
        }
        Some(one)
    })
}

/// The records of a bucket value, in order.
pub fn decode(bucket: &[u8]) -> impl Iterator<Item = Result<KeyRecord, SnapshotError>> + '_ {
    views(bucket).map(|v| v.map(|v| v.to_record()))
}

/// A bucket value with `recs` put in: each replaces the record with its id unless that one is
/// newer, or is added. Records are kept sorted by id, so a bucket's value depends only on
/// what it holds.
pub fn merge<'r>(
    bucket: &[u8],
    recs: impl IntoIterator<Item = &'r KeyRecord>,
) -> Result<Vec<u8>, SnapshotError> {
    let mut all: Vec<KeyRecord> = decode(bucket).collect::<Result<_, _>>()?;
    for rec in recs {
        match all.iter_mut().find(|r| r.id == rec.id) {
            Some(r) if r.version > rec.version => {}
            Some(r) => *r = rec.clone(),
            None => all.push(rec.clone()),
        }
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = Vec::with_capacity(bucket.len() + 96);
    for r in &all {
        encode(r, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
