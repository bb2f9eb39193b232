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

/// Identity headers for an allowed request: `(name, value)` for those this key sets, and
/// the names of those it does not (to be removed, so a client-sent value never passes).
pub fn identity<'a>(s: &'a Settings, a: &'a Allow) -> ([(&'a str, &'a str); 4], usize) {
    let h = &s.identity;
    let mut set: [(&str, &str); 4] = [("", ""); 4];
    let mut n = 0;
    let mut put = |name: &'a str, v: &'a str| {
        set[n] = (name, v);
        n += 1;
    };
    put(&h.key_id, &a.key.id);
    put(&h.account, &a.key.account);
    if let Some(s) = &a.key.scopes
        && !s.joined.is_empty()
    {
        put(&h.scopes, &s.joined);
    }
    if let Some(p) = a.plan.as_deref() {
        put(&h.plan, p);
    }
    (set, n)
}

/// Identity header names this allow does not set.
pub fn unset_identity<'a>(
    s: &'a Settings,
    set: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a str> {
    s.identity
        .all()
        .into_iter()
        .filter(move |n| !set.iter().any(|(m, _)| m == n))
}

/// Every configured credential header, once, removed before the upstream sees the request.
pub fn credential_headers(schemes: &[Scheme]) -> impl Iterator<Item = &str> {
    schemes.iter().enumerate().filter_map(|(i, sc)| {
        let first = !schemes[..i].iter().any(|o| o.header == sc.header);
        first.then_some(sc.header.as_str())
    })
}
