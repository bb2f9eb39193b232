//! Every function nginx calls (besides the directive handlers in [`crate::conf`] and the
//! thread pool's in [`crate::park`]): configuration hooks, the worker's start and exit, the
//! access handler, the header filter and the metrics handler. Each is a thin guard: a panic
//! inside is caught and never crosses into nginx (it would take the worker down); a request
//! whose check panicked is refused with a 500, never let through.

use std::ffi::{c_char, c_void};

use ngx::ffi::{
    NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED,
    NGX_OK, NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER, ngx_array_push, ngx_conf_t, ngx_cycle_t,
    ngx_http_core_main_conf_t, ngx_http_core_module, ngx_http_handler_pt,
    ngx_http_output_header_filter_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_request_t,
    ngx_http_top_header_filter, ngx_int_t, ngx_palloc, ngx_pool_cleanup_add, ngx_process,
    ngx_shm_zone_t, ngx_slab_calloc, ngx_slab_pool_t, ngx_worker,
};

use crate::conf::{LocConf, MainConf};
use crate::ctx::State;
use crate::guard;
use crate::shared::Shared;

/// Allocates a `T` in the config's pool, dropped with it (null if the pool is out of memory).
unsafe fn alloc_conf<T: Default>(cf: *mut ngx_conf_t) -> *mut c_void {
    unsafe extern "C" fn drop_value<T>(data: *mut c_void) {
        // SAFETY: written by alloc_conf; the pool runs each cleanup once.
        unsafe { std::ptr::drop_in_place(data.cast::<T>()) }
    }
    // SAFETY: nginx's config pool; the cleanup drops the value when the pool goes (a reload
    // or exit), in the process that made it.
    unsafe {
        let pool = (*cf).pool;
        let p = ngx_palloc(pool, size_of::<T>()).cast::<T>();
        let cln = ngx_pool_cleanup_add(pool, 0);
        if p.is_null() || cln.is_null() {
            return std::ptr::null_mut();
        }
        p.write(T::default());
        (*cln).handler = Some(drop_value::<T>);
        (*cln).data = p.cast();
        p.cast()
    }
}

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    guard("create_main_conf", std::ptr::null_mut(), || unsafe {
        alloc_conf::<MainConf>(cf)
    })
}

pub unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    guard("create_loc_conf", std::ptr::null_mut(), || unsafe {
        alloc_conf::<LocConf>(cf)
    })
}

pub unsafe extern "C" fn merge_loc_conf(
    _cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    guard("merge_loc_conf", usize::MAX as *mut c_char, || {
        // SAFETY: both made by create_loc_conf.
        unsafe { (*child.cast::<LocConf>()).merge(&*parent.cast::<LocConf>()) };
        std::ptr::null_mut()
    })
}

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;

/// Registers the access handler and the header filter, once the http block is read.
pub unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    guard("postconfiguration", NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx's http block config; the phase arrays and the filter chain are set up
        // here and only here, on the master's single thread.
        unsafe {
            let Ok(main) = crate::conf::check(cf) else {
                return NGX_ERROR as ngx_int_t;
            };
            if main.settings.is_none() {
                return NGX_OK as ngx_int_t;
            }
            let ctx = (*cf).ctx.cast::<ngx::ffi::ngx_http_conf_ctx_t>();
            let cmcf = (*(*ctx).main_conf.add(ngx_http_core_module.ctx_index))
                .cast::<ngx_http_core_main_conf_t>();
            let phase = ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize;
            let h =
                ngx_array_push(&mut (*cmcf).phases[phase].handlers).cast::<ngx_http_handler_pt>();
            if h.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            *h = Some(access_handler);
            NEXT_HEADER_FILTER = ngx_http_top_header_filter;
            ngx_http_top_header_filter = Some(header_filter);
            NGX_OK as ngx_int_t
        }
    })
}

/// The counters' zone: nginx's data from the previous cycle if it is ours, else a fresh one.
pub unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    guard("init_zone", NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx maps the zone before calling; its start is the slab pool.
        unsafe {
            if let Some(old) = data.cast::<Shared>().as_ref()
                && old.is_current()
            {
                (*zone).data = data;
                return NGX_OK as ngx_int_t;
            }
            let pool = (*zone).shm.addr.cast::<ngx_slab_pool_t>();
            let p = ngx_slab_calloc(pool, size_of::<Shared>()).cast::<Shared>();
            if p.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            (*p).init();
            (*zone).data = p.cast();
            NGX_OK as ngx_int_t
        }
    })
}

/// A worker starts: its keygate (table, follower, hash threads) starts here, after the fork.
/// A keygate that cannot start is logged and answers 503; the worker itself always starts
/// (a worker that exits at start would be respawned by the master, in a loop).
pub unsafe extern "C" fn init_process(_cycle: *mut ngx_cycle_t) -> ngx_int_t {
    guard("init_process", NGX_OK as ngx_int_t, || {
        // SAFETY: plain reads of nginx's process globals.
        let (process, index) = unsafe { (ngx_process, ngx_worker) };
        if process != NGX_PROCESS_WORKER as usize && process != NGX_PROCESS_SINGLE as usize {
            return NGX_OK as ngx_int_t;
        }
        let Some(settings) = crate::module::main_conf().and_then(|m| m.settings.clone()) else {
            return NGX_OK as ngx_int_t;
        };
        crate::log::install();
        let shared = crate::module::shared().unwrap_or_else(|| {
            // SAFETY: every field is an atomic integer, for which zero bytes are valid.
            Box::leak(Box::new(unsafe { std::mem::zeroed::<Shared>() }))
        });
        if let Err(e) = crate::worker::start(settings, shared, index) {
            crate::log::log(
                ngx::ffi::NGX_LOG_ERR,
                &format!("cannot start in this worker; answering 503: {e}"),
            );
        }
        NGX_OK as ngx_int_t
    })
}

/// A worker exits: the follower stops after writing the last usage back.
pub unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    guard("exit_process", (), crate::worker::stop)
}

/// The access phase handler.
unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard(
        "access",
        NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        || {
            // SAFETY: nginx runs the access phase on the request's worker.
            unsafe {
                if let Some(rc) = crate::access::skip(&*r) {
                    return rc;
                }
                let loc = (*(*r).loc_conf.add(crate::module::ctx_index())).cast::<LocConf>();
                let enabled = loc.as_ref().is_some_and(|l| l.enabled == 1);
                crate::access::check(r, enabled)
            }
        },
    )
}

/// Adds an allowed request's `RateLimit` fields to its response, then passes it on.
unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard("header filter", (), || {
        // SAFETY: nginx sends a response's headers on the request's worker.
        unsafe {
            if !std::ptr::eq((*r).main, r) {
                return;
            }
            let Some(ctx) = crate::ctx::find(&*r) else {
                return;
            };
            if !matches!(ctx.state, State::Allowed) {
                return;
            }
            for (name, value) in std::mem::take(&mut ctx.limit_fields) {
                let _ = crate::reply::push_header(r, name, value.as_bytes());
            }
        }
    });
    // SAFETY: set once in postconfiguration, before any request.
    match unsafe { NEXT_HEADER_FILTER } {
        // SAFETY: the next filter of nginx's chain, with the request it was given.
        Some(next) => unsafe { next(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// `keygate_metrics;`: the Prometheus text of every worker's counters.
pub unsafe extern "C" fn metrics_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard(
        "metrics",
        NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        || {
            // SAFETY: a content handler, on the request's worker.
            unsafe {
                if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
                    return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
                }
                let Some(shared) = crate::module::shared() else {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
                };
                let text = crate::metrics::render(shared);
                crate::reply::send(r, 200, crate::metrics::CONTENT_TYPE, &[], text.as_bytes())
            }
        },
    )
}
