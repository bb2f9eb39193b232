//! Frontends: wire request to core request, decision to wire response, nothing else.
//!
//! - `envoy_grpc`: `envoy.service.auth.v3.Authorization/Check`.
//! - `http`: the HTTP listener: nginx `/auth`, Envoy HTTP mode `/ext_authz/…`, `/healthz`,
//!   `/readyz`, `/metrics`.

pub mod envoy_grpc;
pub mod http;

use crate::config::Settings;
use crate::core::decide::Allow;
use crate::core::scheme::Scheme;

/// Identity header values for an allowed request, in [`IdentityHeaders::all`] order: `None`
/// for a header this key does not set, which is removed instead so that a client-sent value
/// never passes.
///
/// [`IdentityHeaders::all`]: crate::config::IdentityHeaders::all
pub fn identity(a: &Allow) -> [Option<&str>; 4] {
    [
        Some(&a.key.id),
        Some(&a.key.account),
        a.key
            .scopes
            .as_ref()
            .map(|s| &*s.joined)
            .filter(|j| !j.is_empty()),
        a.plan.as_deref(),
    ]
}

/// `(name, value)` of the identity headers an allow sets.
pub fn set_identity<'a>(
    s: &'a Settings,
    values: &'a [Option<&str>; 4],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    s.identity
        .all()
        .into_iter()
        .zip(values)
        .filter_map(|(n, v)| Some((n, (*v)?)))
}

/// Identity header names an allow does not set.
pub fn unset_identity<'a>(
    s: &'a Settings,
    values: &'a [Option<&str>; 4],
) -> impl Iterator<Item = &'a str> {
    s.identity
        .all()
        .into_iter()
        .zip(values)
        .filter_map(|(n, v)| v.is_none().then_some(n))
}

/// Every configured credential header, once, removed before the upstream sees the request.
pub fn credential_headers(schemes: &[Scheme]) -> impl Iterator<Item = &str> {
    schemes.iter().enumerate().filter_map(|(i, sc)| {
        let first = !schemes[..i].iter().any(|o| o.header == sc.header);
        first.then_some(sc.header.as_str())
    })
}
