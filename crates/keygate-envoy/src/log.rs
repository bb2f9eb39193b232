//! keygate's log lines (the store's follower, config problems) written to Envoy's own log, so
//! an operator reads one log. Never a key: keygate's code logs none (the same `tracing` events
//! as the sidecar's).

use std::io::Write;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

use crate::abi::{self, ModuleBuffer};

/// Writes `msg` to Envoy's log at `level` (an `abi::LOG_*`).
pub fn log(level: u32, msg: &str) {
    // SAFETY: Envoy copies the message before the call returns; logging is safe on any thread
    // (Envoy's logger serializes writers).
    unsafe {
        abi::envoy_dynamic_module_callback_log_v2(
            level,
            ModuleBuffer::of(msg.as_bytes()),
            ModuleBuffer::NULL,
            0,
        )
    }
}

/// Sends keygate's `tracing` events (info and above) to Envoy's log; once per process.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ToEnvoy)
            .with_max_level(Level::INFO)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

struct ToEnvoy;

/// One event's line, written to Envoy when the event is done.
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
            log(self.level, &format!("keygate: {text}"));
        }
    }
}

impl<'a> MakeWriter<'a> for ToEnvoy {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            level: abi::LOG_INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        let level = match *meta.level() {
            Level::ERROR => abi::LOG_ERROR,
            Level::WARN => abi::LOG_WARN,
            Level::INFO => abi::LOG_INFO,
            _ => abi::LOG_DEBUG,
        };
        Line {
            level,
            buf: Vec::new(),
        }
    }
}
