//! `shutdown`: the graceful shutdown on SIGTERM.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, secs};

/// `shutdown` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(default)]
pub struct RawShutdown {
    /// Seconds `/readyz` answers 503 before the listeners close, so load balancers and
    /// proxies move traffic elsewhere first.
    pub drain_delay_seconds: f64,
    /// Longest wait for in-flight requests once the listeners are closed.
    pub timeout_seconds: f64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        RawShutdown {
            drain_delay_seconds: 0.0,
            timeout_seconds: 10.0,
        }
    }
}

/// `(drain_delay, drain_timeout)`.
pub fn compile(raw: &RawShutdown, p: &mut Problems) -> (Duration, Duration) {
    (
        secs(
            "shutdown.drain_delay_seconds",
            raw.drain_delay_seconds,
            0.0,
            p,
        ),
        secs("shutdown.timeout_seconds", raw.timeout_seconds, 0.1, p),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let mut p = Problems::default();
        let (delay, timeout) = compile(&RawShutdown::default(), &mut p);
        assert_eq!((delay, timeout), (Duration::ZERO, Duration::from_secs(10)));
        compile(
            &RawShutdown {
                drain_delay_seconds: -1.0,
                timeout_seconds: 0.0,
            },
            &mut p,
        );
        assert_eq!(
            p.fields(),
            ["shutdown.drain_delay_seconds", "shutdown.timeout_seconds"]
        );
    }
}
