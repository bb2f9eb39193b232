//! `/auth`: nginx `auth_request`. The original method and URI come in `X-Original-Method` and
//! `X-Original-URI`, the host in `X-Original-Host` or `Host`. An allow answers 200 with the
//! identity headers and the `RateLimit` fields for `auth_request_set`; a denial answers with
//! its status, JSON body, `WWW-Authenticate` and `RateLimit` fields, and the body again in
//! `X-Keygate-Body` (nginx drops a subrequest's body) — except that `auth_request` passes only
//! 401 and 403 and turns anything else into a 500, so a 4xx it cannot pass (400, 429) goes as
//! 403 with `X-Keygate-Status` naming it, which the shipped nginx config gives the client.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::http::{Body, HttpHeaders, allowed, denied, str_header};
use crate::core::request::Request;
use crate::metrics::Frontend;
use crate::service::Authorizer;

static KEYGATE_STATUS: HeaderName = HeaderName::from_static("x-keygate-status");
static KEYGATE_BODY: HeaderName = HeaderName::from_static("x-keygate-body");

pub async fn check<B>(auth: &Arc<Authorizer>, req: &http::Request<B>) -> Response<Body> {
    let method = str_header(req, "x-original-method").unwrap_or("GET");
    // A missing or non-UTF-8 URI matches no route; the credential is still checked first.
    let path = str_header(req, "x-original-uri").unwrap_or("");
    let host = str_header(req, "x-original-host").or_else(|| str_header(req, "host"));
    let headers = HttpHeaders(req.headers());
    let r = Request {
        method,
        path,
        host,
        headers: &headers,
    };
    match auth.check(&r, Frontend::Nginx).await {
        Ok(a) => allowed(auth, &a, false),
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
