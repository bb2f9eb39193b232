//! keygate's log lines (the store's follower, the hash threads, the module's own problems)
//! written to nginx's error log, so that an operator reads one log. Never a key: keygate's
//! code logs none (the same `tracing` events as the sidecar's).
//!
//! The cycle's log is written from keygate's own threads too, as nginx's thread pools do:
//! each line is one `write(2)` of a buffer on the caller's stack.

use ngx::ffi::{NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN, ngx_cycle, ngx_uint_t};
use tracing::Level;

/// Writes `msg` to the cycle's error log at `level` (an `NGX_LOG_*`), prefixed `keygate: `.
pub fn log(level: u32, msg: &str) {
    write(level, &format!("keygate: {msg}"));
}

/// Writes `line` to the cycle's error log at `level`, as it is.
fn write(level: u32, line: &str) {
    // SAFETY: the cycle (and its log) outlives every caller in a worker; nginx formats `%*s`
    // from the length and pointer, copying into its own buffer.
    unsafe {
        let cycle = ngx_cycle;
        if cycle.is_null() || (*cycle).log.is_null() {
            return;
        }
        let log = (*cycle).log;
        if (*log).log_level < level as ngx_uint_t {
            return;
        }
        ngx::log::log_error(level as ngx_uint_t, log, 0, line.as_bytes());
    }
}

/// Sends keygate's `tracing` events (info and above) to the error log; once per process.
pub fn install() {
    keygate_authz::host_log::install(|level, line| {
        let level = match level {
            Level::ERROR => NGX_LOG_ERR,
            Level::WARN => NGX_LOG_WARN,
            _ => NGX_LOG_INFO,
        };
        write(level, line);
    });
}
