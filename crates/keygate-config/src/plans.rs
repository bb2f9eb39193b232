//! `plans`: per-plan key limits, API access and rate limits.

use std::collections::BTreeMap;

use keygate_core::limit::{RateLimit, check_limits};
use keygate_core::policy::Plan;
use serde::Deserialize;

use super::Problems;

/// One `plans.<name>` entry as written.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(default)]
pub struct RawPlan {
    /// Most active (not revoked, not expired) keys an account on this plan may hold.
    pub max_keys: Option<u32>,
    /// `false` refuses every request of the plan's accounts with 403.
    pub api_access: Option<bool>,
    /// Limits on every key of the plan without its own; all must pass.
    pub rate_limits: Vec<RateLimit>,
}

pub fn compile(raw: &BTreeMap<String, RawPlan>, p: &mut Problems) -> BTreeMap<String, Plan> {
    let mut plans = BTreeMap::new();
    for (name, rp) in raw {
        if name.is_empty() {
            p.push("plans", "plan names must not be empty");
        }
        if rp.max_keys == Some(0) {
            p.push(format!("plans.{name}.max_keys"), "must be at least 1");
        }
        if let Err((at, why)) = check_limits(&rp.rate_limits) {
            p.push(format!("plans.{name}.rate_limits{at}"), why);
        }
        plans.insert(
            name.clone(),
            Plan {
                max_keys: rp.max_keys,
                api_access: rp.api_access.unwrap_or(true),
                rate_limits: rp.rate_limits.clone().into(),
            },
        );
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_default_to_api_access_and_refuse_zero_keys() {
        let mut p = Problems::default();
        let raw: BTreeMap<String, RawPlan> = [
            (
                "free".to_string(),
                RawPlan {
                    max_keys: None,
                    api_access: Some(false),
                    ..RawPlan::default()
                },
            ),
            (
                "p".to_string(),
                RawPlan {
                    max_keys: Some(0),
                    api_access: None,
                    ..RawPlan::default()
                },
            ),
        ]
        .into();
        let plans = compile(&raw, &mut p);
        assert!(!plans["free"].api_access);
        assert!(plans["p"].api_access);
        assert_eq!(p.fields(), ["plans.p.max_keys"]);
    }
}
