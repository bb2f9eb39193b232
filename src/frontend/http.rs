//! The HTTP listener: routes `/auth` (nginx), `/ext_authz/…` (Envoy HTTP mode) and the ops
//! endpoints, and holds what those frontends share: header access over `http::HeaderMap`,
//! the identity header names and Envoy's remove lists made once per config, the `RateLimit`
//! fields, and a denial as an HTTP response.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::credential_headers;
use crate::core::decide::{Allow, Denial};
use crate::core::meta;
use crate::core::policy::IdentityHeaders;
use crate::core::request;
use crate::core::scheme::Scheme;
use crate::service::Authorizer;

pub type Body = Full<Bytes>;

/// Routes one request of the HTTP listener.
pub async fn handle<B>(
    auth: Arc<Authorizer>,
    req: http::Request<B>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let resp = match path {
        "/auth" => super::nginx::check(&auth, &req).await,
        p if super::envoy_http::is_check(p) => super::envoy_http::check(&auth, &req).await,
        p => super::ops::handle(&auth, req.method(), p),
    };
    Ok(resp)
}

/// `http::HeaderMap` as the core reads headers.
pub struct HttpHeaders<'a>(pub &'a http::HeaderMap);

impl request::Headers for HttpHeaders<'_> {
    fn get(&self, name: &str) -> request::HeaderValue<'_> {
        let mut it = self.0.get_all(name).iter();
        match (it.next(), it.next()) {
            (None, _) => request::HeaderValue::Absent,
            (Some(v), None) => request::HeaderValue::One(v.as_bytes()),
            (Some(_), Some(_)) => request::HeaderValue::Many,
        }
    }
}

pub(super) fn str_header<'a, B>(req: &'a http::Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// An allow: 200 with the identity and metadata headers; for Envoy (`envoy`: the request's
/// headers) also the headers it must remove, client-sent ones under the metadata prefix among
/// them.
pub(super) fn allowed(
    auth: &Authorizer,
    a: &Allow,
    envoy: Option<&http::HeaderMap>,
) -> Response<Body> {
    let cur = auth.current();
    let names = &cur.allow_headers;
    let mut r = Response::new(Full::new(Bytes::new()));
    let h = r.headers_mut();
    let mut mask = 0;
    for (i, v) in a.identity().into_iter().enumerate() {
        let Some(v) = v else {
            continue;
        };
        mask |= 1 << i;
        // Values are ids, accounts and scopes that the management API restricts to
        // header-safe characters.
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(names.names[i].clone(), v);
        }
    }
    let prefix = cur.settings.policy.identity.meta_prefix.as_deref();
    if let (Some(prefix), Some(m)) = (prefix, a.key.meta()) {
        for (k, v) in m {
            // Entries are checked at write time to be valid header names and values.
            if let (Ok(k), Ok(v)) = (
                HeaderName::try_from(meta::header_name(prefix, k)),
                HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
    }
    if let Some(req) = envoy {
        let spoofed = match prefix {
            Some(p) => meta::spoofed(req.keys().map(|k| k.as_str().as_bytes()), p, a.key.meta()),
            None => Vec::new(),
        };
        let remove = names.envoy_remove[mask].clone();
        let remove = match &spoofed[..] {
            [] => remove,
            more => {
                let mut list = remove.as_bytes().to_vec();
                for n in more {
                    list.push(b',');
                    list.extend_from_slice(n);
                }
                HeaderValue::from_bytes(&list).unwrap_or(remove)
            }
        };
        h.insert(ENVOY_REMOVE.clone(), remove);
    }
    if let Some(l) = &a.limit {
        put_fields(h, l.headers(false));
    }
    r
}

/// The `RateLimit` fields (names from the core, values it formats from numbers and limit
/// names restricted to token characters).
fn put_fields(h: &mut http::HeaderMap, fields: Vec<(&'static str, String)>) {
    for (k, v) in fields {
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(HeaderName::from_static(k), v);
        }
    }
}

static ENVOY_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The identity header names, and Envoy HTTP mode's remove lists, as `http` values made once
/// per config: an allow parses and joins nothing.
#[derive(Debug, Clone)]
pub struct AllowHeaders {
    /// In [`IdentityHeaders::all`] order.
    names: [HeaderName; 4],
    /// `x-envoy-auth-headers-to-remove` by the set of identity headers an allow sets (bit `i`:
    /// `all()[i]`): the credential headers and the identity headers left unset.
    envoy_remove: [HeaderValue; 16],
}

impl AllowHeaders {
    /// `None` if a name is not a valid header name (config validation reports which).
    pub fn new(identity: &IdentityHeaders, schemes: &[Scheme]) -> Option<AllowHeaders> {
        let all = identity.all();
        let names = all.map(|n| HeaderName::from_bytes(n.as_bytes()).ok());
        let [Some(a), Some(b), Some(c), Some(d)] = names else {
            return None;
        };
        let envoy_remove: Vec<HeaderValue> = (0..16)
            .map(|mask| {
                let unset = (0..4).filter(|i| mask & (1 << i) == 0).map(|i| all[i]);
                let list: Vec<&str> = credential_headers(schemes).chain(unset).collect();
                HeaderValue::from_str(&list.join(",")).ok()
            })
            .collect::<Option<_>>()?;
        Some(AllowHeaders {
            names: [a, b, c, d],
            envoy_remove: envoy_remove.try_into().ok()?,
        })
    }
}

/// The denial as an HTTP response (both nginx and Envoy HTTP mode).
pub fn denied(d: &Denial) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(d.body().into_owned())));
    *r.status_mut() = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::FORBIDDEN);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(w) = d.www_authenticate()
        && let Ok(v) = HeaderValue::from_str(&w)
    {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    put_fields(h, d.limit_headers());
    if let Some(id) = d.request_id.as_deref()
        && let Ok(v) = HeaderValue::from_str(id)
    {
        h.insert(REQUEST_ID.clone(), v);
    }
    r
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
