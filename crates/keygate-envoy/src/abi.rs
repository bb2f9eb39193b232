//! The part of Envoy's dynamic module ABI keygate uses, written out by hand.
//!
//! Written for the ABI of Envoy [`ENVOY_VERSION`](crate::ENVOY_VERSION) ("v0.2.0"), whose
//! header is `source/extensions/dynamic_modules/abi/abi.h` in Envoy's tree; every declaration
//! below was checked against that binary (the test `envoy_module` checks with `nm -D` that each
//! callback imported here exists in it). Envoy-owned buffers are valid only during the hook
//! that received them: copy what is kept. Module-owned buffers passed in are copied by Envoy
//! before the call returns. Per-stream callbacks may be called only on the stream's worker
//! thread, from one of its hooks; the scheduler's commit and delete from any thread.

#![allow(non_camel_case_types)]

use std::ffi::c_void;

/// A module-owned byte range passed to Envoy (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub len: usize,
}

impl ModuleBuffer {
    pub fn of(s: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        len: 0,
    };
}

/// An Envoy-owned byte range (`envoy_dynamic_module_type_envoy_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub len: usize,
}

impl EnvoyBuffer {
    /// The bytes, valid for as long as Envoy keeps them (the current hook).
    ///
    /// # Safety
    /// Envoy must have filled this buffer in the current hook.
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: Envoy points at `len` bytes it owns for the rest of the hook.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A header as Envoy lists it (`envoy_dynamic_module_type_envoy_http_header`), Envoy-owned.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_len: usize,
    pub value_ptr: *const u8,
    pub value_len: usize,
}

/// A key and value (`envoy_dynamic_module_type_module_key_value_pair`).
#[repr(C)]
pub struct ModuleKeyValue {
    pub key_ptr: *const u8,
    pub key_len: usize,
    pub value_ptr: *const u8,
    pub value_len: usize,
}

/// A header of a local reply (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_len: usize,
    pub value_ptr: *const u8,
    pub value_len: usize,
}

pub type FilterConfigEnvoyPtr = *mut c_void;
pub type FilterEnvoyPtr = *mut c_void;
pub type SchedulerPtr = *mut c_void;
pub type ConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status`.
pub const HEADERS_CONTINUE: u32 = 0;
pub const HEADERS_STOP_ITERATION: u32 = 1;
/// Also holds the body back while a decision is pending: with plain StopIteration Envoy still
/// calls the body hook, and a `Continue` there would forward the request undecided.
pub const HEADERS_STOP_ALL_AND_BUFFER: u32 = 3;
/// `..._request_body_status` / `..._response_body_status`.
pub const BODY_CONTINUE: u32 = 0;
/// `..._trailers_status`.
pub const TRAILERS_CONTINUE: u32 = 0;

/// `envoy_dynamic_module_type_log_level`.
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

/// `envoy_dynamic_module_type_metrics_result::Success`.
pub const METRICS_OK: u32 = 0;

unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_log_v2(
        level: u32,
        message: ModuleBuffer,
        source_file: ModuleBuffer,
        source_line: u32,
    );
    pub fn envoy_dynamic_module_callback_is_validation_mode() -> bool;

    /// How many request headers there are (pseudo-headers included).
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    /// Every request header, into `result` (room for `get_headers_size` entries).
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result: *mut EnvoyHttpHeader,
    ) -> bool;
    /// Replaces every value of a header; a null or empty value removes it.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// Adds a value to a header (a new header if absent); an empty value does nothing.
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status: u32,
        headers: *const ModuleHttpHeader,
        headers_len: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    /// Sets string values under `namespace` in the stream's dynamic metadata, in one call.
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
        filter: FilterEnvoyPtr,
        namespace: ModuleBuffer,
        entries: *const ModuleKeyValue,
        entries_len: usize,
    );
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);

    /// A scheduler for the filter config: its events run `on_http_filter_config_scheduled` on
    /// the main thread. Made in config_new; commit from any thread; deleted once.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: FilterConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: ConfigSchedulerPtr,
    );

    /// Config-level recorders: no stream needed (called on the main thread).
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
}
