//! The ops endpoints of the HTTP listener: `/healthz` (the process is up), `/readyz` (the key
//! table is loaded and shutdown has not begun), `/metrics` (Prometheus text).

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use super::http::{Body, text};
use crate::service::Authorizer;

pub fn handle(auth: &Authorizer, method: &Method, path: &str) -> Response<Body> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if auth.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "key table not loaded\n"),
        "/metrics" if method == Method::GET => metrics(auth),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn metrics(auth: &Authorizer) -> Response<Body> {
    auth.metrics.refresh(&auth.replica, &auth.store_stats);
    let mut r = Response::new(Full::new(Bytes::from(auth.metrics.render())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
