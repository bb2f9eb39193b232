//! `verification`: bounds on the cost of Argon2 verification.

use serde::Deserialize;

use super::Problems;

/// `verification` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(default)]
pub struct RawVerification {
    /// Argon2 verifications running at once (default: half the cores, at least one).
    pub max_concurrent: Option<usize>,
    /// Failed verifications allowed per key id per minute; past it, further wrong secrets
    /// for that id are refused without running Argon2.
    pub failures_per_minute: u32,
}

impl Default for RawVerification {
    fn default() -> Self {
        RawVerification {
            max_concurrent: None,
            failures_per_minute: 10,
        }
    }
}

/// The compiled section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub concurrency: usize,
    pub failures_per_minute: u32,
}

pub fn compile(raw: &RawVerification, p: &mut Problems) -> Verification {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let concurrency = raw.max_concurrent.unwrap_or((cores / 2).max(1));
    if concurrency == 0 {
        p.push("verification.max_concurrent", "must be at least 1");
    }
    Verification {
        concurrency,
        failures_per_minute: raw.failures_per_minute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_at_least_one_and_zero_is_refused() {
        let mut p = Problems::default();
        assert!(compile(&RawVerification::default(), &mut p).concurrency >= 1);
        let zero = RawVerification {
            max_concurrent: Some(0),
            ..RawVerification::default()
        };
        compile(&zero, &mut p);
        assert_eq!(p.fields(), ["verification.max_concurrent"]);
    }
}
