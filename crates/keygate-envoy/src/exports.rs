//! The hooks Envoy calls, exported with the names its loader looks up (all 21 an HTTP filter
//! module must have). Each is a thin guard: a panic inside is caught and never crosses into
//! Envoy (it would take the proxy down); a request whose hook panicked is refused, never let
//! through: it gets a 500 at once instead of waiting for a timeout.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::abi::{self, EnvoyBuffer, FilterConfigEnvoyPtr, FilterEnvoyPtr};
use crate::config::FilterConfig;
use crate::filter::Filter;
use crate::log::log;

/// Runs `f`, answering `fallback` if it panics.
fn guard<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log(
            abi::LOG_ERROR,
            &format!("keygate: panic in {what}; refusing"),
        );
        fallback
    })
}

/// [`guard`] for a hook that owes the stream an answer: after a panic the request is refused
/// with a 500 (no allow, and no stream left hanging until its timeout).
fn guard_request<T>(what: &str, envoy: FilterEnvoyPtr, fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log(
            abi::LOG_ERROR,
            &format!("keygate: panic in {what}; refusing with 500"),
        );
        guard("the refusal", (), || crate::reply::internal_error(envoy));
        fallback
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    guard("program init", std::ptr::null(), || {
        crate::log::install();
        crate::ABI_VERSION.as_ptr()
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: FilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard("config_new", std::ptr::null(), || {
        // SAFETY: Envoy passes the filter_config bytes for the duration of this call.
        let raw = unsafe { config.bytes() };
        match FilterConfig::new(envoy, raw) {
            Some(c) => Arc::into_raw(Arc::new(c)).cast(),
            None => std::ptr::null(),
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard("config_destroy", (), || {
        if !config.is_null() {
            // SAFETY: made by Arc::into_raw in config_new; Envoy destroys it once.
            drop(unsafe { Arc::from_raw(config.cast::<FilterConfig>()) });
        }
    })
}

/// The config scheduler's event (see [`crate::stats`]), on the main thread.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    _event: u64,
) {
    guard("config_scheduled", (), || {
        if !config.is_null() {
            // SAFETY: the config is alive until config_destroy, which deletes the scheduler
            // (stopping its events) before dropping it.
            unsafe { &*config.cast::<FilterConfig>() }.flush(envoy);
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _envoy: FilterEnvoyPtr,
) -> *const c_void {
    // A null filter makes Envoy answer 500 without running any other hook: fail closed.
    guard("filter_new", std::ptr::null(), || {
        // SAFETY: the config outlives its filters (Envoy destroys filters first); the count
        // taken here keeps it alive even if not.
        let config = unsafe {
            Arc::increment_strong_count(config.cast::<FilterConfig>());
            Arc::from_raw(config.cast::<FilterConfig>())
        };
        Box::into_raw(Box::new(Filter::new(config)))
            .cast_const()
            .cast()
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    guard("filter_destroy", (), || {
        if !filter.is_null() {
            // SAFETY: made by Box::into_raw in filter_new; Envoy destroys it once, after the
            // last hook returned.
            drop(unsafe { Box::from_raw(filter.cast_mut().cast::<Filter>()) });
        }
    })
}

/// # Safety
/// `filter` is what `filter_new` returned, not destroyed yet, and used on its stream's worker
/// only. A hook may run inside another (see [`Filter`]): only shared references are made.
unsafe fn filter<'a>(filter: *const c_void) -> &'a Filter {
    // SAFETY: the caller's contract.
    unsafe { &*filter.cast::<Filter>() }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    f: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    guard_request(
        "request_headers",
        envoy,
        abi::HEADERS_STOP_ITERATION,
        || {
            // SAFETY: Envoy's hook for this filter, on its worker.
            unsafe { filter(f) }.on_request_headers(envoy)
        },
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    envoy: FilterEnvoyPtr,
    f: *const c_void,
    _event: u64,
) {
    guard_request("scheduled", envoy, (), || {
        // SAFETY: as for request_headers.
        unsafe { filter(f) }.on_scheduled(envoy)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    f: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    guard("response_headers", abi::HEADERS_CONTINUE, || {
        // SAFETY: as for request_headers.
        unsafe { filter(f) }.on_response_headers(envoy)
    })
}

// The hooks below keygate does not use: pass everything on, touching no state.

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: bool,
) -> u32 {
    abi::BODY_CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _: FilterEnvoyPtr,
    _: *const c_void,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: bool,
) -> u32 {
    abi::BODY_CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _: FilterEnvoyPtr,
    _: *const c_void,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _: FilterEnvoyPtr,
    _: *const c_void,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: u64,
    _: u32,
    _: *const c_void,
    _: usize,
    _: *const c_void,
    _: usize,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: u64,
    _: *const c_void,
    _: usize,
    _: bool,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: u64,
    _: *const c_void,
    _: usize,
    _: bool,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: u64,
    _: *const c_void,
    _: usize,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: u64,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _: u64,
    _: u32,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: FilterEnvoyPtr,
    _: *const c_void,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: FilterEnvoyPtr,
    _: *const c_void,
) {
}
