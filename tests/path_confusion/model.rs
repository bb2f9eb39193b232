//! Model routers: how applications may read what they receive, written here independently of
//! keygate's code, and the readings of a forwarded request that escape the decision.

use crate::fronts::Front;
use crate::rows::{KEY_SCOPES, Row};

/// `(prefix, host, methods, scope)` of a route, as the model routers match it.
type ModelRoute = (
    &'static str,
    Option<&'static str>,
    Option<&'static [&'static str]>,
    Option<&'static str>,
);

/// The routes keygate runs with: [`HOST_ROUTE`](crate::fronts::HOST_ROUTE), then the shipped
/// ones.
const ROUTES: &[ModelRoute] = &[
    ("/", Some("internal.example"), None, Some("internal")),
    ("/v1/account/usage", None, None, Some("usage:read")),
    (
        "/v1/tokens",
        None,
        Some(&["POST", "DELETE"]),
        Some("tokens:write"),
    ),
    ("/v1/tokens", None, None, Some("tokens:read")),
    ("/", None, None, None),
];

#[derive(Clone, Copy, Debug)]
struct Reader {
    decode_before_dots: bool,
    decode_twice: bool,
    strip_params: bool,
    backslash_separates: bool,
    merge_slashes: bool,
    ignore_case: bool,
    /// Match the path as received, never decoded.
    raw_match: bool,
}

fn readers() -> impl Iterator<Item = Reader> {
    (0u32..128).map(|m| Reader {
        decode_before_dots: m & 1 != 0,
        decode_twice: m & 2 != 0,
        strip_params: m & 4 != 0,
        backslash_separates: m & 8 != 0,
        merge_slashes: m & 16 != 0,
        ignore_case: m & 32 != 0,
        raw_match: m & 64 != 0,
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path `r` routes on for the request target `uri`.
fn read(uri: &str, r: Reader) -> String {
    let mut s = uri[..uri.find(['?', '#']).unwrap_or(uri.len())].to_string();
    let decode_at_all = !r.raw_match;
    if decode_at_all && r.decode_twice {
        s = decode(&s);
    }
    if decode_at_all && r.decode_before_dots {
        s = decode(&s);
    }
    if r.backslash_separates {
        s = s.replace('\\', "/");
    }
    let mut segs: Vec<&str> = Vec::new();
    for seg in s.split('/').skip(1) {
        let seg = if r.strip_params {
            seg.split(';').next().unwrap_or("")
        } else {
            seg
        };
        match seg {
            "" if r.merge_slashes => {}
            "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut p = format!("/{}", segs.join("/"));
    if decode_at_all && !r.decode_before_dots {
        p = decode(&p);
    }
    if r.ignore_case {
        p = p.to_lowercase();
    }
    p
}

/// The scope the first matching route needs, or `None` with the route that needs none;
/// `Err` when no route matches.
fn scope_for(method: &str, path: &str, host: &str) -> Result<Option<&'static str>, ()> {
    let host = host.split(':').next().unwrap_or("").trim_end_matches('.');
    for (prefix, h, methods, scope) in ROUTES {
        let prefix_ok = path == *prefix
            || path.starts_with(prefix)
                && (prefix.ends_with('/') || path.as_bytes()[prefix.len()] == b'/');
        let host_ok = h.is_none_or(|h| h.eq_ignore_ascii_case(host));
        let method_ok = methods.is_none_or(|ms| ms.contains(&method));
        if prefix_ok && host_ok && method_ok {
            return Ok(*scope);
        }
    }
    Err(())
}

/// How any model router reads what the upstream received as a route this key may not
/// call (or, without a key, as anything but the public `/healthz`).
pub(crate) fn escapes(row: &Row, front: Front, uri: &str, host: &str) -> Vec<String> {
    let mut found = Vec::new();
    for r in readers() {
        let path = read(uri, r);
        if !row.key {
            if path != "/healthz" {
                found.push(format!(
                    "{front:?} {}: an unauthenticated request reached the upstream as {uri:?}, \
                     which {r:?} reads as {path:?}",
                    row.name
                ));
            }
            continue;
        }
        if let Ok(Some(scope)) = scope_for("GET", &path, host)
            && !KEY_SCOPES.contains(&scope)
        {
            found.push(format!(
                "{front:?} {}: the upstream received {uri:?} (Host {host}), which {r:?} reads \
                 as {path:?}, a route needing {scope}",
                row.name
            ));
        }
    }
    found.truncate(3);
    found
}

#[test]
fn model_routers_read_as_intended() {
    let strict = Reader {
        decode_before_dots: false,
        decode_twice: false,
        strip_params: false,
        backslash_separates: false,
        merge_slashes: false,
        ignore_case: false,
        raw_match: false,
    };
    let tomcat = Reader {
        decode_before_dots: true,
        strip_params: true,
        merge_slashes: true,
        ..strict
    };
    assert_eq!(
        read("/v1/account/usage/..;/..;/tokens", tomcat),
        "/v1/tokens"
    );
    assert_eq!(
        read("/v1/account/usage/..;/..;/tokens", strict),
        "/v1/account/usage/..;/..;/tokens"
    );
    assert_eq!(read("/v1/tokens/%2e%2e/x", strict), "/v1/tokens/../x");
    assert_eq!(read("/v1/tokens/%2e%2e/x", tomcat), "/v1/x");
    assert_eq!(read("/v1/tokens//../x", strict), "/v1/tokens/x");
    assert_eq!(
        read(
            "/v1/%2574okens",
            Reader {
                decode_twice: true,
                ..strict
            }
        ),
        "/v1/tokens"
    );
    assert_eq!(
        scope_for("GET", "/v1/tokens/x", "api.example"),
        Ok(Some("tokens:read"))
    );
    assert_eq!(
        scope_for("GET", "/v1/x", "internal.example:80"),
        Ok(Some("internal"))
    );
    assert_eq!(scope_for("GET", "/v1/x", "api.example"), Ok(None));
}
