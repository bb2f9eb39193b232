//! The rows: request targets built to make keygate and the application read one request
//! differently, and the answer each front must give them.

/// The scopes of the key every row presents.
pub(crate) const KEY_SCOPES: &[&str] = &["usage:read"];

/// What a front answers a row: keygate's decision, or the proxy's own refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Reached the upstream.
    Pass,
    /// keygate's 401.
    Unauthorized,
    /// keygate's 403 for scope.
    Scope,
    /// keygate's 400 `bad_path`.
    BadPath,
    /// The proxy refused the request itself, with this status, before keygate was asked.
    Proxy(u16),
}
use Answer::*;

pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) target: &'static str,
    /// The `Host` header.
    pub(crate) host: &'static str,
    /// Present the usage-only key (else no credential).
    pub(crate) key: bool,
    /// Envoy gRPC, Envoy HTTP mode, nginx.
    pub(crate) want: [Answer; 3],
}

const fn row(name: &'static str, target: &'static str, want: [Answer; 3]) -> Row {
    Row {
        name,
        target,
        host: "api.example",
        key: true,
        want,
    }
}

pub(crate) const fn all(a: Answer) -> [Answer; 3] {
    [a, a, a]
}

/// Envoy (normalize_path, merge_slashes, unescaped slashes) resolves such a path to one outside
/// /v1/tokens before keygate sees it, and forwards that; nginx forwards it as sent.
const ENVOY_RESOLVES: [Answer; 3] = [Pass, Pass, Scope];

pub(crate) const ROWS: &[Row] = &[
    row("usage itself", "/v1/account/usage/daily", all(Pass)),
    row("tokens itself", "/v1/tokens", all(Scope)),
    // `..;` and `.;`: Tomcat, Jetty and Spring read these as `..` and `.`.
    row(
        "..; segments",
        "/v1/account/usage/..;/..;/tokens",
        all(Scope),
    ),
    row(
        ".; segments",
        "/v1/account/usage/.;/../../tokens",
        all(Scope),
    ),
    // Envoy resolves the path before it asks keygate and forwards what it resolved (`/x`).
    row("..; under tokens", "/v1/tokens/..;/../x", ENVOY_RESOLVES),
    // Parameters on a scoped prefix.
    row(
        "params on usage",
        "/v1/account/usage;jsessionid=1/daily",
        all(Pass),
    ),
    row("params on tokens", "/v1/tokens;jsessionid=1", all(Scope)),
    row("params, encoded ;", "/v1/tokens%3bx/7", all(Scope)),
    // Percent-encoded dots, mixed case.
    row(
        "%2e dots",
        "/v1/account/usage/%2e%2e/%2e%2e/tokens",
        all(Scope),
    ),
    row(
        "mixed-case %2E",
        "/v1/account/usage/%2E%2e/%2e%2E/tokens",
        all(Scope),
    ),
    row(
        "%2e dots under tokens",
        "/v1/tokens/%2e%2e/x",
        ENVOY_RESOLVES,
    ),
    row("%2e dots, unreserved", "/v1/%74okens", all(Scope)),
    // Double encodings of `.`, `/`, `\`, of a letter, and of NUL.
    row(
        "%252e",
        "/v1/account/usage/%252e%252e/%252e%252e/tokens",
        all(BadPath),
    ),
    row(
        "%252F",
        "/v1/account/usage%252F..%252F..%252Ftokens",
        all(BadPath),
    ),
    row(
        "%255c",
        "/v1/account/usage%255c..%255c..%255ctokens",
        all(BadPath),
    ),
    row("%2574 (t)", "/v1/%2574okens", all(Scope)),
    row(
        "%25 with encoded digits",
        "/v1/account/usage/%25%32%65%25%32%65/tokens",
        all(BadPath),
    ),
    row("%2500", "/v1/account/usage%2500", all(BadPath)),
    // Both proxies refuse an encoded NUL themselves.
    row("%00", "/v1/account/usage%00", all(Proxy(400))),
    // Overlong UTF-8 forms of `.` and `/`.
    row(
        "%c0%ae",
        "/v1/account/usage/%c0%ae%c0%ae/%c0%ae%c0%ae/tokens",
        all(BadPath),
    ),
    row(
        "%c0%af",
        "/v1/account/usage%c0%af..%c0%af..%c0%aftokens",
        all(BadPath),
    ),
    // Encoded slashes and backslashes.
    row("%2F", "/v1%2Ftokens", all(Scope)),
    row("%2F dots", "/v1/tokens/..%2F..%2Fx", ENVOY_RESOLVES),
    row("%5C dots", "/v1/tokens/..%5C..%5Cx", ENVOY_RESOLVES),
    row(
        "backslashes",
        "/v1/account/usage\\..\\..\\tokens",
        all(Scope),
    ),
    row(
        "backslashes under tokens",
        "/v1/tokens/..\\..\\x",
        ENVOY_RESOLVES,
    ),
    // Repeated slashes.
    row("//", "//v1//tokens", all(Scope)),
    row("// then ..", "/v1/tokens//../x", all(Scope)),
    // An encoded `?` that a decoding hop would turn into the end of the path.
    row("%3F then dots", "/v1/tokens%3F/../../x", ENVOY_RESOLVES),
    // A query or fragment carrying `../`.
    row("? ../", "/v1/account/usage?/../../tokens", all(Pass)),
    row(
        "? %2e%2e/",
        "/v1/account/usage?%2e%2e/%2e%2e/tokens",
        all(Pass),
    ),
    // Envoy refuses a fragment; nginx drops it.
    row(
        "# ../",
        "/v1/account/usage#/../../tokens",
        [Proxy(400), Proxy(400), Pass],
    ),
    // Absolute form: the target's authority is the host.
    row("absolute form", "http://api.example/v1/tokens", all(Scope)),
    row(
        "absolute, usage",
        "http://api.example/v1/account/usage",
        all(Pass),
    ),
    Row {
        name: "absolute form names an internal host",
        target: "http://internal.example/v1/account/usage",
        host: "api.example",
        key: true,
        want: all(Scope),
    },
    Row {
        name: "absolute form hides an internal Host",
        target: "http://api.example/v1/account/usage",
        host: "internal.example",
        key: true,
        want: all(Pass),
    },
    Row {
        name: "internal Host",
        target: "/v1/account/usage",
        host: "internal.example",
        key: true,
        want: all(Scope),
    },
    Row {
        name: "internal Host, other case and a dot",
        target: "/v1/account/usage",
        host: "Internal.Example.",
        key: true,
        want: all(Scope),
    },
    // Case.
    row("upper case", "/V1/TOKENS", all(Scope)),
    row("mixed case", "/v1/Tokens/7", all(Scope)),
    // The public route, without a key: only `/healthz` itself may reach the upstream.
    Row {
        name: "public, dots before it",
        target: "/v1/tokens/%2e%2e/%2e%2e/healthz",
        host: "api.example",
        key: false,
        want: all(Pass),
    },
    Row {
        name: "public, params",
        target: "/healthz;/../v1/tokens",
        host: "api.example",
        key: false,
        want: all(Unauthorized),
    },
    Row {
        name: "public, ..;",
        target: "/healthz/..;/v1/tokens",
        host: "api.example",
        key: false,
        want: all(Unauthorized),
    },
];
