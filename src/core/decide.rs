//! `decide`: the pure decision over a table snapshot, and the one place that maps each outcome
//! to its HTTP status, JSON body and `WWW-Authenticate` value for every frontend.

use std::borrow::Cow;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::credential::{self, CredentialError, Presented};
use super::key::{AccountStatus, KeyHash, sha256};
use super::path::{PathError, Target};
use super::request::{Headers, Request};
use super::route::{Route, RouteTable};
use super::scheme::Scheme;
use super::table::{KeyEntry, Table};

/// Why a request was refused; the `reason` label of metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
    Account,
    Scope,
    /// No route matches the request (a valid key was presented).
    NoRoute,
    NotReady,
    /// A path no request may carry (a valid key was presented): see [`super::path`].
    BadPath,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::Unknown,
        Reason::Revoked,
        Reason::Expired,
        Reason::Account,
        Reason::Scope,
        Reason::NoRoute,
        Reason::NotReady,
        Reason::BadPath,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Unknown => "unknown",
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::Account => "account",
            Reason::Scope => "scope",
            Reason::NoRoute => "no_route",
            Reason::NotReady => "not_ready",
            Reason::BadPath => "bad_path",
        }
    }
}

/// A refusal, with what the response needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    /// Answer with a Bearer challenge: the client presented a Bearer token, or presented
    /// nothing on a route that accepts a Bearer scheme.
    pub bearer: bool,
    /// A credential was presented (adds `error="invalid_token"` to the challenge).
    pub presented: bool,
    /// The scope the route needs (scope denials).
    pub scope: Option<Arc<str>>,
    /// Account denials: the account's status, or `None` for a plan without API access.
    pub account_status: Option<AccountStatus>,
}

/// The generic message of every 401, so a client learns nothing about which keys exist.
pub const UNAUTHORIZED_MESSAGE: &str = "Invalid or missing API key";
const UNAUTHORIZED_BODY: &str =
    r#"{"error":"unauthorized","message":"Invalid or missing API key"}"#;
const UNAVAILABLE_BODY: &str =
    r#"{"error":"unavailable","message":"The key table is not loaded yet"}"#;
const BAD_PATH_BODY: &str = r#"{"error":"bad_request","message":"Malformed request path"}"#;

/// gRPC status codes of the denials (`google.rpc.Code`), so that the frontends map nothing.
pub mod grpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

impl Denial {
    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::Missing
            | Reason::Malformed
            | Reason::Unknown
            | Reason::Revoked
            | Reason::Expired => 401,
            Reason::Account | Reason::Scope | Reason::NoRoute => 403,
            Reason::BadPath => 400,
            Reason::NotReady => 503,
        }
    }

    /// The gRPC status code that goes with [`Denial::status`].
    pub fn grpc_code(&self) -> i32 {
        match self.status() {
            400 => grpc_code::INVALID_ARGUMENT,
            401 => grpc_code::UNAUTHENTICATED,
            403 => grpc_code::PERMISSION_DENIED,
            429 => grpc_code::RESOURCE_EXHAUSTED,
            _ => grpc_code::UNAVAILABLE,
        }
    }

    /// The body's `error` code.
    pub fn error(&self) -> &'static str {
        match self.status() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            _ => "unavailable",
        }
    }

    pub fn message(&self) -> Cow<'static, str> {
        match self.reason {
            Reason::Scope => Cow::Owned(format!(
                "API key lacks scope {}",
                self.scope.as_deref().unwrap_or("")
            )),
            Reason::Account => Cow::Borrowed(match self.account_status {
                None | Some(AccountStatus::Active) => "API access is disabled for this account",
                Some(AccountStatus::PastDue) => "API access is suspended: the account is past due",
                Some(AccountStatus::Disabled) => "API access is disabled for this account",
            }),
            Reason::NoRoute => Cow::Borrowed("No route allows this request"),
            Reason::NotReady => Cow::Borrowed("The key table is not loaded yet"),
            Reason::BadPath => Cow::Borrowed("Malformed request path"),
            _ => Cow::Borrowed(UNAUTHORIZED_MESSAGE),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Cow<'static, str> {
        match self.status() {
            400 => Cow::Borrowed(BAD_PATH_BODY),
            401 => Cow::Borrowed(UNAUTHORIZED_BODY),
            503 => Cow::Borrowed(UNAVAILABLE_BODY),
            _ => Cow::Owned(
                serde_json::json!({"error": self.error(), "message": self.message()}).to_string(),
            ),
        }
    }

    /// `WWW-Authenticate` per RFC 6750, for Bearer schemes.
    pub fn www_authenticate(&self) -> Option<Cow<'static, str>> {
        if !self.bearer {
            return None;
        }
        match (self.status(), self.reason) {
            (401, _) if self.presented => Some(Cow::Borrowed(
                r#"Bearer realm="keygate", error="invalid_token""#,
            )),
            (401, _) => Some(Cow::Borrowed(r#"Bearer realm="keygate""#)),
            (403, Reason::Scope) => Some(Cow::Owned(format!(
                r#"Bearer realm="keygate", error="insufficient_scope", scope="{}""#,
                self.scope.as_deref().unwrap_or("")
            ))),
            _ => None,
        }
    }
}

/// An allowed request: who the caller is.
#[derive(Debug, Clone)]
pub struct Allow {
    pub key: Arc<KeyEntry>,
    pub plan: Option<Arc<str>>,
    pub bearer: bool,
}

/// What `decide` concluded.
#[derive(Debug)]
pub enum Outcome<'a> {
    Allow(Allow),
    Deny(Denial),
    /// An Argon2 key whose secret has no cached answer: verify `key` against `entry` off the
    /// runtime, record the result with the [`SecretCheck`], and decide again.
    NeedsVerify {
        entry: Arc<KeyEntry>,
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
            reason,
            bearer,
            presented,
            scope: None,
            account_status: None,
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
            .filter(|e| matches!(&e.hash, KeyHash::Sha256(h) if bool::from(h.ct_eq(&d))))
    };
    let Some(entry) = entry.filter(|e| e.scheme() == p.scheme) else {
        return unknown();
    };
    // Revoked and expired keys get the same 401 as unknown ones, so their secret need not be
    // verified first (that would spend Argon2 on keys that cannot pass).
    if entry.revoked {
        return deny(Reason::Revoked, p.bearer, true);
    }
    if entry.is_expired(now) {
        return deny(Reason::Expired, p.bearer, true);
    }
    if matches!(entry.hash, KeyHash::Argon2id(_)) {
        match check.cached(entry, p.key) {
            Some(true) => {}
            Some(false) => return unknown(),
            None => {
                return Outcome::NeedsVerify {
                    entry: entry.clone(),
                    key: p.key,
                };
            }
        }
    }
    // Checked once the caller is known, so that an unauthenticated client learns nothing.
    if target.as_ref().err() == Some(&PathError::Malformed) {
        return deny(Reason::BadPath, p.bearer, true);
    }
    let account = table.account(&entry.account);
    let plan = account.and_then(|a| a.plan.clone());
    if let Some(a) = account
        && (a.status != AccountStatus::Active || !a.api_access)
    {
        return Outcome::Deny(Denial {
            reason: Reason::Account,
            bearer: p.bearer,
            presented: true,
            scope: None,
            account_status: (a.status != AccountStatus::Active).then_some(a.status),
        });
    }
    if let Err(d) = permits(route, entry, &p) {
        return Outcome::Deny(d);
    }
    // The upstream may read the path another way: each reading's route must allow it too.
    if let (Ok(t), Some(path)) = (&target, &path) {
        let upper = t.has_upper();
        let (method, host) = (req.method, req.host);
        if upper && let Err(d) = permits(routes.find_ignoring_case(method, path, host), entry, &p) {
            return Outcome::Deny(d);
        }
        for other in t.readings() {
            if let Err(d) = permits(routes.find(method, &other, host), entry, &p) {
                return Outcome::Deny(d);
            }
            if upper
                && let Err(d) = permits(routes.find_ignoring_case(method, &other, host), entry, &p)
            {
                return Outcome::Deny(d);
            }
        }
    }
    Outcome::Allow(Allow {
        key: entry.clone(),
        plan,
        bearer: p.bearer,
    })
}

/// Whether `route` lets this key, presented with its scheme, through.
fn permits(route: Option<&Route>, entry: &KeyEntry, p: &Presented<'_>) -> Result<(), Denial> {
    let deny = |reason, scope| Denial {
        reason,
        bearer: p.bearer,
        presented: true,
        scope,
        account_status: None,
    };
    let Some(route) = route.filter(|r| r.schemes.contains(&p.scheme)) else {
        return Err(deny(Reason::NoRoute, None));
    };
    if let (Some(need), Some(have)) = (route.scope.as_deref(), entry.scopes.as_deref())
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
