//! The directives and what they configure:
//! - `keygate_config PATH;` (http): the keygate YAML config, parsed and validated by the
//!   master when nginx reads its config (`nginx -t` reports a bad field by name); it also
//!   claims the shared zone for the counters and nginx's `default` thread pool;
//! - `keygate on|off;` (http, server, location; inherited): check requests in the access phase;
//! - `keygate_metrics;` (location): answer with the Prometheus text.

use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::Arc;

use keygate_config::Settings;
use ngx::ffi::{
    NGX_CONF_UNSET, NGX_OK, ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_http_conf_ctx_t,
    ngx_http_core_loc_conf_t, ngx_http_core_module, ngx_shared_memory_add, ngx_shm_zone_t,
    ngx_str_t, ngx_thread_pool_add, ngx_thread_pool_t,
};

use crate::headers::bytes;

/// The http-level settings.
pub struct MainConf {
    pub settings: Option<Arc<Settings>>,
    /// A location has `keygate on` or `keygate_metrics`.
    pub used: bool,
    pub zone: *mut ngx_shm_zone_t,
    pub pool: *mut ngx_thread_pool_t,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            settings: None,
            used: false,
            zone: std::ptr::null_mut(),
            pool: std::ptr::null_mut(),
        }
    }
}

/// A location's settings.
pub struct LocConf {
    /// `keygate on`: 1, `off`: 0, unset: `NGX_CONF_UNSET`.
    pub enabled: isize,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            enabled: NGX_CONF_UNSET as isize,
        }
    }
}

impl LocConf {
    pub fn merge(&mut self, parent: &LocConf) {
        if self.enabled == NGX_CONF_UNSET as isize {
            self.enabled = if parent.enabled == NGX_CONF_UNSET as isize {
                0
            } else {
                parent.enabled
            };
        }
    }
}

/// The shared zone's name and size (64 KiB: the counters and 64 worker slots take 6 KiB;
/// the rest is the slab allocator's and room for a fresh copy across reloads).
const ZONE_NAME: &str = "keygate";
const ZONE_SIZE: usize = 64 * 1024;

/// nginx's `NGX_CONF_ERROR`.
const CONF_ERROR: *mut c_char = usize::MAX as *mut c_char;

/// A directive's arguments, the directive's own name first.
///
/// # Safety
/// `cf` is the configuration being read, inside a directive handler.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: cf->args holds the directive's words as ngx_str_t.
    unsafe { (*(*cf).args).as_slice::<ngx_str_t>() }
}

/// This module's main conf, from a directive handler's `cf`.
///
/// # Safety
/// `cf` is inside the http block.
unsafe fn main_conf<'a>(cf: *mut ngx_conf_t) -> &'a mut MainConf {
    // SAFETY: the http block's ctx holds every module's main conf; ours is a MainConf.
    unsafe {
        let ctx = (*cf).ctx.cast::<ngx_http_conf_ctx_t>();
        &mut *(*(*ctx).main_conf.add(crate::module::ctx_index())).cast::<MainConf>()
    }
}

/// Returns a message nginx prints after the directive's name ("… directive is duplicate").
fn message(m: &'static std::ffi::CStr) -> *mut c_char {
    m.as_ptr().cast_mut()
}

/// `keygate_config PATH;`
pub unsafe extern "C" fn set_config(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    crate::guard("keygate_config", CONF_ERROR, || {
        // SAFETY: nginx calls directive handlers with its config and our main conf.
        unsafe {
            let main = &mut *conf.cast::<MainConf>();
            if main.settings.is_some() {
                return message(c"is duplicate");
            }
            let mut name = args(cf)[1];
            if ngx_conf_full_name((*cf).cycle, &mut name, 1) != NGX_OK as isize {
                return CONF_ERROR;
            }
            let Ok(path) = std::str::from_utf8(bytes(&name)) else {
                return message(c"needs a UTF-8 path");
            };
            let settings = match Settings::load(Path::new(path)) {
                Ok(s) => s,
                Err(e) => {
                    ngx::ngx_conf_log_error!(ngx::ffi::NGX_LOG_EMERG, cf, "keygate: {path}: {e}");
                    return CONF_ERROR;
                }
            };
            main.settings = Some(Arc::new(settings));
            // Argon2 waits run as tasks of nginx's `default` pool (32 threads unless the
            // config declares it with `thread_pool default threads=N;`).
            main.pool = ngx_thread_pool_add(cf, std::ptr::null_mut());
            let mut zone_name = ngx_str_t {
                len: ZONE_NAME.len(),
                data: ZONE_NAME.as_ptr().cast_mut(),
            };
            let zone = ngx_shared_memory_add(cf, &mut zone_name, ZONE_SIZE, crate::module::tag());
            if main.pool.is_null() || zone.is_null() {
                return CONF_ERROR;
            }
            (*zone).init = Some(crate::module::init_zone);
            main.zone = zone;
            std::ptr::null_mut()
        }
    })
}

/// `keygate on|off;`
pub unsafe extern "C" fn set_enabled(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    crate::guard("keygate", CONF_ERROR, || {
        // SAFETY: nginx calls directive handlers with its config and our location conf.
        unsafe {
            let loc = &mut *conf.cast::<LocConf>();
            if loc.enabled != NGX_CONF_UNSET as isize {
                return message(c"is duplicate");
            }
            loc.enabled = match bytes(&args(cf)[1]) {
                b"on" => 1,
                b"off" => 0,
                _ => return message(c"takes \"on\" or \"off\""),
            };
            if loc.enabled == 1 {
                main_conf(cf).used = true;
            }
            std::ptr::null_mut()
        }
    })
}

/// `keygate_metrics;`
pub unsafe extern "C" fn set_metrics(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    crate::guard("keygate_metrics", CONF_ERROR, || {
        // SAFETY: inside a location block: its ctx holds the core module's location conf.
        unsafe {
            let ctx = (*cf).ctx.cast::<ngx_http_conf_ctx_t>();
            let clcf = (*(*ctx).loc_conf.add(ngx_http_core_module.ctx_index))
                .cast::<ngx_http_core_loc_conf_t>();
            (*clcf).handler = Some(crate::module::metrics_handler);
            main_conf(cf).used = true;
            std::ptr::null_mut()
        }
    })
}

/// Checks, once the http block is read, that locations using keygate have its config.
///
/// # Safety
/// `cf` is the http block's configuration, in postconfiguration.
pub unsafe fn check(cf: *mut ngx_conf_t) -> Result<&'static MainConf, ()> {
    // SAFETY: the caller's contract.
    unsafe {
        let main = main_conf(cf);
        if main.used && main.settings.is_none() {
            ngx::ngx_conf_log_error!(
                ngx::ffi::NGX_LOG_EMERG,
                cf,
                "keygate: \"keygate on\" and \"keygate_metrics\" need \"keygate_config\" in the \
                 http block"
            );
            return Err(());
        }
        Ok(main)
    }
}
