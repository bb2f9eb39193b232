//! keygate's log lines (the store's follower, the hash threads, the module's own problems)
//! written to nginx's error log, so that an operator reads one log. Never a key: keygate's
//! code logs none (the same `tracing` events as the sidecar's).
//!
//! The cycle's log is written from keygate's own threads too, as nginx's thread pools do:
//! each line is one `write(2)` of a buffer on the caller's stack.

use std::io::Write;

use ngx::ffi::{NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN, ngx_cycle, ngx_uint_t};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// Writes `msg` to the cycle's error log at `level` (an `NGX_LOG_*`), prefixed `keygate: `.
pub fn log(level: u32, msg: &str) {
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
        let line = format!("keygate: {msg}");
        ngx::log::log_error(level as ngx_uint_t, log, 0, line.as_bytes());
    }
}

/// Sends keygate's `tracing` events (info and above) to the error log; once per process.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ToNginx)
            .with_max_level(Level::INFO)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

struct ToNginx;

/// One event's line, written to the log when the event is done.
struct Line {
    level: u32,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if !text.is_empty() {
            log(self.level, text);
        }
    }
}

impl<'a> MakeWriter<'a> for ToNginx {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            level: NGX_LOG_INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        let level = match *meta.level() {
            Level::ERROR => NGX_LOG_ERR,
            Level::WARN => NGX_LOG_WARN,
            _ => NGX_LOG_INFO,
        };
        Line {
            level,
            buf: Vec::new(),
        }
    }
}
