//! `identity_headers`: the names of the headers an allow sets for the upstream.

use std::collections::HashSet;

use keygate_core::policy::IdentityHeaders;
use keygate_core::scheme::Scheme;
use serde::Deserialize;

use super::Problems;
use super::schemes::header_name;

/// `identity_headers` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawIdentityHeaders {
    /// Carries the key's public id.
    pub key_id: String,
    /// Carries the key's account.
    pub account: String,
    /// Carries the key's scopes, space-separated (absent for an unrestricted key).
    pub scopes: String,
    /// Carries the account's plan (absent without one).
    pub plan: String,
    /// Each entry of a key's `meta` goes upstream as `<meta_prefix><key>`, and a client-sent
    /// header under this prefix never does. Unset: metadata is not forwarded.
    pub meta_prefix: Option<String>,
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        let d = IdentityHeaders::default();
        RawIdentityHeaders {
            key_id: d.key_id,
            account: d.account,
            scopes: d.scopes,
            plan: d.plan,
            meta_prefix: None,
        }
    }
}

pub fn compile(raw: &RawIdentityHeaders, schemes: &[Scheme], p: &mut Problems) -> IdentityHeaders {
    let identity = IdentityHeaders {
        key_id: header_name("identity_headers.key_id", &raw.key_id, p),
        account: header_name("identity_headers.account", &raw.account, p),
        scopes: header_name("identity_headers.scopes", &raw.scopes, p),
        plan: header_name("identity_headers.plan", &raw.plan, p),
        meta_prefix: raw
            .meta_prefix
            .as_ref()
            .map(|m| header_name("identity_headers.meta_prefix", m, p)),
    };
    let mut seen = HashSet::new();
    for (n, field) in identity
        .all()
        .iter()
        .zip(["key_id", "account", "scopes", "plan"])
    {
        if !seen.insert(*n) {
            p.push(format!("identity_headers.{field}"), "duplicate header name");
        }
        if schemes.iter().any(|s| s.header == *n) || *n == "host" || n.starts_with(':') {
            p.push(
                format!("identity_headers.{field}"),
                "must not be a credential header or Host",
            );
        }
    }
    if let Some(m) = &identity.meta_prefix {
        let under = |n: &str| keygate_core::meta::is_reserved(n, m);
        if identity.all().iter().any(|n| under(n))
            || schemes.iter().any(|s| under(&s.header))
            || under("host")
        {
            p.push(
                "identity_headers.meta_prefix",
                "must not be the start of an identity, credential or Host header",
            );
        }
    }
    identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_and_conflicts_named() {
        let mut p = Problems::default();
        let raw = RawIdentityHeaders {
            key_id: "X-Key".into(),
            account: "x-key".into(),
            scopes: "Host".into(),
            plan: "bad name".into(),
            meta_prefix: Some("x-k".into()),
        };
        let h = compile(&raw, &[], &mut p);
        assert_eq!(h.key_id, "x-key");
        assert_eq!(
            p.fields(),
            [
                "identity_headers.plan",
                "identity_headers.account",
                "identity_headers.scopes",
                "identity_headers.meta_prefix"
            ]
        );
    }
}
