//! A request's headers as Envoy lends them for the length of one hook: listed once per
//! decision, read by the core through [`Headers`]. A write to the request's headers frees the
//! entries it replaces or removes, so a list is not read once its hook has written.

use keygate_core::request::{HeaderValue, Headers};

use crate::abi::{self, FilterEnvoyPtr};

/// A request's headers, listed from Envoy once per decision (one call instead of one per
/// header the core looks at). Envoy lowercases names; repeated headers are separate entries.
pub struct EnvoyHeaders<'a> {
    list: Vec<abi::EnvoyHttpHeader>,
    /// The buffers live for the rest of the hook.
    hook: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> EnvoyHeaders<'a> {
    /// The request headers of `envoy`, valid for the rest of the current hook (`'a`).
    pub fn read(envoy: FilterEnvoyPtr) -> EnvoyHeaders<'a> {
        let empty = abi::EnvoyHttpHeader {
            key_ptr: std::ptr::null(),
            key_len: 0,
            value_ptr: std::ptr::null(),
            value_len: 0,
        };
        // SAFETY: called within one of the stream's hooks on its worker; Envoy fills `n`
        // entries pointing at buffers it keeps for the rest of the hook.
        let list = unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_headers_size(
                envoy,
                abi::REQUEST_HEADER,
            );
            let mut list = vec![empty; n];
            let ok = n > 0
                && abi::envoy_dynamic_module_callback_http_get_headers(
                    envoy,
                    abi::REQUEST_HEADER,
                    list.as_mut_ptr(),
                );
            if !ok {
                list.clear();
            }
            list
        };
        EnvoyHeaders {
            list,
            hook: std::marker::PhantomData,
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        let bytes = |p: *const u8, l: usize| -> &'a [u8] {
            if p.is_null() {
                &[]
            } else {
                // SAFETY: Envoy's buffer, alive for the rest of the hook (`'a`).
                unsafe { std::slice::from_raw_parts(p, l) }
            }
        };
        self.list
            .iter()
            .map(move |h| (bytes(h.key_ptr, h.key_len), bytes(h.value_ptr, h.value_len)))
    }

    pub fn one(&self, name: &str) -> Option<&'a [u8]> {
        match self.find(name) {
            HeaderValue::One(v) => Some(v),
            _ => None,
        }
    }

    fn find(&self, name: &str) -> HeaderValue<'a> {
        let mut found = HeaderValue::Absent;
        for (k, v) in self.entries() {
            if k == name.as_bytes() {
                if found != HeaderValue::Absent {
                    return HeaderValue::Many;
                }
                found = HeaderValue::One(v);
            }
        }
        found
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries().any(|(k, _)| k == name.as_bytes())
    }
}

impl Headers for EnvoyHeaders<'_> {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        self.find(name)
    }
}
