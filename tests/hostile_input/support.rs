//! What the tests share: the keys, the answer a row must get, the check that keygate still
//! serves, the gRPC client and the requests it sends, and the lock the memory test takes.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tokio::sync::RwLock;

use crate::common::Harness;
use crate::common::raw::{request, send_raw};

/// The memory test takes this exclusively, the others shared, so no other test of this binary
/// allocates while it measures.
pub(crate) static MEMORY: RwLock<()> = RwLock::const_new(());

pub(crate) const KIB: usize = 1024;
pub(crate) const MIB: usize = 1024 * 1024;

pub(crate) const CHALLENGE: &str = r#"Bearer realm="keygate""#;
pub(crate) const INVALID: &str = r#"Bearer realm="keygate", error="invalid_token""#;

/// Keys every test uses.
pub(crate) struct Keys {
    /// live (Bearer, sha256), every scope.
    pub(crate) live: String,
    /// live, only `usage:read`.
    pub(crate) usage: String,
    /// toon (x-api-key, Argon2id), every scope.
    pub(crate) toon: String,
}

pub(crate) async fn setup() -> (Harness, Keys) {
    let h = Harness::start().await;
    let live = h.key("live", "acme", None).await.key;
    let usage = h.key("live", "acme", Some(&["usage:read"])).await.key;
    let toon = h.key("toon", "acme", None).await.key;
    (h, Keys { live, usage, toon })
}

/// The status and `WWW-Authenticate` a row must get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    pub(crate) status: u16,
    pub(crate) www: Option<&'static str>,
}

pub(crate) const fn want(status: u16, www: Option<&'static str>) -> Want {
    Want { status, www }
}

/// A valid request must be allowed.
pub(crate) async fn still_serving(h: &Harness, k: &Keys) {
    let b = format!("Bearer {}", k.live);
    let r = send_raw(
        h.http_addr(),
        request(
            b"GET",
            b"/auth",
            &[
                (b"x-original-uri", b"/v1/x"),
                (b"authorization", b.as_bytes()),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, Some(200), "a valid request afterwards: {r:?}");
}

pub(crate) fn check(method: &str, path: &str, headers: HashMap<String, String>) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

pub(crate) fn hmap(headers: &[(&str, &str)]) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// gRPC code and HTTP status of a `CheckResponse`, and the denial's `WWW-Authenticate`.
pub(crate) fn grpc_parts(r: &CheckResponse) -> (i32, u16, Option<String>) {
    let code = r.status.as_ref().unwrap().code;
    match r.http_response.as_ref().unwrap() {
        HttpResponse::OkResponse(_) => (code, 200, None),
        HttpResponse::DeniedResponse(d) => {
            let www = d
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == "www-authenticate")
                .map(|h| h.value.clone());
            (code, d.status.as_ref().unwrap().code as u16, www)
        }
        HttpResponse::ErrorResponse(e) => panic!("keygate never answers an error: {e:?}"),
    }
}

pub(crate) async fn grpc_client(h: &Harness) -> AuthorizationClient<tonic::transport::Channel> {
    AuthorizationClient::connect(format!("http://{}", h.running().grpc.unwrap()))
        .await
        .unwrap()
        .max_encoding_message_size(8 * MIB)
        .max_decoding_message_size(8 * MIB)
}
