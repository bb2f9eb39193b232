//! Path confusion through the real proxies: a table of request targets built to make keygate
//! and the application read one request differently (`..;` segments, parameters, encoded and
//! double-encoded dots and slashes, overlong UTF-8, backslashes, repeated slashes, `?` and `#`
//! carrying `../`, absolute form, a `Host` that is not the target's authority, case), sent as
//! raw bytes through Envoy (gRPC and HTTP mode) and nginx from the shipped configs, and through
//! keygate inside each of them, with a key that may only read usage.
//!
//! Each row asserts the answer every front gives. Whatever reaches the echo upstream is then
//! read by a family of model routers written here, independently of keygate's code: every
//! combination of decoding before or after resolving dots, decoding twice, stripping
//! `;parameters`, `\` as a separator, merging empty segments and ignoring case. The test fails
//! if any of them would route the request to a path the key may not call — no request reaches
//! the upstream under a route other than the one keygate allowed.

mod common;
mod proxy;

use common::Harness;
use common::raw::{Raw, send_raw};
use proxy::nginx_module::start_nginx_module;
use proxy::{Echo, EnvoyMode, Proxy, start_envoy, start_envoy_module, start_nginx};

/// The shipped routes, with a host-bound route first: `internal.example` needs `internal`.
const HOST_ROUTE: &str = "routes:                     # first match wins
  - path_prefix: /
    host: internal.example
    scope: internal
";

/// `(prefix, host, methods, scope)` of a route, as the model routers match it.
type ModelRoute = (
    &'static str,
    Option<&'static str>,
    Option<&'static [&'static str]>,
    Option<&'static str>,
);

/// The routes above.
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

/// The scopes of the key every row presents.
const KEY_SCOPES: &[&str] = &["usage:read"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    EnvoyGrpc,
    EnvoyHttp,
    Nginx,
    /// keygate inside Envoy: Envoy reads the path as for the gRPC front, so every row expects
    /// what Envoy gRPC answers.
    EnvoyModule,
    /// keygate inside nginx: it authorizes the target as the client sent it, as keygate does
    /// behind nginx (`X-Original-URI`), so every row expects what nginx answers.
    NginxModule,
}

const FRONTS: [Front; 5] = [
    Front::EnvoyGrpc,
    Front::EnvoyHttp,
    Front::Nginx,
    Front::EnvoyModule,
    Front::NginxModule,
];

/// What a front answers a row: keygate's decision, or the proxy's own refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
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

struct Row {
    name: &'static str,
    target: &'static str,
    /// The `Host` header.
    host: &'static str,
    /// Present the usage-only key (else no credential).
    key: bool,
    /// Envoy gRPC, Envoy HTTP mode, nginx.
    want: [Answer; 3],
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

const fn all(a: Answer) -> [Answer; 3] {
    [a, a, a]
}

/// Envoy (normalize_path, merge_slashes, unescaped slashes) resolves such a path to one outside
/// /v1/tokens before keygate sees it, and forwards that; nginx forwards it as sent.
const ENVOY_RESOLVES: [Answer; 3] = [Pass, Pass, Scope];

const ROWS: &[Row] = &[
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

struct Fronts {
    proxies: Vec<(Front, Proxy)>,
    echo: Echo,
    h: Harness,
}

async fn start() -> Fronts {
    let dir = tempfile::tempdir().unwrap();
    let text = common::config_text(&dir.path().join("keygate.json"));
    assert!(text.contains("routes:                     # first match wins\n"));
    let text = text.replace(
        "routes:                     # first match wins\n",
        HOST_ROUTE,
    );
    let h = Harness::start_with(dir, text).await;
    let echo = Echo::start().await;
    let grpc = h.running().grpc.unwrap();
    let proxies = vec![
        (
            Front::EnvoyGrpc,
            start_envoy(EnvoyMode::Grpc, grpc, echo.addr).await,
        ),
        (
            Front::EnvoyHttp,
            start_envoy(EnvoyMode::Http, h.http_addr(), echo.addr).await,
        ),
        (Front::Nginx, start_nginx(h.http_addr(), echo.addr).await),
        (
            Front::EnvoyModule,
            start_envoy_module(&h.config_path, echo.addr).await,
        ),
        (
            Front::NginxModule,
            start_nginx_module(&h.config_path, echo.addr, 1).await,
        ),
    ];
    Fronts { proxies, echo, h }
}

impl Fronts {
    /// The module follows the store from its own process: wait until it knows `key`.
    async fn until_every_front_sees(&self, key: &str) {
        for (_, p) in &self.proxies {
            let b = format!("Bearer {key}");
            common::wait_until(
                "every front to know the key",
                std::time::Duration::from_secs(10),
                || {
                    let b = &b;
                    async move {
                        common::http_call(
                            p.addr,
                            "GET",
                            "/v1/account/usage",
                            &[("authorization", b)],
                        )
                        .await
                        .status
                            == 200
                    }
                },
            )
            .await;
        }
    }
}

fn request(target: &str, host: &str, key: Option<&str>) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(k) = key {
        r.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The answer as a row states it.
fn classify(r: &Raw, echo_port: u16) -> Answer {
    let from_echo = r.header("x-echo") == Some(echo_port.to_string().as_str());
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    match (r.status, from_echo, body["error"].as_str()) {
        (Some(200), true, _) => Pass,
        (Some(401), false, Some("unauthorized")) => Unauthorized,
        (Some(403), false, Some("forbidden")) if r.header("www-authenticate").is_some() => Scope,
        (Some(400), false, Some("bad_request")) => BadPath,
        (Some(s), false, _) => Proxy(s),
        (s, _, _) => panic!("unexpected answer {s:?}: {}\n{}", r.head, r.body),
    }
}

// ---- model routers: how applications may read what they receive ----

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
fn escapes(row: &Row, front: Front, uri: &str, host: &str) -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reading_of_a_forwarded_path_escapes_the_decision() {
    let f = start().await;
    let key = f.h.key("live", "acme", Some(KEY_SCOPES)).await.key;
    f.until_every_front_sees(&key).await;
    let port = f.echo.addr.port();
    let mut report = String::new();
    let mut failures = Vec::new();
    for row in ROWS {
        for (i, front) in FRONTS.iter().enumerate() {
            let proxy = &f.proxies.iter().find(|(fr, _)| fr == front).unwrap().1;
            let before = f.echo.seen().len();
            let r = send_raw(
                proxy.addr,
                request(row.target, row.host, row.key.then_some(key.as_str())),
            )
            .await;
            let got = classify(&r, port);
            let seen = f.echo.seen();
            let upstream = seen.get(before);
            if let Some(up) = upstream {
                assert_eq!(got, Pass, "{front:?} {}: reached the upstream", row.name);
                let host = up.headers.get("host").and_then(|v| v.first()).unwrap();
                failures.extend(escapes(row, *front, &up.uri, host));
            } else {
                assert_ne!(
                    got, Pass,
                    "{front:?} {}: 200 without the upstream",
                    row.name
                );
            }
            report.push_str(&format!(
                "{:<40} {:<10} {:<16} {}\n",
                row.name,
                format!("{front:?}"),
                format!("{got:?}"),
                upstream.map_or("-".to_string(), |u| format!(
                    "{} (Host {})",
                    u.uri,
                    u.headers.get("host").and_then(|v| v.first()).unwrap()
                )),
            ));
            let want = row.want[i.min(2) * usize::from(*front != Front::EnvoyModule)];
            if got != want {
                failures.push(format!(
                    "{front:?} {} ({}): want {want:?}, got {got:?}",
                    row.name, row.target
                ));
            }
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
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

/// One HTTP/2 request (prior knowledge) whose `:authority` and `Host` differ.
async fn h2_get(addr: std::net::SocketAddr, authority: &str, host: &str, key: &str) -> Raw {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{authority}/v1/account/usage"))
        .header("host", host)
        .header("authorization", format!("Bearer {key}"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let mut head = format!("HTTP/2 {status}\r\n");
    for (k, v) in resp.headers() {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Raw {
        status: Some(status),
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_and_host_that_disagree_decide_as_forwarded() {
    let f = start().await;
    let key = f.h.key("live", "acme", Some(KEY_SCOPES)).await.key;
    f.until_every_front_sees(&key).await;
    let port = f.echo.addr.port();
    let mut failures = Vec::new();
    for (authority, host, want) in [
        ("api.example", "internal.example", Pass),
        ("internal.example", "api.example", Scope),
    ] {
        let row = Row {
            name: "HTTP/2 :authority and host differ",
            target: "/v1/account/usage",
            host,
            key: true,
            want: all(want),
        };
        // The nginx configs serve HTTP/1 only.
        let h2 = |fr: &Front| !matches!(fr, Front::Nginx | Front::NginxModule);
        for (front, proxy) in f.proxies.iter().filter(|(fr, _)| h2(fr)) {
            let before = f.echo.seen().len();
            let got = classify(&h2_get(proxy.addr, authority, host, &key).await, port);
            if let Some(up) = f.echo.seen().get(before) {
                let up_host = up.headers.get("host").and_then(|v| v.first()).unwrap();
                failures.extend(escapes(&row, *front, &up.uri, up_host));
                println!(
                    "{front:?} :authority {authority} host {host}: {got:?}, upstream Host {up_host}"
                );
            } else {
                println!("{front:?} :authority {authority} host {host}: {got:?}");
            }
            if got != want {
                failures.push(format!(
                    "{front:?} :authority {authority}, host {host}: want {want:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
