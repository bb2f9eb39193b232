//! The module as nginx sees it: `ngx_http_keygate_module` with its directives and HTTP
//! context, and the `ngx_modules` tables `load_module` reads from a dynamic module. The
//! functions the tables name are in [`crate::exports`] and [`crate::conf`].

use std::ffi::c_void;

use ngx::ffi::{
    NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE, NGX_HTTP_SRV_CONF,
    ngx_command_t, ngx_cycle, ngx_http_conf_ctx_t, ngx_http_module, ngx_http_module_t,
    ngx_module_t, ngx_thread_pool_t, ngx_uint_t,
};
use ngx::ngx_string;

use crate::conf::{self, MainConf};
use crate::exports;
use crate::shared::Shared;

pub use crate::exports::{init_zone, metrics_handler};

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: Some(exports::postconfiguration),
    create_main_conf: Some(exports::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(exports::create_loc_conf),
    merge_loc_conf: Some(exports::merge_loc_conf),
};

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

static mut COMMANDS: [ngx_command_t; 4] = [
    ngx_command_t {
        name: ngx_string!("keygate_config"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(conf::set_config),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("keygate"),
        type_: (ANY_LEVEL | NGX_CONF_FLAG) as ngx_uint_t,
        set: Some(conf::set_enabled),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("keygate_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(conf::set_metrics),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

/// The module; nginx writes its indexes into it when it loads the module.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_keygate_module: ngx_module_t = ngx_module_t {
    ctx: (&raw const CTX).cast_mut().cast(),
    commands: (&raw mut COMMANDS).cast(),
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(exports::init_process),
    exit_process: Some(exports::exit_process),
    ..ngx_module_t::default()
};

/// The tables `load_module` reads: the modules of this shared object, their names, and no
/// ordering constraint.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut ngx_modules: [*const ngx_module_t; 2] =
    [&raw const ngx_http_keygate_module, std::ptr::null()];

#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_names: [*const std::ffi::c_char; 2] =
    [c"ngx_http_keygate_module".as_ptr(), std::ptr::null()];

#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_order: [*const std::ffi::c_char; 1] = [std::ptr::null()];

/// The module's index among HTTP modules (its slot in `r->ctx` and the conf arrays).
pub fn ctx_index() -> usize {
    // SAFETY: a plain read; nginx writes the index before calling any of the module's code.
    unsafe { ngx_http_keygate_module.ctx_index }
}

/// The module's address, the tag of its shared zone.
pub fn tag() -> *mut c_void {
    (&raw mut ngx_http_keygate_module).cast()
}

/// The running cycle's http main conf of this module, if the config has an http block.
pub fn main_conf() -> Option<&'static MainConf> {
    // SAFETY: the cycle's conf_ctx has a slot per core module; the http module's holds the
    // http block's ctx, whose main_conf array has ours.
    unsafe {
        let cycle = ngx_cycle;
        if cycle.is_null() {
            return None;
        }
        let http = *(*cycle).conf_ctx.add(ngx_http_module.index);
        let ctx = http.cast::<ngx_http_conf_ctx_t>();
        if ctx.is_null() {
            return None;
        }
        (*(*ctx).main_conf.add(ctx_index()))
            .cast::<MainConf>()
            .as_ref()
    }
}

/// nginx's `default` thread pool, claimed by `keygate_config`.
pub fn thread_pool() -> *mut ngx_thread_pool_t {
    main_conf().map_or(std::ptr::null_mut(), |m| m.pool)
}

/// The counters' zone, once nginx has mapped and initialised it.
pub fn shared() -> Option<&'static Shared> {
    let zone = main_conf()?.zone;
    // SAFETY: the zone's data is our Shared from `init_zone`, mapped for the process's life.
    unsafe { zone.as_ref()?.data.cast::<Shared>().as_ref() }
}
