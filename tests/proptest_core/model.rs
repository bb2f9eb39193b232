//! The expectation model: what `decide` must answer, computed from the generated data alone
//! (route matching reimplemented here), and keygate's answer read as the same classes.

use keygate::core::decide::{Outcome, Reason, decide};
use keygate::core::key::AccountStatus;
use keygate::core::path::{PathError, Target};
use keygate::core::request::{Headers, Request};
use keygate::core::table::Table;

use crate::fixture::{LIVE, ModelRoute, NOW, PLANS, ROUTES, SCHEMES, SCOPES, TEST, TOON, fixture};
use crate::generators::{Expiry, ReqSpec, TableSpec};
use crate::inputs::Verify;

/// What keygate must answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expected {
    /// Allowed as this pool key.
    Allow(usize),
    /// A credential problem: 401.
    Unauthorized,
    /// A valid key, refused for its account, its scopes or for want of a route: 403.
    Forbidden,
    /// A valid key on a malformed path: 400.
    BadPath,
}

fn host_matches(pattern: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let host = host.to_ascii_lowercase();
    // Drop a port unless the host is a bracketed IPv6 literal with no port.
    let host = match (host.starts_with('['), host.rfind(':')) {
        (true, _) => match host.find("]:") {
            Some(i) => host[..=i].to_string(),
            None => host,
        },
        (false, Some(i)) => host[..i].to_string(),
        (false, None) => host,
    };
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|h| h.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty()),
        None => host == pattern,
    }
}

/// The route of a path as read one way (`norm`), matched as a router that does or does not
/// ignore ASCII case would.
fn route_for(
    method: &str,
    norm: &str,
    host: Option<&str>,
    ignore_case: bool,
) -> Option<&'static ModelRoute> {
    // Every prefix of CONFIG is lowercase.
    let lowered = norm.to_ascii_lowercase();
    let norm = if ignore_case { lowered.as_str() } else { norm };
    ROUTES.iter().find(|r| {
        let prefix_ok = norm == r.prefix
            || norm.starts_with(r.prefix)
                && (r.prefix.ends_with('/') || norm.as_bytes()[r.prefix.len()] == b'/');
        prefix_ok
            && r.methods
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && r.host.is_none_or(|h| host_matches(h, host))
    })
}

/// The key a header value presents, if it is a pool key in the form its header carries.
fn presented_key(header: &str, value: &[u8]) -> Option<usize> {
    let v = value.trim_ascii();
    let key = if header == "authorization" {
        let (word, rest) = v.split_at_checked(6)?;
        if !word.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
            return None;
        }
        rest.trim_ascii_start()
    } else {
        v
    };
    fixture()
        .pool
        .iter()
        .position(|p| p.key.as_bytes() == key && SCHEMES[p.scheme].0 == header)
}

/// Every way the path may be read, as `(normalized, ignore case)`: the lenient reading first.
fn readings(path: &str) -> Result<Vec<(String, bool)>, PathError> {
    let t = Target::parse(path)?;
    let mut all = vec![t.path().into_owned()];
    all.extend(t.readings());
    let upper = t.has_upper();
    Ok(all
        .into_iter()
        .flat_map(|p| [(p.clone(), false), (p, true)])
        .filter(|(_, ci)| upper || !ci)
        .collect())
}

pub(crate) fn expected(
    table: &TableSpec,
    req: &ReqSpec,
    headers: &[(String, Vec<u8>)],
) -> Expected {
    let f = fixture();
    let readings = readings(&req.path);
    let route = match &readings {
        Ok(r) => route_for(req.method, &r[0].0, req.host, false),
        Err(_) => None,
    };
    let accepted: Vec<usize> = match route.and_then(|r| r.schemes) {
        Some(s) => s.to_vec(),
        None => vec![TOON, LIVE, TEST],
    };
    let mut names: Vec<&str> = accepted.iter().map(|&s| SCHEMES[s].0).collect();
    names.dedup();
    // Exactly one credential header among those the route's schemes read.
    let creds: Vec<(&str, &[u8])> = headers
        .iter()
        .filter_map(|(n, v)| {
            names
                .iter()
                .find(|h| h.eq_ignore_ascii_case(n))
                .map(|h| (*h, v.as_slice()))
        })
        .collect();
    let [(header, value)] = creds[..] else {
        return Expected::Unauthorized;
    };
    let Some(idx) = presented_key(header, value) else {
        return Expected::Unauthorized;
    };
    let p = &f.pool[idx];
    if !accepted.contains(&p.scheme) {
        return Expected::Unauthorized;
    }
    let Some(spec) = table.keys.get(idx).and_then(|k| k.as_ref()) else {
        return Expected::Unauthorized;
    };
    let expired = matches!(spec.expiry, Expiry::Past | Expiry::Now);
    if spec.revoked || expired || spec.disabled {
        return Expected::Unauthorized;
    }
    // A valid key from here on: refusals are 403, or 400 for a malformed path.
    let Ok(readings) = readings else {
        return match readings {
            Err(PathError::Malformed) => Expected::BadPath,
            _ => Expected::Forbidden,
        };
    };
    if let Some(a) = &table.accounts[spec.account] {
        let plan_ok = match PLANS[a.plan] {
            None => true,
            Some("starter") => true,
            Some(_) => false, // `free` has no API access; `gone-plan` is not in the config
        };
        if a.status != AccountStatus::Active || !plan_ok {
            return Expected::Forbidden;
        }
    }
    // Allowed only if every reading's route takes this key.
    for (path, ignore_case) in &readings {
        let Some(route) = route_for(req.method, path, req.host, *ignore_case) else {
            return Expected::Forbidden;
        };
        if route.schemes.is_some_and(|s| !s.contains(&p.scheme)) {
            return Expected::Forbidden;
        }
        if let (Some(need), Some(have)) = (route.scope, &spec.scopes)
            && !have.iter().any(|&s| SCOPES[s] == need)
        {
            return Expected::Forbidden;
        }
    }
    Expected::Allow(idx)
}

pub(crate) fn actual(
    table: &Table,
    req: &ReqSpec,
    headers: &impl Headers,
) -> Result<Expected, String> {
    let f = fixture();
    let r = Request {
        method: req.method,
        path: &req.path,
        host: req.host,
        headers,
    };
    let s = &f.settings;
    match decide(&s.policy.schemes, &s.policy.routes, table, &r, NOW, &Verify) {
        Outcome::Allow(a) => {
            let idx = f
                .pool
                .iter()
                .position(|p| *p.id == *a.key.id() && p.scheme == a.key.scheme())
                .ok_or("allowed an id not in the pool")?;
            Ok(Expected::Allow(idx))
        }
        Outcome::Deny(d) => match (d.status(), d.reason) {
            (401, _) => Ok(Expected::Unauthorized),
            (403, _) => Ok(Expected::Forbidden),
            (400, Reason::BadPath) => Ok(Expected::BadPath),
            (st, reason) => Err(format!("unexpected denial {st} {reason:?}")),
        },
        Outcome::NeedsVerify { .. } => Err("NeedsVerify with a verifying SecretCheck".into()),
    }
}
