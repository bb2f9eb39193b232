//! One key as the table holds it: 72 bytes inline in the table's arrays, with what is shared
//! between keys (the account and scope list) behind one pointer and what only some keys have
//! (an Argon2 hash, limits, credits, metadata, a long id) behind another.

use std::sync::{Arc, OnceLock};

use crate::credits::Credits;
use crate::key::{self, HashRef, KeyRecord};
use crate::limit::RateLimit;
use crate::meta::Meta;

/// A key's scope restriction.
#[derive(Debug, PartialEq, Eq)]
pub struct Scopes {
    pub list: Box<[Box<str>]>,
    /// Joined by spaces, for the identity header.
    pub joined: Box<str>,
}

/// Who a key belongs to and what it may reach: shared by every key of an account with the
/// same scope list, so a million keys over a thousand accounts hold a thousand of these.
#[derive(Debug, PartialEq, Eq)]
pub struct Owner {
    pub account: Box<str>,
    /// `None`: every route.
    pub scopes: Option<Scopes>,
}

impl Owner {
    pub fn new<S: AsRef<str>>(account: &str, scopes: Option<&[S]>) -> Owner {
        Owner {
            account: account.into(),
            scopes: scopes.map(|v| Scopes {
                list: v.iter().map(|s| s.as_ref().into()).collect(),
                joined: v
                    .iter()
                    .map(AsRef::as_ref)
                    .collect::<Vec<&str>>()
                    .join(" ")
                    .into(),
            }),
        }
    }

    /// Whether this owner is the one a key of `account` with `scopes` needs.
    pub fn is_for<S: AsRef<str>>(&self, account: &str, scopes: Option<&[S]>) -> bool {
        *self.account == *account
            && match (&self.scopes, scopes) {
                (None, None) => true,
                (Some(s), Some(v)) => s.list.iter().map(|s| &**s).eq(v.iter().map(AsRef::as_ref)),
                _ => false,
            }
    }
}

/// The parts of a [`KeyEntry`] most keys lack. Shared by the snapshots that hold the same
/// record, so a verification remembered in one is seen by the next.
#[derive(Debug, Default)]
struct Extra {
    /// An id too long to be kept inline.
    long_id: Option<Box<str>>,
    /// The Argon2id PHC string.
    phc: Option<Box<str>>,
    /// Keyed digest of the key that last verified against `phc`.
    verified: Option<OnceLock<[u8; 32]>>,
    limits: Option<Arc<[RateLimit]>>,
    credits: Option<(Credits, u64)>,
    meta: Option<Meta>,
}

/// Ids up to this long are kept in the entry (keygate's own are 12 bytes).
const INLINE_ID: usize = 13;
const REVOKED: u8 = 1;
const ARGON2: u8 = 2;
const DISABLED: u8 = 4;
/// Expiry value for a key that never expires.
const NEVER: u32 = u32::MAX;

/// One key, ready for decisions.
pub struct KeyEntry {
    /// SHA-256 keys: the digest; Argon2 keys: zero.
    digest: [u8; 32],
    id: [u8; INLINE_ID],
    /// `u8::MAX`: the id is in `extra`.
    id_len: u8,
    scheme: u8,
    flags: u8,
    owner: Arc<Owner>,
    extra: Option<Arc<Extra>>,
    /// Record versions count the changes of one record: 32 bits outlast any key.
    version: u32,
    /// Unix seconds, [`NEVER`] for none; an expiry past 2106 is kept as 2106.
    expires_at: u32,
}

impl Clone for KeyEntry {
    fn clone(&self) -> Self {
        KeyEntry {
            owner: Arc::clone(&self.owner),
            extra: self.extra.clone(),
            ..*self
        }
    }
}

/// What an entry is made of, from a stored record or from a snapshot's view of one.
pub struct Parts<'a> {
    pub id: &'a str,
    pub hash: HashRef<'a>,
    pub revoked: bool,
    pub disabled: bool,
    pub expires_at: Option<i64>,
    pub version: u64,
    pub limits: Option<&'a [RateLimit]>,
    pub credits: Option<(&'a Credits, u64)>,
    pub meta: Option<&'a Meta>,
}

impl<'a> Parts<'a> {
    pub fn of(rec: &'a KeyRecord) -> Parts<'a> {
        Parts {
            id: &rec.id,
            hash: HashRef::of(&rec.hash),
            revoked: rec.revoked_at.is_some(),
            disabled: !rec.enabled,
            expires_at: rec.expires_at,
            version: rec.version,
            limits: rec.rate_limits.as_deref(),
            credits: rec.credits.as_ref().map(|c| (c, rec.credits_version)),
            meta: rec.meta.as_ref().filter(|m| !m.is_empty()),
        }
    }
}

impl KeyEntry {
    /// The entry made of `p` under scheme number `scheme`, owned by `owner`.
    pub(super) fn new(p: &Parts<'_>, scheme: u8, owner: Arc<Owner>) -> KeyEntry {
        let (digest, phc) = match p.hash {
            HashRef::Sha256(d) => (*d, None),
            HashRef::Argon2id(phc) => ([0; 32], Some(Box::<str>::from(phc))),
        };
        let long = p.id.len() > INLINE_ID;
        let mut id = [0; INLINE_ID];
        if !long {
            id[..p.id.len()].copy_from_slice(p.id.as_bytes());
        }
        let argon2 = phc.is_some();
        let meta = p.meta.filter(|m| !m.is_empty());
        let needs_extra =
            long || argon2 || p.limits.is_some() || p.credits.is_some() || meta.is_some();
        let extra = needs_extra.then(|| {
            Arc::new(Extra {
                long_id: long.then(|| p.id.into()),
                phc,
                verified: argon2.then(OnceLock::new),
                limits: p.limits.map(Arc::from),
                credits: p.credits.map(|(c, v)| (c.clone(), v)),
                meta: meta.cloned(),
            })
        });
        KeyEntry {
            digest,
            id,
            id_len: if long { u8::MAX } else { p.id.len() as u8 },
            scheme,
            flags: if p.revoked { REVOKED } else { 0 }
                | if argon2 { ARGON2 } else { 0 }
                | if p.disabled { DISABLED } else { 0 },
            owner,
            extra,
            version: u32::try_from(p.version).unwrap_or(u32::MAX),
            expires_at: p
                .expires_at
                .map_or(NEVER, |t| t.clamp(0, i64::from(NEVER - 1)) as u32),
        }
    }

    pub fn id(&self) -> &str {
        if self.id_len == u8::MAX {
            return self
                .extra
                .as_ref()
                .and_then(|x| x.long_id.as_deref())
                .unwrap_or_default();
        }
        // Copied from a `&str` whole, so always valid UTF-8.
        std::str::from_utf8(&self.id[..usize::from(self.id_len)]).unwrap_or_default()
    }

    pub fn account(&self) -> &str {
        &self.owner.account
    }

    /// `None`: every route.
    pub fn scopes(&self) -> Option<&Scopes> {
        self.owner.scopes.as_ref()
    }

    pub(super) fn owner(&self) -> &Arc<Owner> {
        &self.owner
    }

    pub fn hash(&self) -> HashRef<'_> {
        match self.extra.as_ref().and_then(|x| x.phc.as_deref()) {
            Some(p) if self.flags & ARGON2 != 0 => HashRef::Argon2id(p),
            _ => HashRef::Sha256(&self.digest),
        }
    }

    /// The digest of a SHA-256 key.
    pub fn digest(&self) -> Option<&[u8; 32]> {
        (self.flags & ARGON2 == 0).then_some(&self.digest)
    }

    pub fn is_argon2(&self) -> bool {
        self.flags & ARGON2 != 0
    }

    /// Verifies a presented key against this key's hash (constant time for SHA-256).
    pub fn verify(&self, presented: &[u8]) -> bool {
        key::verify(self.hash(), presented)
    }

    pub fn revoked(&self) -> bool {
        self.flags & REVOKED != 0
    }

    /// Disabled: refused until enabled again.
    pub fn disabled(&self) -> bool {
        self.flags & DISABLED != 0
    }

    /// The key's metadata, for the upstream; `None` when it has none.
    pub fn meta(&self) -> Option<&Meta> {
        self.extra.as_ref()?.meta.as_ref()
    }

    pub fn version(&self) -> u64 {
        u64::from(self.version)
    }

    /// The key's own limits, in place of its plan's.
    pub fn limits(&self) -> Option<&Arc<[RateLimit]>> {
        self.extra.as_ref()?.limits.as_ref()
    }

    /// The key's credits as last set, and the record version that set them.
    pub fn credits(&self) -> Option<&(Credits, u64)> {
        self.extra.as_ref()?.credits.as_ref()
    }

    /// Index of the key's scheme in the configured schemes.
    pub fn scheme(&self) -> usize {
        usize::from(self.scheme)
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at != NEVER && i64::from(self.expires_at) <= now
    }

    /// The keyed digest of the key that last verified (Argon2 entries).
    pub fn verified(&self) -> Option<&[u8; 32]> {
        self.extra.as_ref()?.verified.as_ref()?.get()
    }

    /// Remembers a successful verification; the first one wins, later ones are the same key.
    pub fn set_verified(&self, digest: [u8; 32]) {
        if let Some(v) = self.extra.as_ref().and_then(|x| x.verified.as_ref()) {
            let _ = v.set(digest);
        }
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id())
            .field("account", &self.account())
            .field("scheme", &self.scheme)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
