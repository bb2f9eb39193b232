//! `/ext_authz/<original path>`: Envoy's HTTP-mode ext_authz (`path_prefix: /ext_authz`). The
//! original method is the request's; the host is `Host`. An allow answers 200 with the
//! identity headers and `x-envoy-auth-headers-to-remove` naming the credential headers and
//! the identity headers this key does not set (and client-sent headers under the metadata
//! prefix, with the key's metadata set); a denial answers with its status, JSON body
//! and `WWW-Authenticate`, which Envoy passes to the client.

use std::sync::Arc;

use http::Response;

use super::http::{Body, HttpHeaders, allowed, denied, str_header};
use crate::core::request::Request;
use crate::metrics::Frontend;
use crate::service::Authorizer;

const PREFIX: &str = "/ext_authz";

/// Whether `path` is an Envoy HTTP-mode check.
pub fn is_check(path: &str) -> bool {
    path == PREFIX || path.starts_with("/ext_authz/")
}

pub async fn check<B>(auth: &Arc<Authorizer>, req: &http::Request<B>) -> Response<Body> {
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    let path = match &target[PREFIX.len()..] {
        "" => "/",
        p if p.starts_with('?') => "/",
        p => p,
    };
    let headers = HttpHeaders(req.headers());
    let r = Request {
        method: req.method().as_str(),
        path,
        host: str_header(req, "host"),
        headers: &headers,
    };
    match auth.check(&r, Frontend::EnvoyHttp).await {
        Ok(a) => allowed(auth, &a, Some(req.headers())),
        Err(d) => denied(&d),
    }
}
