//! Envoy ext_authz v3 over gRPC.
//!
//! Allow: OK with identity headers (`OVERWRITE_IF_EXISTS_OR_ADD`, so a client-sent value is
//! replaced), `headers_to_remove` with the credential headers and the identity headers this key
//! does not set, and the identity as dynamic metadata. Deny: UNAUTHENTICATED (401),
//! PERMISSION_DENIED (403) or UNAVAILABLE (503) with a `denied_response` carrying the HTTP
//! status, the JSON body, `content-type` and `WWW-Authenticate`.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

use super::{credential_headers, identity, unset_identity};
use crate::core::decide::{Allow, Denial};
use crate::core::request::{self, Headers, Request};
use crate::metrics::Frontend;
use crate::service::Authorizer;

pub struct EnvoyGrpc {
    auth: Arc<Authorizer>,
}

impl EnvoyGrpc {
    pub fn new(auth: Arc<Authorizer>) -> EnvoyGrpc {
        EnvoyGrpc { auth }
    }

    pub fn into_service(self) -> envoy_types::ext_authz::v3::pb::AuthorizationServer<EnvoyGrpc> {
        envoy_types::ext_authz::v3::pb::AuthorizationServer::new(self)
    }

    pub async fn decide(&self, req: &CheckRequest) -> CheckResponse {
        let empty = HashMap::new();
        let http = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let (method, path, host) = http.map_or(("", "", None), |h| {
            (
                h.method.as_str(),
                h.path.as_str(),
                Some(h.host.as_str()).filter(|h| !h.is_empty()),
            )
        });
        let raw = http.and_then(|h| h.header_map.as_ref());
        let decision = match raw {
            Some(map) if !map.headers.is_empty() => {
                let headers = RawHeaders(&map.headers);
                let r = Request {
                    method,
                    path,
                    host,
                    headers: &headers,
                };
                self.auth.check(&r, Frontend::EnvoyGrpc).await
            }
            _ => {
                let headers = http.map_or(&empty, |h| &h.headers);
                let r = Request {
                    method,
                    path,
                    host,
                    headers,
                };
                self.auth.check(&r, Frontend::EnvoyGrpc).await
            }
        };
        match decision {
            Ok(a) => self.allow(&a),
            Err(d) => deny(&d),
        }
    }

    fn allow(&self, a: &Allow) -> CheckResponse {
        let s = &*self.auth.settings();
        let (set, n) = identity(s, a);
        let set = &set[..n];
        let headers = set
            .iter()
            .map(|(k, v)| header(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
            .collect();
        let headers_to_remove = credential_headers(s)
            .chain(unset_identity(s, set))
            .map(String::from)
            .collect();
        let fields: HashMap<String, Value> = [
            ("key_id", Some(&*a.key.id)),
            ("account", Some(&*a.key.account)),
            ("scopes", a.key.scopes.as_ref().map(|s| &*s.joined)),
            ("plan", a.plan.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.map(|v| {
                (
                    k.to_string(),
                    Value {
                        kind: Some(Kind::StringValue(v.to_string())),
                    },
                )
            })
        })
        .collect();
        CheckResponse {
            status: Some(rpc::Status {
                code: tonic::Code::Ok as i32,
                ..Default::default()
            }),
            dynamic_metadata: Some(Struct { fields }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove,
                ..Default::default()
            })),
        }
    }
}

fn header(k: &str, v: &str, action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: k.to_string(),
            value: v.to_string(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: action as i32,
        keep_empty_value: false,
    }
}

/// The denial as Envoy wants it.
pub fn deny(d: &Denial) -> CheckResponse {
    let (code, http) = match d.status() {
        401 => (tonic::Code::Unauthenticated, HttpStatusCode::Unauthorized),
        403 => (tonic::Code::PermissionDenied, HttpStatusCode::Forbidden),
        _ => (tonic::Code::Unavailable, HttpStatusCode::ServiceUnavailable),
    };
    let mut headers = vec![header(
        "content-type",
        "application/json",
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    )];
    if let Some(w) = d.www_authenticate() {
        headers.push(header(
            "www-authenticate",
            &w,
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            message: d.reason.as_str().to_string(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers,
            body: d.body().into_owned(),
        })),
    }
}

/// Envoy's `header_map` form (`encode_raw_headers: true`).
struct RawHeaders<'a>(&'a [HeaderValue]);

impl Headers for RawHeaders<'_> {
    fn get(&self, name: &str) -> request::HeaderValue<'_> {
        let mut found = request::HeaderValue::Absent;
        for h in self.0 {
            if h.key.eq_ignore_ascii_case(name) {
                if found != request::HeaderValue::Absent {
                    return request::HeaderValue::Many;
                }
                let v = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    &h.raw_value
                };
                found = request::HeaderValue::One(v);
            }
        }
        found
    }
}

#[tonic::async_trait]
impl Authorization for EnvoyGrpc {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.decide(request.get_ref()).await))
    }
}
