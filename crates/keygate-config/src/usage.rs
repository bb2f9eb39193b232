//! `usage`: how often last use and usage counts are written back to the store.

use std::time::Duration;

use serde::Deserialize;

use super::Problems;

/// `usage` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(default)]
pub struct RawUsage {
    /// Seconds between write-backs (a crash loses at most one interval of counts).
    pub flush_interval_seconds: f64,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            flush_interval_seconds: 2.0,
        }
    }
}

/// The write-back interval.
pub fn compile(raw: &RawUsage, p: &mut Problems) -> Duration {
    let s = raw.flush_interval_seconds;
    if !(s > 0.0 && s <= 3600.0) {
        p.push("usage.flush_interval_seconds", "must be in (0, 3600]");
    }
    Duration::from_secs_f64(s.clamp(0.01, 3600.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_bounds() {
        let mut p = Problems::default();
        assert_eq!(
            compile(&RawUsage::default(), &mut p),
            Duration::from_secs(2)
        );
        compile(
            &RawUsage {
                flush_interval_seconds: 0.0,
            },
            &mut p,
        );
        assert_eq!(p.fields(), ["usage.flush_interval_seconds"]);
    }
}
