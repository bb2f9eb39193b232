//! The `CheckResponse` of an allow, encoded straight from the decision into the send buffer
//! with prost's wire primitives: the same bytes as the message tree [`super::allow`] builds
//! (a test proves it), without building it.

use std::sync::Arc;

use bytes::{Buf, BufMut};
use envoy_types::ext_authz::v3::pb::{CheckResponse, HeaderAppendAction};
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};

use super::metadata;
use crate::core::decide::Allow;
use crate::core::policy::Policy;
use crate::frontend::{credential_headers, set_identity, unset_identity};

/// What `Check` sends: an allow, encoded from the decision as [`allow`] would build it, or
/// any other answer as a message. Only ever encoded (the server never receives one).
pub enum Answer {
    Allow(AllowAnswer),
    Message(Box<CheckResponse>),
}

/// An allow with the content lengths of its `OkHttpResponse` and metadata `Struct`, counted
/// once: prost asks for the total length before it encodes.
pub struct AllowAnswer {
    pub(super) policy: Arc<Policy>,
    pub(super) allow: Allow,
    /// The `RateLimit` fields for the client, formatted once for both passes.
    fields: Vec<(&'static str, String)>,
    ok_len: usize,
    meta_len: usize,
}

impl AllowAnswer {
    pub(super) fn new(policy: Arc<Policy>, allow: Allow) -> AllowAnswer {
        let fields = allow
            .limit
            .as_ref()
            .map_or_else(Vec::new, |l| l.headers(false));
        let (ok_len, meta_len) = allow_lens(&policy, &allow, &fields);
        AllowAnswer {
            policy,
            allow,
            fields,
            ok_len,
            meta_len,
        }
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Allow(a) => write!(f, "Answer::Allow({})", a.allow.key.id()),
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
const OK_RESPONSE_HEADERS_TO_ADD: u32 = 6;
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

/// A `HeaderValueOption` that appends: the action is the default, so it is left out.
fn append_len(k: &str, v: &str) -> usize {
    field_len(OPTION_HEADER, header_len(k, v))
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
    for (k, v) in &answer.fields {
        put_head(OK_RESPONSE_HEADERS_TO_ADD, append_len(k, v), buf);
        put_head(OPTION_HEADER, header_len(k, v), buf);
        put_opt_str(HEADER_KEY, k, buf);
        put_opt_str(HEADER_VALUE, v, buf);
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
fn allow_lens(s: &Policy, a: &Allow, fields: &[(&str, String)]) -> (usize, usize) {
    let values = a.identity();
    let headers: usize = set_identity(&s.identity, &values)
        .map(|(k, v)| field_len(OK_HEADERS, option_len(k, v)))
        .sum();
    let removed: usize = credential_headers(&s.schemes)
        .chain(unset_identity(&s.identity, &values))
        .map(|name| field_len(OK_HEADERS_TO_REMOVE, name.len()))
        .sum();
    let added: usize = fields
        .iter()
        .map(|(k, v)| field_len(OK_RESPONSE_HEADERS_TO_ADD, append_len(k, v)))
        .sum();
    let meta = metadata(a)
        .into_iter()
        .filter_map(|(k, v)| Some(field_len(STRUCT_FIELDS, entry_len(k, v?))))
        .sum();
    (headers + removed + added, meta)
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
