//! Frontends: wire request to core request, decision to wire response, nothing else.
//!
//! - `envoy_grpc`: `envoy.service.auth.v3.Authorization/Check`.
//! - `http`: the HTTP listener's routing, and what its frontends share (header access, the
//!   prebuilt allow headers, the denial as a response).
//! - `nginx`: `/auth` for nginx `auth_request`.
//! - `envoy_http`: `/ext_authz/…` for Envoy's HTTP mode.
//! - `ops`: `/healthz`, `/readyz`, `/metrics`.

pub mod envoy_grpc;
pub mod envoy_http;
pub mod http;
pub mod nginx;
pub mod ops;

use crate::core::policy::IdentityHeaders;

/// `(name, value)` of the identity headers an allow sets, from [`Allow::identity`].
///
/// [`Allow::identity`]: crate::core::decide::Allow::identity
pub fn set_identity<'a>(
    names: &'a IdentityHeaders,
    values: &'a [Option<&str>; 4],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    names
        .all()
        .into_iter()
        .zip(values)
        .filter_map(|(n, v)| Some((n, (*v)?)))
}

/// Identity header names an allow does not set.
pub fn unset_identity<'a>(
    names: &'a IdentityHeaders,
    values: &'a [Option<&str>; 4],
) -> impl Iterator<Item = &'a str> {
    names
        .all()
        .into_iter()
        .zip(values)
        .filter_map(|(n, v)| v.is_none().then_some(n))
}

pub use crate::core::credential::headers as credential_headers;
