//! The HTTP listener: nginx `auth_request` at `/auth`, Envoy HTTP-mode ext_authz at
//! `/ext_authz/<original path>`, and `/healthz`, `/readyz`, `/metrics`.
//!
//! nginx: the original method and URI come in `X-Original-Method` and `X-Original-URI`, the
//! host in `X-Original-Host` or `Host`. An allow answers 200 with the identity headers for
//! `auth_request_set`. Envoy HTTP mode: the original method is the request's, the path follows
//! `/ext_authz`; an allow also names the credential and unset identity headers in
//! `x-envoy-auth-headers-to-remove`. A denial answers with its status, JSON body and
//! `WWW-Authenticate` on both.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use super::{credential_headers, identity};
use crate::config::IdentityHeaders;
use crate::core::decide::{Allow, Denial};
use crate::core::request::Request;
use crate::core::scheme::Scheme;
use crate::metrics::Frontend;
use crate::service::Authorizer;

pub type Body = Full<Bytes>;

const PREFIX: &str = "/ext_authz";

/// Routes one request of the HTTP listener.
pub async fn handle<B>(
    auth: Arc<Authorizer>,
    req: http::Request<B>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let resp = match path {
        "/auth" => nginx(&auth, &req).await,
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if auth.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "key table not loaded\n")
            }
        }
        "/metrics" if req.method() == Method::GET => metrics(&auth),
        p if p == PREFIX || p.starts_with("/ext_authz/") => envoy_http(&auth, &req).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn metrics(auth: &Authorizer) -> Response<Body> {
    let m = &auth.metrics;
    m.keys.set(auth.replica.snapshot().len() as i64);
    m.revision.set(auth.replica.revision() as i64);
    m.replication_age.set(
        auth.replica
            .age()
            .map_or(f64::INFINITY, |a| a.as_secs_f64()),
    );
    let mut r = Response::new(Full::new(Bytes::from(m.render())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn str_header<'a, B>(req: &'a http::Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn nginx<B>(auth: &Arc<Authorizer>, req: &http::Request<B>) -> Response<Body> {
    let method = str_header(req, "x-original-method").unwrap_or("GET");
    // A missing or non-UTF-8 URI matches no route; the credential is still checked first.
    let path = str_header(req, "x-original-uri").unwrap_or("");
    let host = str_header(req, "x-original-host").or_else(|| str_header(req, "host"));
    let r = Request {
        method,
        path,
        host,
        headers: req.headers(),
    };
    match auth.check(&r, Frontend::Nginx).await {
        Ok(a) => allowed(auth, &a, false),
        Err(d) => {
            let mut r = denied(&d);
            // auth_request passes 401 and 403 and turns anything else into a 500; the shipped
            // nginx config gives the client the status named here.
            if d.status() < 500 && !matches!(d.status(), 401 | 403) {
                *r.status_mut() = StatusCode::FORBIDDEN;
                r.headers_mut()
                    .insert(KEYGATE_STATUS.clone(), HeaderValue::from(d.status()));
            }
            r
        }
    }
}

async fn envoy_http<B>(auth: &Arc<Authorizer>, req: &http::Request<B>) -> Response<Body> {
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    let path = match &target[PREFIX.len()..] {
        "" => "/",
        p if p.starts_with('?') => "/",
        p => p,
    };
    let host = str_header(req, "host");
    let r = Request {
        method: req.method().as_str(),
        path,
        host,
        headers: req.headers(),
    };
    match auth.check(&r, Frontend::EnvoyHttp).await {
        Ok(a) => allowed(auth, &a, true),
        Err(d) => denied(&d),
    }
}

fn allowed(auth: &Authorizer, a: &Allow, envoy: bool) -> Response<Body> {
    let s = &*auth.settings();
    let mut r = Response::new(Full::new(Bytes::new()));
    let h = r.headers_mut();
    let mut mask = 0;
    for (i, v) in identity(a).into_iter().enumerate() {
        let Some(v) = v else {
            continue;
        };
        mask |= 1 << i;
        // Values are ids, accounts and scopes that the management API restricts to
        // header-safe characters.
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(s.allow_headers.names[i].clone(), v);
        }
    }
    if envoy {
        h.insert(
            ENVOY_REMOVE.clone(),
            s.allow_headers.envoy_remove[mask].clone(),
        );
    }
    r
}

static KEYGATE_STATUS: HeaderName = HeaderName::from_static("x-keygate-status");
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
    r
}
