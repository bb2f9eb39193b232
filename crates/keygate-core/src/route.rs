//! Routes: which scope and schemes a request needs, matched by path prefix, method and host.
//! Compiled once at config load; first match wins.

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub path_prefix: String,
    /// Uppercase methods; `None` matches every method.
    pub methods: Option<Vec<String>>,
    /// Lowercase host, exact or `*.suffix`; `None` matches every host.
    pub host: Option<String>,
    pub scope: Option<std::sync::Arc<str>>,
    /// Indices of the schemes this route accepts.
    pub schemes: Vec<usize>,
}

impl Route {
    pub fn new(
        path_prefix: String,
        methods: Option<Vec<String>>,
        host: Option<String>,
        scope: Option<String>,
        schemes: Vec<usize>,
    ) -> Route {
        Route {
            path_prefix,
            methods,
            host,
            scope: scope.map(Into::into),
            schemes,
        }
    }

    /// `path` must already be normalized; `ignore_case` compares the prefix as a
    /// case-insensitive router would.
    pub fn matches(&self, method: &str, path: &str, host: Option<&str>, ignore_case: bool) -> bool {
        prefix_matches(&self.path_prefix, path, ignore_case)
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.host.as_ref().is_none_or(|h| host_matches(h, host))
    }
}

/// Prefix match on whole segments: `/v1/tokens` matches `/v1/tokens` and `/v1/tokens/7`,
/// not `/v1/tokensmith`.
fn prefix_matches(prefix: &str, path: &str, ignore_case: bool) -> bool {
    let (p, b) = (prefix.as_bytes(), path.as_bytes());
    let head = match b.get(..p.len()) {
        Some(head) if ignore_case => head.eq_ignore_ascii_case(p),
        Some(head) => head == p,
        None => false,
    };
    head && (prefix.ends_with('/') || b.len() == p.len() || b[p.len()] == b'/')
}

fn host_matches(pattern: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    // Drop a port, but keep a bracketed IPv6 literal whole.
    let host = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// The ordered route list.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable { routes }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The first route matching; `path` must already be normalized.
    pub fn find(&self, method: &str, path: &str, host: Option<&str>) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matches(method, path, host, false))
    }

    /// The first route matching as a router that ignores ASCII case in paths would find it.
    pub fn find_ignoring_case(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
    ) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matches(method, path, host, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(prefix: &str, methods: Option<&[&str]>, host: Option<&str>, scope: &str) -> Route {
        Route::new(
            prefix.into(),
            methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            host.map(Into::into),
            Some(scope.into()),
            vec![0],
        )
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            r("/v1/account/usage", None, None, "usage:read"),
            r(
                "/v1/tokens",
                Some(&["POST", "DELETE"]),
                None,
                "tokens:write",
            ),
            r("/v1/tokens", None, None, "tokens:read"),
            r("/admin", None, Some("*.internal.example"), "admin"),
            r("/", None, None, "any"),
        ])
    }

    fn scope(m: &str, p: &str, h: Option<&str>) -> String {
        table()
            .find(m, p, h)
            .unwrap()
            .scope
            .as_deref()
            .unwrap()
            .to_string()
    }

    #[test]
    fn first_match_wins_by_path_and_method() {
        assert_eq!(scope("GET", "/v1/account/usage", None), "usage:read");
        assert_eq!(scope("GET", "/v1/account/usage/daily", None), "usage:read");
        assert_eq!(scope("POST", "/v1/tokens", None), "tokens:write");
        assert_eq!(scope("delete", "/v1/tokens/9", None), "tokens:write");
        assert_eq!(scope("GET", "/v1/tokens/9", None), "tokens:read");
        assert_eq!(scope("GET", "/v1/tokensmith", None), "any");
        assert_eq!(scope("GET", "/v1/account/usages", None), "any");
        assert_eq!(scope("GET", "/", None), "any");
    }

    #[test]
    fn host_matching() {
        assert_eq!(scope("GET", "/admin", Some("a.internal.example")), "admin");
        assert_eq!(
            scope("GET", "/admin", Some("A.Internal.Example:8443")),
            "admin"
        );
        assert_eq!(scope("GET", "/admin", Some("internal.example")), "any");
        assert_eq!(scope("GET", "/admin", Some("evilinternal.example")), "any");
        assert_eq!(scope("GET", "/admin", None), "any");
        assert!(host_matches("api.example", Some("api.example.")));
        assert!(host_matches("[::1]", Some("[::1]")));
        assert!(host_matches("[::1]", Some("[::1]:80")));
    }

    #[test]
    fn case_insensitive_matching() {
        let t = table();
        assert_eq!(
            t.find("GET", "/V1/Tokens/9", None)
                .unwrap()
                .scope
                .as_deref(),
            Some("any")
        );
        assert_eq!(
            t.find_ignoring_case("GET", "/V1/Tokens/9", None)
                .unwrap()
                .scope
                .as_deref(),
            Some("tokens:read")
        );
        assert!(!prefix_matches("/v1/tokens", "/V1/TOKENSMITH", true));
        assert!(!prefix_matches("/v1/tokens", "/v1", true));
    }

    #[test]
    fn no_match_without_catch_all() {
        let t = RouteTable::new(vec![r("/v1", None, None, "x")]);
        assert!(t.find("GET", "/v2", None).is_none());
        assert!(t.find("GET", "/v1", None).is_some());
    }
}
