//! `limits`: the bounds that keep a client from exhausting the listeners.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, secs};

/// `limits` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(default)]
pub struct RawLimits {
    /// Connections each listener serves at once; a connection past it is closed at once.
    pub max_connections: usize,
    /// Seconds a connection may move no byte before it is closed.
    pub idle_timeout_seconds: f64,
    /// Seconds an HTTP/1 client has to send a request's headers; also how long an idle
    /// keep-alive connection waits for its next request.
    pub header_read_timeout_seconds: f64,
    /// HTTP/2 streams one connection may have open at once (Envoy opens more connections when
    /// it needs more).
    pub max_concurrent_streams: u32,
    /// Failed admin-token attempts one client address may make per minute; past it, each
    /// further failure waits a second behind the previous one and is answered 429.
    pub admin_failures_per_minute: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_connections: 10_000,
            idle_timeout_seconds: 300.0,
            header_read_timeout_seconds: 10.0,
            max_concurrent_streams: 1024,
            admin_failures_per_minute: 10,
        }
    }
}

/// The compiled limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub admin_failures_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        compile(&RawLimits::default(), &mut Problems::default())
    }
}

pub fn compile(raw: &RawLimits, problems: &mut Problems) -> Limits {
    if raw.max_connections == 0 || raw.max_connections > 1_000_000 {
        problems.push("limits.max_connections", "must be between 1 and 1000000");
    }
    if raw.max_concurrent_streams == 0 {
        problems.push("limits.max_concurrent_streams", "must be at least 1");
    }
    if raw.admin_failures_per_minute == 0 {
        problems.push("limits.admin_failures_per_minute", "must be at least 1");
    }
    Limits {
        max_connections: raw.max_connections,
        idle_timeout: secs(
            "limits.idle_timeout_seconds",
            raw.idle_timeout_seconds,
            0.1,
            problems,
        ),
        header_read_timeout: secs(
            "limits.header_read_timeout_seconds",
            raw.header_read_timeout_seconds,
            0.1,
            problems,
        ),
        max_concurrent_streams: raw.max_concurrent_streams,
        admin_failures_per_minute: raw.admin_failures_per_minute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let mut p = Problems::default();
        let l = compile(&RawLimits::default(), &mut p);
        assert!(p.fields().is_empty());
        assert_eq!(l.header_read_timeout, Duration::from_secs(10));
        let bad = RawLimits {
            max_connections: 0,
            idle_timeout_seconds: 0.0,
            header_read_timeout_seconds: -1.0,
            max_concurrent_streams: 0,
            admin_failures_per_minute: 0,
        };
        compile(&bad, &mut p);
        assert_eq!(
            p.fields(),
            [
                "limits.max_connections",
                "limits.max_concurrent_streams",
                "limits.admin_failures_per_minute",
                "limits.idle_timeout_seconds",
                "limits.header_read_timeout_seconds",
            ]
        );
    }
}
