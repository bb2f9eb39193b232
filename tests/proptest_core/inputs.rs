//! The real inputs built from the generated specs: tables (loaded whole, and in part then
//! changed), header values, headers as a gRPC frontend or `http` passes them, and a
//! `SecretCheck` that verifies in place.

use keygate::core::decide::SecretCheck;
use keygate::core::key::{Account, KeyRecord};
use keygate::core::request::{HeaderValue, Headers};
use keygate::core::table::{KeyEntry, Table};

use crate::fixture::{ACCOUNTS, NOW, PLANS, SCHEMES, SCOPES, fixture};
use crate::generators::{Expiry, Form, Mangle, TableSpec, ValueSpec};

fn build_records(spec: &TableSpec) -> (Vec<KeyRecord>, Vec<Account>) {
    let f = fixture();
    let keys = spec
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.as_ref().map(|k| (i, k)))
        .map(|(i, k)| {
            let p = &f.pool[i];
            assert!(!p.outsider);
            KeyRecord {
                id: p.id.clone(),
                name: None,
                prefix: format!("{}{}", SCHEMES[p.scheme].1, p.id),
                account: ACCOUNTS[k.account].into(),
                scheme: f.settings.policy.schemes[p.scheme].name.clone(),
                scopes: k
                    .scopes
                    .as_ref()
                    .map(|v| v.iter().map(|&s| SCOPES[s].to_string()).collect()),
                hash: p.hash.clone(),
                created_at: NOW - 100,
                expires_at: match k.expiry {
                    Expiry::Never => None,
                    Expiry::Past => Some(NOW - 1),
                    Expiry::Now => Some(NOW),
                    Expiry::Future => Some(NOW + 1),
                },
                revoked_at: k.revoked.then_some(NOW - 5),
                last_used_at: None,
                replaces: None,
                replaced_by: None,
                rate_limits: None,
                credits: None,
                credits_version: 0,
                enabled: !k.disabled,
                meta: None,
                version: 1,
            }
        })
        .collect();
    let accounts = spec
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.as_ref().map(|a| (i, a)))
        .map(|(i, a)| Account {
            id: ACCOUNTS[i].into(),
            plan: PLANS[a.plan].map(String::from),
            status: a.status,
            updated_at: NOW - 50,
            version: 1,
        })
        .collect();
    (keys, accounts)
}

pub(crate) fn tables(spec: &TableSpec) -> [Table; 2] {
    let s = &fixture().settings;
    let (keys, accounts) = build_records(spec);
    let whole = Table::build(&s.policy.schemes, &s.policy.plans, &keys, &accounts, None);
    // The same records, part loaded whole and the rest applied as changes.
    let nk = spec.split.min(keys.len());
    let na = spec.split.saturating_sub(keys.len()).min(accounts.len());
    let base = Table::build(
        &s.policy.schemes,
        &s.policy.plans,
        &keys[..nk],
        &accounts[..na],
        None,
    );
    let changed = base.with_changes(
        &s.policy.schemes,
        &s.policy.plans,
        &keys[nk..],
        &accounts[na..],
    );
    [whole, changed]
}

pub(crate) fn resolve_value(v: &ValueSpec) -> Vec<u8> {
    match v {
        ValueSpec::Bytes(b) => b.clone(),
        ValueSpec::Lit(s) => s.as_bytes().to_vec(),
        ValueSpec::Key { idx, mangle, form } => {
            let mut k = fixture().pool[*idx].key.as_bytes().to_vec();
            match mangle {
                None => {}
                Some(Mangle::FlipLast) => {
                    let last = k.last_mut().unwrap();
                    *last = if *last == b'a' { b'b' } else { b'a' };
                }
                Some(Mangle::Truncate(n)) => k.truncate(*n),
                Some(Mangle::Append(b)) => k.push(*b),
                Some(Mangle::Insert(i, b)) => k.insert((*i).min(k.len()), *b),
                Some(Mangle::Uppercase) => k.make_ascii_uppercase(),
                Some(Mangle::SwapPrefix) => {
                    k = if let Some(rest) = k.strip_prefix(b"toon_") {
                        [b"tk_live_", rest].concat()
                    } else if let Some(rest) = k.strip_prefix(b"tk_live_") {
                        [b"tk_test_", rest].concat()
                    } else {
                        [b"toon_", &k[8..]].concat()
                    }
                }
            }
            match form {
                Form::Raw => k,
                Form::Bearer {
                    word,
                    sep,
                    lead,
                    trail,
                } => [
                    lead.as_bytes(),
                    word.as_bytes(),
                    sep.as_bytes(),
                    &k,
                    trail.as_bytes(),
                ]
                .concat(),
            }
        }
    }
}

/// Raw header bytes as a gRPC frontend may pass them: any name case, any value bytes.
pub(crate) struct RawHeaders(pub(crate) Vec<(String, Vec<u8>)>);

impl Headers for RawHeaders {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        let mut found = HeaderValue::Absent;
        for (k, v) in &self.0 {
            if k.eq_ignore_ascii_case(name) {
                if found != HeaderValue::Absent {
                    return HeaderValue::Many;
                }
                found = HeaderValue::One(v);
            }
        }
        found
    }
}

/// Verifies every secret in place (what the service does off the runtime, without a cache).
pub(crate) struct Verify;

impl SecretCheck for Verify {
    fn cached(&self, entry: &KeyEntry, key: &[u8]) -> Option<bool> {
        Some(entry.verify(key))
    }
}

/// `headers` as an `http::HeaderMap`, when every name and value is one HTTP allows.
pub(crate) fn header_map(headers: &[(String, Vec<u8>)]) -> Option<http::HeaderMap> {
    let mut m = http::HeaderMap::new();
    for (k, v) in headers {
        m.append(
            http::HeaderName::from_bytes(k.as_bytes()).ok()?,
            http::HeaderValue::from_bytes(v).ok()?,
        );
    }
    Some(m)
}
