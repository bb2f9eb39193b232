//! Envoy ext_authz v3 over gRPC.
//!
//! Allow: OK with identity headers (`OVERWRITE_IF_EXISTS_OR_ADD`, so a client-sent value is
//! replaced), `headers_to_remove` with the credential headers and the identity headers this key
//! does not set, and the identity as dynamic metadata. Deny: UNAUTHENTICATED (401),
//! PERMISSION_DENIED (403) or UNAVAILABLE (503) with a `denied_response` carrying the HTTP
//! status, the JSON body, `content-type` and `WWW-Authenticate`.
//!
//! The service is written out here rather than taken from envoy-types' generated server so
//! that an allow can be encoded straight from the decision into tonic's send buffer
//! ([`Answer`]): building the message tree first (strings, a hash map, a dozen allocations)
//! cost more than deciding.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

use super::{credential_headers, set_identity, unset_identity};
use crate::core::decide::{Allow, Denial};
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
        match decision {
            Ok(a) => Answer::Allow(AllowAnswer::new(self.auth.settings().policy.clone(), a)),
            Err(d) => Answer::Message(Box::new(deny(&d))),
        }
    }
}

/// The identity as dynamic metadata: `(field, value)`, a field without a value left out.
fn metadata(a: &Allow) -> [(&'static str, Option<&str>); 4] {
    [
        ("key_id", Some(&*a.key.id)),
        ("account", Some(&*a.key.account)),
        ("scopes", a.key.scopes.as_ref().map(|s| &*s.joined)),
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

/// What `Check` sends: an allow, encoded from the decision as [`allow`] would build it, or
/// any other answer as a message. Only ever encoded (the server never receives one).
pub enum Answer {
    Allow(AllowAnswer),
    Message(Box<CheckResponse>),
}

/// An allow with the content lengths of its `OkHttpResponse` and metadata `Struct`, counted
/// once: prost asks for the total length before it encodes.
pub struct AllowAnswer {
    policy: Arc<Policy>,
    allow: Allow,
    ok_len: usize,
    meta_len: usize,
}

impl AllowAnswer {
    fn new(policy: Arc<Policy>, allow: Allow) -> AllowAnswer {
        let (ok_len, meta_len) = allow_lens(&policy, &allow);
        AllowAnswer {
            policy,
            allow,
            ok_len,
            meta_len,
        }
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Allow(a) => write!(f, "Answer::Allow({})", a.allow.key.id),
            Answer::Message(m) => write!(f, "Answer::Message({m:?})"),
        }
    }
}

impl Default for Answer {
    fn default() -> Answer {
        Answer::Message(Box::default())
    }
}

// Field numbers of envoy.service.auth.v3 and the messages it uses.
const CHECK_STATUS: u32 = 1;
const CHECK_OK_RESPONSE: u32 = 3;
const CHECK_DYNAMIC_METADATA: u32 = 4;
const OK_HEADERS: u32 = 2;
const OK_HEADERS_TO_REMOVE: u32 = 5;
const OPTION_HEADER: u32 = 1;
const OPTION_APPEND_ACTION: u32 = 3;
const HEADER_KEY: u32 = 1;
const HEADER_VALUE: u32 = 2;
const STRUCT_FIELDS: u32 = 1;
const MAP_KEY: u32 = 1;
const MAP_VALUE: u32 = 2;
const VALUE_STRING: u32 = 3;
const OVERWRITE: u64 = HeaderAppendAction::OverwriteIfExistsOrAdd as u64;

/// A length-delimited field of `len` bytes of content, with its tag and length.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_head(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_str(tag: u32, v: &str, buf: &mut impl BufMut) {
    put_head(tag, v.len(), buf);
    buf.put_slice(v.as_bytes());
}

/// A proto3 singular string: left out when empty.
fn opt_str_len(tag: u32, v: &str) -> usize {
    if v.is_empty() {
        0
    } else {
        field_len(tag, v.len())
    }
}

fn put_opt_str(tag: u32, v: &str, buf: &mut impl BufMut) {
    if !v.is_empty() {
        put_str(tag, v, buf);
    }
}

fn header_len(k: &str, v: &str) -> usize {
    opt_str_len(HEADER_KEY, k) + opt_str_len(HEADER_VALUE, v)
}

fn option_len(k: &str, v: &str) -> usize {
    field_len(OPTION_HEADER, header_len(k, v))
        + key_len(OPTION_APPEND_ACTION)
        + encoded_len_varint(OVERWRITE)
}

/// One entry of `Struct.fields`: the key (left out when empty, as for any map) and a `Value`
/// whose `string_value` is always written (a oneof member).
fn entry_len(k: &str, v: &str) -> usize {
    opt_str_len(MAP_KEY, k) + field_len(MAP_VALUE, field_len(VALUE_STRING, v.len()))
}

fn encode_allow(answer: &AllowAnswer, buf: &mut impl BufMut) {
    let (s, a) = (&*answer.policy, &answer.allow);
    let values = a.identity();
    put_head(CHECK_STATUS, 0, buf);
    put_head(CHECK_OK_RESPONSE, answer.ok_len, buf);
    for (k, v) in set_identity(&s.identity, &values) {
        put_head(OK_HEADERS, option_len(k, v), buf);
        put_head(OPTION_HEADER, header_len(k, v), buf);
        put_opt_str(HEADER_KEY, k, buf);
        put_opt_str(HEADER_VALUE, v, buf);
        encode_key(OPTION_APPEND_ACTION, WireType::Varint, buf);
        encode_varint(OVERWRITE, buf);
    }
    for name in credential_headers(&s.schemes).chain(unset_identity(&s.identity, &values)) {
        put_str(OK_HEADERS_TO_REMOVE, name, buf);
    }
    put_head(CHECK_DYNAMIC_METADATA, answer.meta_len, buf);
    for (k, v) in metadata(a) {
        if let Some(v) = v {
            put_head(STRUCT_FIELDS, entry_len(k, v), buf);
            put_opt_str(MAP_KEY, k, buf);
            put_head(MAP_VALUE, field_len(VALUE_STRING, v.len()), buf);
            put_str(VALUE_STRING, v, buf);
        }
    }
}

/// Content lengths of the `OkHttpResponse` and of the metadata `Struct`.
fn allow_lens(s: &Policy, a: &Allow) -> (usize, usize) {
    let values = a.identity();
    let headers: usize = set_identity(&s.identity, &values)
        .map(|(k, v)| field_len(OK_HEADERS, option_len(k, v)))
        .sum();
    let removed: usize = credential_headers(&s.schemes)
        .chain(unset_identity(&s.identity, &values))
        .map(|name| field_len(OK_HEADERS_TO_REMOVE, name.len()))
        .sum();
    let meta = metadata(a)
        .into_iter()
        .filter_map(|(k, v)| Some(field_len(STRUCT_FIELDS, entry_len(k, v?))))
        .sum();
    (headers + removed, meta)
}

impl prost::Message for Answer {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Answer::Allow(a) => encode_allow(a, buf),
            Answer::Message(m) => m.encode_raw(buf),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match self {
            Answer::Allow(a) => {
                field_len(CHECK_STATUS, 0)
                    + field_len(CHECK_OK_RESPONSE, a.ok_len)
                    + field_len(CHECK_DYNAMIC_METADATA, a.meta_len)
            }
            Answer::Message(m) => m.encoded_len(),
        }
    }

    fn clear(&mut self) {
        *self = Answer::default();
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
