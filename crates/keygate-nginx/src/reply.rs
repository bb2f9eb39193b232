//! Complete responses keygate writes itself: a denial from the access phase (keygate's status,
//! JSON body, `WWW-Authenticate`, `Retry-After` and limit fields, as the sidecar answers) and
//! the metrics text from a content handler. nginx's `error_page` never replaces them: the
//! body a client gets is keygate's.

use keygate_core::decide::Denial;
use ngx::ffi::{
    NGX_DONE, NGX_ERROR, NGX_HTTP_LAST, NGX_OK, ngx_chain_t, ngx_create_temp_buf,
    ngx_http_discard_request_body, ngx_http_finalize_request, ngx_http_output_filter,
    ngx_http_request_t, ngx_http_send_header, ngx_http_send_special, ngx_int_t, ngx_list_push,
    ngx_str_t, ngx_table_elt_t,
};

use crate::headers::NoMemory;

/// Refuses `r` from the access phase with keygate's answer for `d`, and finalizes it.
/// Returns what the access phase handler returns (`NGX_DONE`: the request is answered).
///
/// # Safety
/// `r` is a live main request in its access phase, on its worker; it may be freed on return.
pub unsafe fn deny(r: *mut ngx_http_request_t, d: &Denial) -> ngx_int_t {
    let www = d.www_authenticate();
    let limit = d.limit_headers();
    let mut headers: Vec<(&'static str, &str)> = Vec::with_capacity(4);
    if let Some(w) = &www {
        headers.push(("www-authenticate", w));
    }
    headers.extend(limit.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(id) = d.request_id.as_deref() {
        headers.push(("x-request-id", id));
    }
    let body = d.body();
    // SAFETY: the caller's contract.
    unsafe {
        let rc = send(r, d.status(), "application/json", &headers, body.as_bytes());
        ngx_http_finalize_request(r, rc);
    }
    NGX_DONE as ngx_int_t
}

/// Sends a whole response: status, `Content-Type`, `headers` (lowercase names) and `body`.
/// Returns the code to finalize the request with.
///
/// # Safety
/// `r` is a live main request whose response has not started, on its worker.
pub unsafe fn send(
    r: *mut ngx_http_request_t,
    status: u16,
    content_type: &'static str,
    headers: &[(&'static str, &str)],
    body: &[u8],
) -> ngx_int_t {
    // SAFETY: the caller's contract; every header and the body are copied into the request's
    // pool, names and the content type are 'static.
    unsafe {
        // A body the client is still sending must be read and dropped before the answer, or
        // the connection cannot be kept alive.
        let rc = ngx_http_discard_request_body(r);
        if rc != NGX_OK as ngx_int_t {
            return rc;
        }
        let out = &mut (*r).headers_out;
        out.status = usize::from(status);
        out.content_length_n = body.len() as _;
        out.content_type = static_str(content_type);
        out.content_type_len = content_type.len();
        out.content_type_lowcase = std::ptr::null_mut();
        for (name, value) in headers {
            let Ok(h) = push_header(r, name, value.as_bytes()) else {
                return NGX_ERROR as ngx_int_t;
            };
            if *name == "www-authenticate" {
                (*r).headers_out.www_authenticate = h;
            }
        }
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
            return rc;
        }
        if body.is_empty() {
            return ngx_http_send_special(r, NGX_HTTP_LAST as _);
        }
        let b = ngx_create_temp_buf((*r).pool, body.len());
        if b.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        std::ptr::copy_nonoverlapping(body.as_ptr(), (*b).pos, body.len());
        (*b).last = (*b).pos.add(body.len());
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        let mut chain = ngx_chain_t {
            buf: b,
            next: std::ptr::null_mut(),
        };
        ngx_http_output_filter(r, &mut chain)
    }
}

/// Appends a response header; the name is 'static, the value copied into the pool.
///
/// # Safety
/// `r` is a live request on its worker whose headers have not been sent.
pub unsafe fn push_header(
    r: *mut ngx_http_request_t,
    name: &'static str,
    value: &[u8],
) -> Result<*mut ngx_table_elt_t, NoMemory> {
    // SAFETY: the caller's contract.
    unsafe {
        let h = ngx_list_push(&mut (*r).headers_out.headers).cast::<ngx_table_elt_t>();
        if h.is_null() {
            return Err(NoMemory);
        }
        let data = ngx::ffi::ngx_pnalloc((*r).pool, value.len().max(1)).cast::<u8>();
        if data.is_null() {
            // An element pushed but not filled would be sent: mark it deleted.
            (*h).hash = 0;
            return Err(NoMemory);
        }
        std::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        h.write(ngx_table_elt_t {
            // Non-zero: a live response header (0 marks a deleted one).
            hash: 1,
            key: static_str(name),
            value: ngx_str_t {
                len: value.len(),
                data,
            },
            lowcase_key: std::ptr::null_mut(),
        });
        Ok(h)
    }
}

fn static_str(s: &'static str) -> ngx_str_t {
    ngx_str_t {
        len: s.len(),
        // nginx never writes through a header name or content type it did not allocate.
        data: s.as_ptr().cast_mut(),
    }
}
