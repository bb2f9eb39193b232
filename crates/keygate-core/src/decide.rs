//! `decide`: the pure decision over a table snapshot. What a refusal answers is in
//! [`crate::outcome`].

use std::sync::Arc;

use subtle::ConstantTimeEq;

pub use super::outcome::{Denial, Reason};

use super::credential::{self, CredentialError, Presented};
use super::key::{AccountStatus, HashRef, sha256};
use super::limit::{LimitState, RateLimit};
use super::path::{PathError, Target};
use super::request::{Headers, Request};
use super::route::{Route, RouteTable};
use super::scheme::Scheme;
use super::table::{Found, KeyEntry, KeyRef, Table};

/// An allowed request: who the caller is.
#[derive(Debug, Clone)]
pub struct Allow {
    pub key: KeyRef,
    pub plan: Option<Arc<str>>,
    pub bearer: bool,
    /// The limits that apply: the key's own, else its plan's; `None`: none.
    pub limits: Option<Arc<[RateLimit]>>,
    /// Once the limits were counted: where the request stands against the tightest one, for
    /// the `RateLimit` fields of the response.
    pub limit: Option<LimitState>,
}

impl Allow {
    /// The identity header values, in [`IdentityHeaders::all`] order: `None` for a header
    /// this key does not set, which a data plane removes instead, so that a client-sent value
    /// never passes.
    ///
    /// [`IdentityHeaders::all`]: crate::policy::IdentityHeaders::all
    pub fn identity(&self) -> [Option<&str>; 4] {
        [
            Some(self.key.id()),
            Some(self.key.account()),
            self.key
                .scopes()
                .map(|s| &*s.joined)
                .filter(|j| !j.is_empty()),
            self.plan.as_deref(),
        ]
    }
}

/// What `decide` concluded.
#[derive(Debug)]
pub enum Outcome<'a> {
    Allow(Allow),
    Deny(Denial),
    /// An Argon2 key whose secret has no cached answer: verify `key` against `entry` off the
    /// runtime, record the result with the [`SecretCheck`], and decide again.
    NeedsVerify {
        entry: KeyRef,
        key: &'a [u8],
    },
}

/// Cached answers for Argon2 secrets.
pub trait SecretCheck {
    /// `Some(true)`: this key verified before; `Some(false)`: refuse without verifying
    /// (throttled); `None`: run the verification.
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool>;
}

/// A `SecretCheck` with no cache: every Argon2 key needs verification.
pub struct NoCache;

impl SecretCheck for NoCache {
    fn cached(&self, _: &KeyEntry, _: &[u8]) -> Option<bool> {
        None
    }
}

/// Decides one request.
pub fn decide<'r, H: Headers + ?Sized>(
    schemes: &[Scheme],
    routes: &RouteTable,
    table: &Table,
    req: &Request<'r, H>,
    now: i64,
    check: &impl SecretCheck,
) -> Outcome<'r> {
    let deny = |reason, bearer, presented| {
        Outcome::Deny(Denial {
            presented,
            ..Denial::new(reason, bearer)
        })
    };
    if !table.is_loaded() {
        return deny(Reason::NotReady, false, false);
    }
    let target = Target::parse(req.path);
    let path = target.as_ref().ok().map(Target::path);
    let route = path
        .as_deref()
        .and_then(|p| routes.find(req.method, p, req.host));
    let all: &[usize] = ALL_SCHEMES.get(..schemes.len()).unwrap_or(&[]);
    let accepted = route.map_or(all, |r| r.schemes.as_slice());
    let route_bearer = accepted.iter().any(|&i| schemes[i].bearer);

    let p: Presented<'r> = match credential::extract(schemes, accepted, req.headers) {
        Ok(p) => p,
        Err(CredentialError::Missing) => return deny(Reason::Missing, route_bearer, false),
        Err(CredentialError::Malformed { bearer }) => {
            return deny(Reason::Malformed, bearer, true);
        }
    };
    let unknown = || deny(Reason::Unknown, p.bearer, true);
    let entry = if schemes[p.scheme].is_argon2() {
        table.by_id(p.id)
    } else {
        let d = sha256(p.key);
        table
            .by_digest(&d)
            .filter(|e| matches!(e.hash(), HashRef::Sha256(h) if digests_equal(h, &d)))
    };
    let Some(entry) = entry.filter(|e| e.scheme() == p.scheme) else {
        return unknown();
    };
    // Revoked, expired and disabled keys get the same 401 as unknown ones, so their secret
    // need not be verified first (that would spend Argon2 on keys that cannot pass).
    let known = |reason| {
        Outcome::Deny(Denial {
            key: Some(entry.handle()),
            ..Denial::new(reason, p.bearer)
        })
    };
    if entry.revoked() {
        return known(Reason::Revoked);
    }
    if entry.is_expired(now) {
        return known(Reason::Expired);
    }
    if entry.disabled() {
        return known(Reason::Disabled);
    }
    if entry.is_argon2() {
        match check.cached(&entry, p.key) {
            Some(true) => {}
            Some(false) => return unknown(),
            None => {
                return Outcome::NeedsVerify {
                    entry: entry.handle(),
                    key: p.key,
                };
            }
        }
    }
    // Checked once the caller is known, so that an unauthenticated client learns nothing.
    if target.as_ref().err() == Some(&PathError::Malformed) {
        return known(Reason::BadPath);
    }
    if req.headers.carries_reserved() {
        return known(Reason::BadHeader);
    }
    let account = table.account(entry.account());
    let plan = account.and_then(|a| a.plan.clone());
    if let Some(a) = account
        && (a.status != AccountStatus::Active || !a.api_access)
    {
        return Outcome::Deny(Denial {
            account_status: (a.status != AccountStatus::Active).then_some(a.status),
            key: Some(entry.handle()),
            ..Denial::new(Reason::Account, p.bearer)
        });
    }
    if let Err(d) = permits(route, &entry, &p) {
        return Outcome::Deny(d);
    }
    // The upstream may read the path another way: each reading's route must allow it too.
    if let (Ok(t), Some(path)) = (&target, &path) {
        let upper = t.has_upper();
        let (method, host) = (req.method, req.host);
        if upper && let Err(d) = permits(routes.find_ignoring_case(method, path, host), &entry, &p)
        {
            return Outcome::Deny(d);
        }
        for other in t.readings() {
            if let Err(d) = permits(routes.find(method, &other, host), &entry, &p) {
                return Outcome::Deny(d);
            }
            if upper
                && let Err(d) = permits(routes.find_ignoring_case(method, &other, host), &entry, &p)
            {
                return Outcome::Deny(d);
            }
        }
    }
    let limits = entry
        .limits()
        .or(account.map(|a| &a.limits))
        .filter(|l| !l.is_empty())
        .cloned();
    Outcome::Allow(Allow {
        key: entry.handle(),
        plan,
        bearer: p.bearer,
        limits,
        limit: None,
    })
}

/// Whether two digests are equal, in constant time: the words' differences are gathered
/// without a branch, and only the total is compared (in constant time too). A word at a time,
/// a quarter of the work of comparing the bytes one by one.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_ne_bytes(y.try_into().unwrap_or_default());
        diff |= x ^ y;
    }
    bool::from(diff.ct_eq(&0))
}

/// Whether `route` lets this key, presented with its scheme, through.
fn permits(route: Option<&Route>, entry: &Found<'_>, p: &Presented<'_>) -> Result<(), Denial> {
    let deny = |reason, scope| Denial {
        scope,
        key: Some(entry.handle()),
        ..Denial::new(reason, p.bearer)
    };
    let Some(route) = route.filter(|r| r.schemes.contains(&p.scheme)) else {
        return Err(deny(Reason::NoRoute, None));
    };
    if let (Some(need), Some(have)) = (route.scope.as_deref(), entry.scopes())
        && !have.list.iter().any(|s| &**s == need)
    {
        return Err(deny(Reason::Scope, route.scope.clone()));
    }
    Ok(())
}

/// Scheme indices for requests no route matches (every scheme is tried).
const ALL_SCHEMES: [usize; 64] = {
    let mut a = [0usize; 64];
    let mut i = 0;
    while i < 64 {
        a[i] = i;
        i += 1;
    }
    a
};

#[cfg(test)]
mod tests;
