//! Envoy ext_authz v3 over gRPC.
//!
//! Allow: OK with identity headers (`OVERWRITE_IF_EXISTS_OR_ADD`, so a client-sent value is
//! replaced), `headers_to_remove` with the credential headers and the identity headers this key
//! does not set, the identity as dynamic metadata (with the key's metadata, when
//! `identity_headers.meta_prefix` is set, as headers and `meta.<key>` entries, client-sent
//! headers under the prefix removed), and the `RateLimit` fields of a limited key
//! as `response_headers_to_add` (for the client). Deny: UNAUTHENTICATED (401),
//! PERMISSION_DENIED (403), RESOURCE_EXHAUSTED (429) or UNAVAILABLE (503) with a
//! `denied_response` carrying the HTTP status, the JSON body, `content-type`,
//! `WWW-Authenticate` and the `RateLimit` fields with `Retry-After`.
//!
//! The service is written out here rather than taken from envoy-types' generated server so
//! that an allow can be encoded straight from the decision into tonic's send buffer
//! ([`Answer`]): building the message tree first (strings, a hash map, a dozen allocations)
//! cost more than deciding. That encoder is [`answer`].

mod answer;

pub use answer::{AllowAnswer, Answer};

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

use super::{credential_headers, set_identity, unset_identity};
use crate::core::decide::{Allow, Denial};
use crate::core::meta;
use crate::core::policy::Policy;
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

    /// The gRPC service for tonic's router.
    pub fn into_service(self) -> CheckService {
        CheckService(Arc::new(self))
    }

    /// The decision as a full `CheckResponse` message (for callers in the same process).
    pub async fn decide(&self, req: &CheckRequest) -> CheckResponse {
        match self.answer(req).await {
            Answer::Allow(a) => allow(&a.policy, &a.allow),
            Answer::Message(m) => *m,
        }
    }

    /// The decision as it goes on the wire.
    pub async fn answer(&self, req: &CheckRequest) -> Answer {
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
        let policy = &self.auth.settings().policy;
        match (decision, policy.identity.meta_prefix.as_deref()) {
            (Ok(a), Some(prefix)) => {
                let m = a.key.meta();
                // Two calls rather than one over a collected list: an allow without anything
                // to remove allocates nothing.
                let spoofed = match raw {
                    Some(map) if !map.headers.is_empty() => {
                        meta::spoofed(map.headers.iter().map(|h| h.key.as_bytes()), prefix, m)
                    }
                    _ => http.map_or_else(Vec::new, |h| {
                        meta::spoofed(h.headers.keys().map(|k| k.as_bytes()), prefix, m)
                    }),
                };
                if a.key.meta().is_none() && spoofed.is_empty() {
                    return Answer::Allow(AllowAnswer::new(policy.clone(), a));
                }
                let mut m = allow(policy, &a);
                with_meta(&mut m, prefix, &a, &spoofed);
                Answer::Message(Box::new(m))
            }
            (Ok(a), None) => Answer::Allow(AllowAnswer::new(policy.clone(), a)),
            (Err(d), _) => Answer::Message(Box::new(deny(&d))),
        }
    }
}

/// Adds the key's metadata to an allow: a header per entry, the client-sent headers under the
/// prefix that keygate does not set removed, and dynamic metadata `meta.<key>`.
fn with_meta(m: &mut CheckResponse, prefix: &str, a: &Allow, spoofed: &[&[u8]]) {
    let Some(HttpResponse::OkResponse(ok)) = &mut m.http_response else {
        return;
    };
    let entries = a.key.meta().into_iter().flatten();
    for (k, v) in entries.clone() {
        let name = meta::header_name(prefix, k);
        ok.headers
            .push(header(&name, v, HeaderAppendAction::OverwriteIfExistsOrAdd));
    }
    for n in spoofed {
        ok.headers_to_remove
            .push(String::from_utf8_lossy(n).to_ascii_lowercase());
    }
    if let Some(md) = &mut m.dynamic_metadata {
        for (k, v) in entries {
            let kind = Some(Kind::StringValue(v.clone()));
            md.fields.insert(format!("meta.{k}"), Value { kind });
        }
    }
}

/// The identity as dynamic metadata: `(field, value)`, a field without a value left out.
fn metadata(a: &Allow) -> [(&'static str, Option<&str>); 4] {
    [
        ("key_id", Some(a.key.id())),
        ("account", Some(a.key.account())),
        ("scopes", a.key.scopes().map(|s| &*s.joined)),
        ("plan", a.plan.as_deref()),
    ]
}

/// The allow as a message tree; [`Answer`] encodes the same bytes without building it.
pub fn allow(s: &Policy, a: &Allow) -> CheckResponse {
    let values = a.identity();
    let headers = set_identity(&s.identity, &values)
        .map(|(k, v)| header(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    let headers_to_remove = credential_headers(&s.schemes)
        .chain(unset_identity(&s.identity, &values))
        .map(String::from)
        .collect();
    let fields: HashMap<String, Value> = metadata(a)
        .into_iter()
        .filter_map(|(k, v)| {
            let kind = Some(Kind::StringValue(v?.to_string()));
            Some((k.to_string(), Value { kind }))
        })
        .collect();
    let response_headers_to_add = a.limit.as_ref().map_or_else(Vec::new, |l| {
        l.headers(false)
            .into_iter()
            .map(|(k, v)| header(k, &v, HeaderAppendAction::AppendIfExistsOrAdd))
            .collect()
    });
    CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            ..Default::default()
        }),
        dynamic_metadata: Some(Struct { fields }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            response_headers_to_add,
            ..Default::default()
        })),
    }
}

/// `envoy.service.auth.v3.Authorization` for tonic's router, answering with [`Answer`].
#[derive(Clone)]
pub struct CheckService(Arc<EnvoyGrpc>);

impl tonic::server::NamedService for CheckService {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<B> tower_service::Service<http::Request<B>> for CheckService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/envoy.service.auth.v3.Authorization/Check" {
            return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) });
        }
        let check = Check(self.0.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(
                tonic_prost::ProstCodec::<Answer, CheckRequest>::default(),
            );
            Ok(grpc.unary(check, req).await)
        })
    }
}

struct Check(Arc<EnvoyGrpc>);

impl tonic::server::UnaryService<CheckRequest> for Check {
    type Response = Answer;
    type Future = BoxFuture<tonic::Response<Answer>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let grpc = self.0.clone();
        Box::pin(async move { Ok(tonic::Response::new(grpc.answer(request.get_ref()).await)) })
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
    for (k, v) in d.limit_headers() {
        headers.push(header(k, &v, HeaderAppendAction::OverwriteIfExistsOrAdd));
    }
    if let Some(id) = d.request_id.as_deref() {
        headers.push(header(
            "x-request-id",
            id,
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: d.grpc_code(),
            message: d.reason.as_str().to_string(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            // `HttpStatusCode`'s values are the HTTP statuses themselves.
            status: Some(HttpStatus {
                code: d.status() as i32,
            }),
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
