//! Making entries: the scheme looked up by name, the owner interned (keys of one account and
//! scope list share one), the verification an unchanged Argon2 record had carried over. A
//! table holds one for its changes; a bulk load may run one on a thread of its own and hand
//! the table finished entries.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::Table;
use super::entry::{KeyEntry, Owner, Parts};
use crate::key::KeyRecord;
use crate::scheme::Scheme;
use crate::snapshot::View;

/// Owners already made, so keys of one account and scope list share one. A snapshot does
/// not carry them: a clone is empty, and a change reuses the owner of the entry it replaces.
#[derive(Default)]
pub struct Maker {
    owners: HashTable<Arc<Owner>>,
    hasher: DefaultHashBuilder,
    /// Records skipped because their scheme is not configured.
    pub skipped: usize,
}

impl Clone for Maker {
    fn clone(&self) -> Self {
        Maker::default()
    }
}

fn owner_hash<S: AsRef<str>>(h: &DefaultHashBuilder, account: &str, scopes: Option<&[S]>) -> u64 {
    let mut h = h.build_hasher();
    account.hash(&mut h);
    match scopes {
        None => h.write_u8(0),
        Some(v) => {
            h.write_u8(1);
            for s in v {
                s.as_ref().hash(&mut h);
            }
        }
    }
    h.finish()
}

impl Maker {
    fn owner<S: AsRef<str>>(
        &mut self,
        account: &str,
        scopes: Option<&[S]>,
        reuse: Option<&Arc<Owner>>,
    ) -> Arc<Owner> {
        if let Some(o) = reuse.filter(|o| o.is_for(account, scopes)) {
            return Arc::clone(o);
        }
        let h = owner_hash(&self.hasher, account, scopes);
        if let Some(o) = self.owners.find(h, |o| o.is_for(account, scopes)) {
            return Arc::clone(o);
        }
        let o = Arc::new(Owner::new(account, scopes));
        let hasher = &self.hasher;
        self.owners.insert_unique(h, Arc::clone(&o), |o| {
            let scopes: Option<Vec<&str>> = o
                .scopes
                .as_ref()
                .map(|s| s.list.iter().map(|s| &**s).collect());
            owner_hash(hasher, &o.account, scopes.as_deref())
        });
        o
    }

    #[allow(clippy::too_many_arguments)]
    fn make<S: AsRef<str>>(
        &mut self,
        schemes: &[Scheme],
        scheme: &str,
        account: &str,
        scopes: Option<&[S]>,
        parts: &Parts<'_>,
        reuse: Option<&Arc<Owner>>,
        prev: Option<&Table>,
    ) -> Option<KeyEntry> {
        let Some(scheme) = schemes
            .iter()
            .position(|s| s.name == scheme)
            .and_then(|i| u8::try_from(i).ok())
        else {
            self.skipped += 1;
            return None;
        };
        let new = KeyEntry::new(parts, scheme, self.owner(account, scopes, reuse));
        // Only Argon2 entries cache a verification: other records need no look in `prev`.
        if new.is_argon2()
            && let Some(o) = prev.and_then(|p| p.by_id(parts.id.as_bytes()))
            && o.version() == new.version()
            && o.hash() == new.hash()
            && let Some(d) = o.verified()
        {
            new.set_verified(*d);
        }
        Some(new)
    }

    /// The entry of a stored record; `reuse`: the owner of the entry it replaces.
    pub fn record(
        &mut self,
        schemes: &[Scheme],
        rec: &KeyRecord,
        reuse: Option<&Arc<Owner>>,
        prev: Option<&Table>,
    ) -> Option<KeyEntry> {
        let parts = Parts::of(rec);
        let scopes = rec.scopes.as_deref();
        self.make(
            schemes,
            &rec.scheme,
            &rec.account,
            scopes,
            &parts,
            reuse,
            prev,
        )
    }

    /// The entry of a snapshot's record.
    pub fn view(
        &mut self,
        schemes: &[Scheme],
        v: &View<'_>,
        prev: Option<&Table>,
    ) -> Option<KeyEntry> {
        let parts = Parts {
            id: v.id,
            hash: v.hash,
            revoked: v.revoked_at.is_some(),
            disabled: v.disabled,
            expires_at: v.expires_at,
            version: v.version,
            limits: v.rate_limits.as_deref(),
            credits: v.credits.as_ref().map(|(c, n)| (c, *n)),
            meta: v.meta.as_ref(),
        };
        self.make(
            schemes,
            v.scheme,
            v.account,
            v.scopes.as_deref(),
            &parts,
            None,
            prev,
        )
    }
}
