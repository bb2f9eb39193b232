//! `/auth`: nginx `auth_request`. The original method and URI come in `X-Original-Method` and
//! `X-Original-URI`, the host in `X-Original-Host` or `Host`. An allow answers 200 with the
//! identity headers and the `RateLimit` fields for `auth_request_set`; a denial answers with
//! its status, JSON body, `WWW-Authenticate` and `RateLimit` fields, and the body again in
//! `X-Keygate-Body` (nginx drops a subrequest's body) — except that `auth_request` passes only
//! 401 and 403 and turns anything else into a 500, so a 4xx it cannot pass (400, 429) goes as
//! 403 with `X-Keygate-Status` naming it, which the shipped nginx config gives the client.
//!
//! With `identity_headers.meta_prefix` set, an allow also answers the key's metadata headers,
//! which the nginx config forwards by name; and since stock nginx cannot remove request
//! headers by prefix, a request that carries one under it is refused with 400 `bad_header`.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::http::{Body, HttpHeaders, allowed, denied, str_header};
use crate::core::request::{self, Request};
use crate::metrics::Frontend;
use crate::service::Authorizer;

static KEYGATE_STATUS: HeaderName = HeaderName::from_static("x-keygate-status");
static KEYGATE_BODY: HeaderName = HeaderName::from_static("x-keygate-body");

pub async fn check<B>(auth: &Arc<Authorizer>, req: &http::Request<B>) -> Response<Body> {
    let method = str_header(req, "x-original-method").unwrap_or("GET");
    // A missing or non-UTF-8 URI matches no route; the credential is still checked first.
    let path = str_header(req, "x-original-uri").unwrap_or("");
    let host = str_header(req, "x-original-host").or_else(|| str_header(req, "host"));
    // nginx cannot remove request headers by prefix.
    let settings = auth.settings();
    let headers = Reserving {
        headers: HttpHeaders(req.headers()),
        prefix: settings.policy.identity.meta_prefix.as_deref(),
    };
    let r = Request {
        method,
        path,
        host,
        headers: &headers,
    };
    match auth.check(&r, Frontend::Nginx).await {
        Ok(a) => allowed(auth, &a, None),
        Err(d) => {
            let mut r = denied(&d);
            if d.status() < 500 && !matches!(d.status(), 401 | 403) {
                *r.status_mut() = StatusCode::FORBIDDEN;
                r.headers_mut()
                    .insert(KEYGATE_STATUS.clone(), HeaderValue::from(d.status()));
            }
            // nginx never passes a subrequest's body: the config answers with this copy. A
            // body is JSON of ASCII (messages, scope names, limit names), so it is a valid
            // header value; the 401 body is the same for every 401 and is not sent.
            if d.status() != 401
                && let Ok(v) = HeaderValue::from_str(&d.body())
            {
                r.headers_mut().insert(KEYGATE_BODY.clone(), v);
            }
            r
        }
    }
}

/// The request's headers, and whether any is under the metadata prefix.
struct Reserving<'a> {
    headers: HttpHeaders<'a>,
    prefix: Option<&'a str>,
}

impl request::Headers for Reserving<'_> {
    fn get(&self, name: &str) -> request::HeaderValue<'_> {
        self.headers.get(name)
    }

    fn carries_reserved(&self) -> bool {
        self.prefix.is_some_and(|p| {
            self.headers
                .0
                .keys()
                .any(|k| crate::core::meta::is_reserved(k.as_str(), p))
        })
    }
}
