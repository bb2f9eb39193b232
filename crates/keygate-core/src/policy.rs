//! The policy a data plane decides with, compiled from the config once and replaced whole on
//! a reload: the schemes, the routes, the plans and the identity header names.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::limit::RateLimit;
use super::route::RouteTable;
use super::scheme::Scheme;

/// A plan, as decisions read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Most active keys per account on the plan; `None`: unlimited.
    pub max_keys: Option<u32>,
    /// `false` refuses the plan's accounts with 403.
    pub api_access: bool,
    /// Limits on every key of the plan that has none of its own.
    pub rate_limits: Arc<[RateLimit]>,
}

/// Lowercased names of the headers an allow sets for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub key_id: String,
    pub account: String,
    pub scopes: String,
    pub plan: String,
    /// A key's metadata goes upstream as `<meta_prefix><key>`; `None`: not forwarded.
    pub meta_prefix: Option<String>,
}

impl IdentityHeaders {
    /// Every name, in the order [`crate::decide::Allow::identity`] gives the values.
    pub fn all(&self) -> [&str; 4] {
        [&self.key_id, &self.account, &self.scopes, &self.plan]
    }
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            key_id: "x-keygate-key-id".into(),
            account: "x-keygate-account".into(),
            scopes: "x-keygate-scopes".into(),
            plan: "x-keygate-plan".into(),
            meta_prefix: None,
        }
    }
}

/// Everything a decision is made with besides the table and the request.
#[derive(Debug, Clone)]
pub struct Policy {
    pub schemes: Arc<[Scheme]>,
    pub routes: RouteTable,
    pub plans: BTreeMap<String, Plan>,
    pub identity: IdentityHeaders,
}

impl Policy {
    /// The index of the scheme named `name`.
    pub fn scheme_index(&self, name: &str) -> Option<usize> {
        self.schemes.iter().position(|s| s.name == name)
    }
}

/// Whether `s` can be a scope: 1–128 visible ASCII characters, no `"` or `\` (scopes are
/// quoted in `WWW-Authenticate` and joined by spaces in the identity header).
pub fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}
