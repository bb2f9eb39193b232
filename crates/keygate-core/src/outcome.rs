//! Why a request was refused, and the one place that maps each refusal to its HTTP status,
//! gRPC code, JSON body and `WWW-Authenticate` value for every data plane.

use std::borrow::Cow;
use std::sync::Arc;

use super::key::AccountStatus;
use super::limit::LimitState;
use super::table::KeyRef;

/// Why a request was refused; the `reason` label of metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// Over one of the key's rate limits.
    RateLimited,
    /// Out of credits.
    Quota,
    /// The key is disabled (until it is enabled again).
    Disabled,
    /// The request carries a header only keygate may set, which this data plane cannot
    /// remove (nginx's `auth_request`).
    BadHeader,
}

impl Reason {
    pub const ALL: [Reason; 14] = [
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
        Reason::RateLimited,
        Reason::Quota,
        Reason::Disabled,
        Reason::BadHeader,
    ];

    /// The reason named `s` (as [`Reason::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

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
            Reason::RateLimited => "rate_limited",
            Reason::Quota => "quota",
            Reason::Disabled => "disabled",
            Reason::BadHeader => "bad_header",
        }
    }
}

/// A refusal, with what the response needs.
#[derive(Debug, Clone)]
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
    /// Rate limit and quota denials: the limit that refused.
    pub limit: Option<LimitState>,
    /// The key refused, when the request presented a known one: usage counts denials of
    /// known keys by reason. Not part of the answer, so not compared.
    pub key: Option<KeyRef>,
    /// The request's id (the proxy's, or one the authorizer made), which a data plane gives
    /// the client with the denial (`x-request-id`), so that it can be found in the logs. Not
    /// compared either.
    pub request_id: Option<Box<str>>,
}

impl PartialEq for Denial {
    fn eq(&self, o: &Denial) -> bool {
        (self.reason, self.bearer, self.presented) == (o.reason, o.bearer, o.presented)
            && (&self.scope, self.account_status, &self.limit)
                == (&o.scope, o.account_status, &o.limit)
    }
}

impl Eq for Denial {}

/// The generic message of every 401, so a client learns nothing about which keys exist.
pub const UNAUTHORIZED_MESSAGE: &str = "Invalid or missing API key";
const UNAUTHORIZED_BODY: &str =
    r#"{"error":"unauthorized","message":"Invalid or missing API key"}"#;
const UNAVAILABLE_BODY: &str =
    r#"{"error":"unavailable","message":"The key table is not loaded yet"}"#;
const BAD_PATH_BODY: &str = r#"{"error":"bad_request","message":"Malformed request path"}"#;
const BAD_HEADER_BODY: &str =
    r#"{"error":"bad_request","message":"Request carries a reserved header"}"#;
const RATE_LIMITED_BODY: &str = r#"{"error":"rate_limited","message":"Rate limit exceeded"}"#;
const QUOTA_BODY: &str = r#"{"error":"quota_exceeded","message":"Usage quota exhausted"}"#;

/// gRPC status codes of the denials (`google.rpc.Code`), so that the frontends map nothing.
pub mod grpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

impl Denial {
    /// A refusal of a presented credential for `reason`, with nothing else to say.
    pub fn new(reason: Reason, bearer: bool) -> Denial {
        Denial {
            reason,
            bearer,
            presented: true,
            scope: None,
            account_status: None,
            limit: None,
            key: None,
            request_id: None,
        }
    }

    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::Missing
            | Reason::Malformed
            | Reason::Unknown
            | Reason::Revoked
            | Reason::Expired
            | Reason::Disabled => 401,
            Reason::Account | Reason::Scope | Reason::NoRoute => 403,
            Reason::BadPath | Reason::BadHeader => 400,
            Reason::RateLimited | Reason::Quota => 429,
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
            429 if self.reason == Reason::Quota => "quota_exceeded",
            429 => "rate_limited",
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
            Reason::BadHeader => Cow::Borrowed("Request carries a reserved header"),
            Reason::RateLimited => Cow::Borrowed("Rate limit exceeded"),
            Reason::Quota => Cow::Borrowed("Usage quota exhausted"),
            _ => Cow::Borrowed(UNAUTHORIZED_MESSAGE),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Cow<'static, str> {
        match self.status() {
            400 if self.reason == Reason::BadHeader => Cow::Borrowed(BAD_HEADER_BODY),
            400 => Cow::Borrowed(BAD_PATH_BODY),
            401 => Cow::Borrowed(UNAUTHORIZED_BODY),
            429 if self.reason == Reason::Quota => Cow::Borrowed(QUOTA_BODY),
            429 => Cow::Borrowed(RATE_LIMITED_BODY),
            503 => Cow::Borrowed(UNAVAILABLE_BODY),
            _ => Cow::Owned(
                serde_json::json!({"error": self.error(), "message": self.message()}).to_string(),
            ),
        }
    }

    /// The `RateLimit-Policy`, `RateLimit` and `Retry-After` fields of a 429.
    pub fn limit_headers(&self) -> Vec<(&'static str, String)> {
        self.limit
            .as_ref()
            .map_or_else(Vec::new, |l| l.headers(true))
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
