//! keygate's log lines (the store's follower, config problems) written to Envoy's own log, so
//! an operator reads one log. Never a key: keygate's code logs none (the same `tracing` events
//! as the sidecar's).

use tracing::Level;

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
    keygate_authz::host_log::install(|level, line| {
        let level = match level {
            Level::ERROR => abi::LOG_ERROR,
            Level::WARN => abi::LOG_WARN,
            Level::INFO => abi::LOG_INFO,
            _ => abi::LOG_DEBUG,
        };
        log(level, line);
    });
}
