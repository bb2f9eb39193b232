//! Local replies: a denial answered by Envoy itself, with keygate's status, JSON body,
//! `WWW-Authenticate`, limit fields and the request's id; and the 500 of a hook that panicked.

use keygate_core::decide::Denial;

use crate::abi::{self, FilterEnvoyPtr, ModuleBuffer, ModuleHttpHeader};

/// A local reply with the denial's status, JSON body, `WWW-Authenticate` and limit fields.
pub fn deny(envoy: FilterEnvoyPtr, d: &Denial) {
    let www = d.www_authenticate();
    let limit = d.limit_headers();
    let mut headers = vec![header("content-type", "application/json")];
    if let Some(w) = &www {
        headers.push(header("www-authenticate", w));
    }
    headers.extend(limit.iter().map(|(k, v)| header(k, v)));
    if let Some(id) = d.request_id.as_deref() {
        headers.push(header("x-request-id", id));
    }
    let body = d.body();
    let details = format!("keygate_{}", d.reason.as_str());
    // SAFETY: on the worker, in the stream's hook; Envoy copies everything before returning.
    unsafe {
        abi::envoy_dynamic_module_callback_http_send_response(
            envoy,
            u32::from(d.status()),
            headers.as_ptr(),
            headers.len(),
            ModuleBuffer::of(body.as_bytes()),
            ModuleBuffer::of(details.as_bytes()),
        );
    }
}

/// The answer to a request whose hook panicked: 500 with a JSON body, never an allow.
pub fn internal_error(envoy: FilterEnvoyPtr) {
    let headers = [header("content-type", "application/json")];
    let body = r#"{"error":"internal_error","message":"The authorizer failed on this request"}"#;
    // SAFETY: as in `deny`.
    unsafe {
        abi::envoy_dynamic_module_callback_http_send_response(
            envoy,
            500,
            headers.as_ptr(),
            headers.len(),
            ModuleBuffer::of(body.as_bytes()),
            ModuleBuffer::of(b"keygate_panic"),
        );
    }
}

pub fn header<'a>(k: &'a str, v: &'a str) -> ModuleHttpHeader {
    ModuleHttpHeader {
        key_ptr: k.as_ptr(),
        key_len: k.len(),
        value_ptr: v.as_ptr(),
        value_len: v.len(),
    }
}
