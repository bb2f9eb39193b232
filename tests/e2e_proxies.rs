//! The shipped proxy configs, proven end to end: the real Envoy (ext_authz over gRPC and in HTTP
//! mode, `envoy/envoy.yaml` and `envoy/envoy-http.yaml`) and the real nginx (`auth_request`,
//! `config/nginx.conf`) in front of an echo upstream, with keygate running in-process. Only
//! addresses are substituted in the configs. A missing Envoy or nginx fails the tests.

mod common;
mod proxy;

use std::time::Duration;

use common::{Harness, HttpReply, http_call, http_call_body, wait_until};
use keygate::admin::manage::Created;
use proxy::{Echo, EnvoyMode, Proxy, start_envoy, start_envoy_module, start_nginx};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    EnvoyGrpc,
    EnvoyHttp,
    Nginx,
    /// keygate inside Envoy (`envoy/envoy-module.yaml`), following the same file store as the
    /// in-process keygate the test manages keys through.
    EnvoyModule,
}

const IDENTITY: [&str; 4] = [
    "x-keygate-key-id",
    "x-keygate-account",
    "x-keygate-scopes",
    "x-keygate-plan",
];
const CHALLENGE: Option<&str> = Some(r#"Bearer realm="keygate""#);
const INVALID: Option<&str> = Some(r#"Bearer realm="keygate", error="invalid_token""#);
const SCOPE_CHALLENGE: Option<&str> =
    Some(r#"Bearer realm="keygate", error="insufficient_scope", scope="tokens:write""#);
/// nginx cannot pass a subrequest's body: a 403 that is not a scope denial gets the generic
/// body of config/nginx.conf.
const NGINX_GENERIC_403: &str = "API key is not allowed to make this request";

/// One test at a time: each runs keygate, a proxy and an upstream, and on two cores the
/// parallel ones would compete for the CPU that keygate's Argon2 verifications need within
/// the proxies' ext_authz timeout.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup {
    front: Front,
    // Dropped in this order: the proxy first, then the upstream, then keygate, then the turn.
    proxy: Proxy,
    echo: Echo,
    h: Harness,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn setup(front: Front) -> Setup {
    let turn = SERIAL.lock().await;
    let h = Harness::start().await;
    let echo = Echo::start().await;
    let proxy = match front {
        Front::EnvoyGrpc => {
            start_envoy(EnvoyMode::Grpc, h.running().grpc.unwrap(), echo.addr).await
        }
        Front::EnvoyHttp => start_envoy(EnvoyMode::Http, h.http_addr(), echo.addr).await,
        Front::Nginx => start_nginx(h.http_addr(), echo.addr).await,
        Front::EnvoyModule => start_envoy_module(&h.config_path, echo.addr).await,
    };
    Setup {
        front,
        proxy,
        echo,
        h,
        _turn: turn,
    }
}

impl Setup {
    /// A new key, usable through this front when this returns: the module is another process,
    /// which sees the key within a second, so it is probed with a malformed path (400 once the
    /// key is known, 401 before; neither reaches the upstream nor counts as an allow).
    async fn key(&self, scheme: &str, account: &str, scopes: Option<&[&str]>) -> Created {
        let k = self.h.key(scheme, account, scopes).await;
        if self.front == Front::EnvoyModule {
            let header = match scheme {
                "toon" => ("x-api-key", k.key.clone()),
                _ => ("authorization", bearer(&k.key)),
            };
            wait_until(
                "the module to see a new key",
                Duration::from_secs(5),
                || {
                    let header = &header;
                    async move {
                        let r = self
                            .call("GET", "/v1/probe/%252e", &[(header.0, header.1.as_str())])
                            .await;
                        r.status == 400
                    }
                },
            )
            .await;
        }
        k
    }

    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> HttpReply {
        http_call(self.proxy.addr, method, uri, headers).await
    }

    /// A request the proxy must pass: the echo upstream's view of it.
    async fn pass(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Upstream {
        self.pass_body(method, uri, headers, "").await
    }

    async fn pass_body(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Upstream {
        let r = http_call_body(
            self.proxy.addr,
            method,
            uri,
            headers,
            bytes::Bytes::from(body.to_string()),
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{:?} {method} {uri}: {r:?}\n{}",
            self.front,
            self.proxy.logs()
        );
        assert_eq!(
            r.header("x-echo"),
            Some(self.echo.addr.port().to_string().as_str()),
            "{:?}: not the upstream's answer: {r:?}",
            self.front
        );
        let v = r.json();
        assert_eq!(v["method"], method, "{:?}", self.front);
        assert_eq!(v["uri"], uri, "{:?}", self.front);
        assert_eq!(v["body"], body, "{:?}: request body", self.front);
        let up = Upstream(v);
        assert_eq!(
            up.values("x-envoy-auth-headers-to-remove"),
            Vec::<String>::new()
        );
        up
    }

    /// A request the proxy must refuse with keygate's answer.
    async fn deny(
        &self,
        what: &str,
        (method, uri, headers): (&str, &str, &[(&str, &str)]),
        status: u16,
        www: Option<&str>,
        body: Value,
    ) {
        let r = self.call(method, uri, headers).await;
        let front = self.front;
        assert_eq!(r.status, status, "{front:?} {what}: {r:?}");
        assert!(
            r.header("x-echo").is_none(),
            "{front:?} {what}: reached the upstream"
        );
        let challenges: Vec<&str> = r
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            challenges,
            www.into_iter().collect::<Vec<_>>(),
            "{front:?} {what}: WWW-Authenticate"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{front:?} {what}: content-type"
        );
        assert_eq!(r.json(), body, "{front:?} {what}: body");
    }
}

/// What the echo upstream saw.
struct Upstream(Value);

impl Upstream {
    fn values(&self, name: &str) -> Vec<String> {
        match &self.0["headers"][name] {
            Value::Null => vec![],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("{name}: {other}"),
        }
    }

    /// The single value of `name`, or `None` if absent (two values fail).
    fn one(&self, name: &str) -> Option<String> {
        let mut v = self.values(name);
        assert!(v.len() <= 1, "{name} reached the upstream twice: {v:?}");
        v.pop()
    }
}

fn bearer(k: &str) -> String {
    format!("Bearer {k}")
}

fn unauthorized() -> Value {
    json!({"error": "unauthorized", "message": "Invalid or missing API key"})
}

/// Allow: the upstream answers, with keygate's identity and without the credential, whatever
/// identity headers the client sent. The public route needs no key and passes no identity.
async fn allow(front: Front) {
    let s = setup(front).await;
    let h = &s.h;
    h.manager
        .set_account("test", "acme", Some(Some("starter".into())), Some("active"))
        .await
        .unwrap();
    let live = s
        .key("live", "acme", Some(&["usage:read", "tokens:read"]))
        .await;
    let b = bearer(&live.key);
    let up = s
        .pass(
            "GET",
            "/v1/account/usage?day=1",
            &[
                ("authorization", &b),
                ("x-keygate-key-id", "forged"),
                ("x-keygate-account", "victim"),
                ("x-keygate-scopes", "admin"),
                ("x-keygate-plan", "enterprise"),
            ],
        )
        .await;
    assert_eq!(up.one("x-keygate-key-id"), Some(live.id.clone()));
    assert_eq!(up.one("x-keygate-account").as_deref(), Some("acme"));
    assert_eq!(
        up.one("x-keygate-scopes").as_deref(),
        Some("usage:read tokens:read")
    );
    assert_eq!(up.one("x-keygate-plan").as_deref(), Some("starter"));
    assert_eq!(up.values("authorization"), Vec::<String>::new());
    assert_eq!(up.values("x-api-key"), Vec::<String>::new());

    // An unrestricted Argon2 key (x-api-key) of an account with no record: no scopes, no plan,
    // so the client's spoofed ones must be removed. Twice: the second is a cache hit.
    let toon = s.key("toon", "solo", None).await;
    for _ in 0..2 {
        let up = s
            .pass_body(
                "POST",
                "/v1/tokens/7",
                &[
                    ("x-api-key", &toon.key),
                    ("content-type", "application/json"),
                    ("x-keygate-account", "victim"),
                    ("x-keygate-scopes", "admin"),
                    ("x-keygate-plan", "enterprise"),
                ],
                r#"{"name":"a body the upstream must get"}"#,
            )
            .await;
        assert_eq!(up.one("x-keygate-key-id"), Some(toon.id.clone()));
        assert_eq!(up.one("x-keygate-account").as_deref(), Some("solo"));
        assert_eq!(up.one("x-keygate-scopes"), None, "spoofed scopes passed");
        assert_eq!(up.one("x-keygate-plan"), None, "spoofed plan passed");
        assert_eq!(up.values("x-api-key"), Vec::<String>::new());
        assert_eq!(up.values("authorization"), Vec::<String>::new());
    }

    // The public route: no key, and no client-sent identity reaches the upstream.
    let up = s
        .pass(
            "GET",
            "/healthz",
            &[
                ("x-keygate-account", "victim"),
                ("x-keygate-key-id", "forged"),
            ],
        )
        .await;
    for name in IDENTITY {
        assert_eq!(up.one(name), None, "{front:?}: {name} on the public route");
    }

    // keygate decided each authorized request exactly once (the public route not at all).
    let (m, line) = match front {
        Front::EnvoyModule => {
            // The module adds its counts to Envoy's stats once a second.
            let line = r#"envoy_keygate_decisions{result="allow",reason="ok"} 3"#.to_string();
            wait_until("the module's stats", Duration::from_secs(10), || async {
                envoy_stats(&s.proxy).await.contains(&line)
            })
            .await;
            (envoy_stats(&s.proxy).await, line)
        }
        _ => {
            let frontend = match front {
                Front::EnvoyGrpc => "envoy_grpc",
                Front::EnvoyHttp => "envoy_http",
                _ => "nginx",
            };
            (
                h.http("GET", "/metrics", &[]).await.body,
                format!(
                    r#"keygate_decisions_total{{frontend="{frontend}",reason="ok",result="allow"}} 3"#
                ),
            )
        }
    };
    assert!(m.contains(&line), "{front:?}: metrics lack {line}\n{m}");

    // The access log names the caller keygate identified.
    for who in [
        format!(
            r#""GET /v1/account/usage HTTP/1.1" 200 key_id={} account=acme "#,
            live.id
        ),
        format!(
            r#""POST /v1/tokens/7 HTTP/1.1" 200 key_id={} account=solo "#,
            toon.id
        ),
        r#""GET /healthz HTTP/1.1" 200 key_id=- account=- "#.to_string(),
    ] {
        wait_until(
            &format!("{front:?} to log {who}"),
            Duration::from_secs(10),
            || {
                let s = &s;
                let who = &who;
                async move { s.proxy.access_log().contains(who.as_str()) }
            },
        )
        .await;
    }
    assert!(
        !s.proxy.access_log().contains("day=1"),
        "{front:?}: the access log has the query string"
    );
    assert_no_secret(&s, &[&live.key, &toon.key]);
}

/// Envoy's Prometheus stats.
async fn envoy_stats(p: &Proxy) -> String {
    http_call(p.admin.unwrap(), "GET", "/stats/prometheus", &[])
        .await
        .body
}

/// No key appears in anything the proxy wrote.
fn assert_no_secret(s: &Setup, keys: &[&str]) {
    let logs = s.proxy.logs();
    for k in keys {
        assert!(
            !logs.contains(k),
            "{:?}: a key reached the proxy's logs",
            s.front
        );
    }
}

/// Every denial row through the proxy: status, WWW-Authenticate, JSON body, and the upstream
/// never sees the request.
async fn denials(front: Front) {
    let s = setup(front).await;
    let h = &s.h;
    let live = s.key("live", "acme", Some(&["usage:read"])).await;
    let b = bearer(&live.key);

    s.deny(
        "missing",
        ("GET", "/v1/account/usage?case=missing", &[]),
        401,
        CHALLENGE,
        unauthorized(),
    )
    .await;
    s.deny(
        "malformed x-api-key",
        ("GET", "/v1/x?case=malformed", &[("x-api-key", "toon_nope")]),
        401,
        None,
        unauthorized(),
    )
    .await;
    s.deny(
        "malformed bearer",
        (
            "GET",
            "/v1/x?case=malformed-bearer",
            &[("authorization", "Bearer not-a-key")],
        ),
        401,
        INVALID,
        unauthorized(),
    )
    .await;
    s.deny(
        "two credential headers",
        (
            "GET",
            "/v1/account/usage?case=two-kinds",
            &[("authorization", &b), ("x-api-key", "toon_AAAAAAAAAAAA_x")],
        ),
        401,
        INVALID,
        unauthorized(),
    )
    .await;
    let twice = [("authorization", b.as_str()), ("authorization", b.as_str())];
    let duplicated = ("GET", "/v1/account/usage?case=duplicated", &twice[..]);
    if front == Front::Nginx {
        // nginx itself refuses a repeated Authorization line with its own 400 page, before
        // auth_request: still a refusal that reaches neither keygate nor the upstream.
        let r = s.call(duplicated.0, duplicated.1, duplicated.2).await;
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.header("x-echo").is_none());
    } else {
        s.deny(
            "duplicated authorization",
            duplicated,
            401,
            INVALID,
            unauthorized(),
        )
        .await;
    }
    s.deny(
        "empty bearer",
        (
            "GET",
            "/v1/account/usage?case=empty-bearer",
            &[("authorization", "Bearer ")],
        ),
        401,
        INVALID,
        unauthorized(),
    )
    .await;
    let stranger = bearer("tk_live_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    s.deny(
        "unknown",
        ("GET", "/v1/x?case=unknown", &[("authorization", &stranger)]),
        401,
        INVALID,
        unauthorized(),
    )
    .await;

    // A wrong secret for a real x-api-key key id: 401 without a challenge (keygate's answer for
    // this scheme), and the proxy adds none.
    let toon = s.key("toon", "acme", None).await;
    let mut wrong = toon.key.clone();
    wrong.replace_range(wrong.len() - 4.., "zzzz");
    s.deny(
        "wrong secret",
        ("GET", "/v1/x?case=wrong-secret", &[("x-api-key", &wrong)]),
        401,
        None,
        unauthorized(),
    )
    .await;

    let scope_body = json!({"error": "forbidden", "message": "API key lacks scope tokens:write"});
    s.deny(
        "scope",
        ("POST", "/v1/tokens?case=scope", &[("authorization", &b)]),
        403,
        SCOPE_CHALLENGE,
        scope_body.clone(),
    )
    .await;
    s.deny(
        "scope, percent-encoded path",
        (
            "POST",
            "/v1/%74okens?case=scope-encoded",
            &[("authorization", &b)],
        ),
        403,
        SCOPE_CHALLENGE,
        scope_body.clone(),
    )
    .await;

    // The original method and URI keygate sees are the proxy's, whatever the client claims.
    s.deny(
        "spoofed X-Original-URI and X-Original-Method",
        (
            "POST",
            "/v1/tokens?case=spoofed-original",
            &[
                ("authorization", &b),
                ("x-original-uri", "/v1/account/usage"),
                ("x-original-method", "GET"),
            ],
        ),
        403,
        SCOPE_CHALLENGE,
        scope_body.clone(),
    )
    .await;
    // Encoded slashes: Envoy decodes them before authorizing; nginx passes them on as sent,
    // and keygate authorizes both readings (`/v1/tokens` and a name holding `%2F`).
    for path in [
        "/v1%2Ftokens?case=escaped-slash",
        "/v1%5ctokens?case=escaped-backslash",
    ] {
        s.deny(
            "scope, escaped slash",
            ("POST", path, &[("authorization", &b)]),
            403,
            SCOPE_CHALLENGE,
            scope_body.clone(),
        )
        .await;
    }
    // A malformed path is 400 through every front, nginx's auth_request included.
    s.deny(
        "bad path",
        (
            "GET",
            "/v1/account/usage/%252e%252e/tokens?case=bad-path",
            &[("authorization", &b)],
        ),
        400,
        None,
        json!({"error": "bad_request", "message": "Malformed request path"}),
    )
    .await;

    // Revoked: the same key passes, then is refused once revoked.
    let gone = s.key("live", "other", None).await;
    let gb = bearer(&gone.key);
    s.pass("GET", "/v1/x?before=revoke", &[("authorization", &gb)])
        .await;
    h.manager.revoke_key("test", &gone.id).await.unwrap();
    wait_until(
        "the revoked key to be refused",
        Duration::from_secs(5),
        || {
            let s = &s;
            let gb = &gb;
            async move {
                s.call("GET", "/v1/x?poll=revoked", &[("authorization", gb)])
                    .await
                    .status
                    == 401
            }
        },
    )
    .await;
    s.deny(
        "revoked",
        ("GET", "/v1/x?case=revoked", &[("authorization", &gb)]),
        401,
        INVALID,
        unauthorized(),
    )
    .await;

    // Account past due: 403, no challenge.
    s.pass("GET", "/v1/account/usage", &[("authorization", &b)])
        .await;
    h.manager
        .set_account(
            "test",
            "acme",
            Some(Some("starter".into())),
            Some("past_due"),
        )
        .await
        .unwrap();
    let message = match front {
        Front::Nginx => NGINX_GENERIC_403,
        _ => "API access is suspended: the account is past due",
    };
    wait_until(
        "the past-due account to be refused",
        Duration::from_secs(5),
        || {
            let s = &s;
            let b = &b;
            async move {
                s.call(
                    "GET",
                    "/v1/account/usage?poll=past-due",
                    &[("authorization", b)],
                )
                .await
                .status
                    == 403
            }
        },
    )
    .await;
    s.deny(
        "account past due",
        (
            "GET",
            "/v1/account/usage?case=past-due",
            &[("authorization", &b)],
        ),
        403,
        None,
        json!({"error": "forbidden", "message": message}),
    )
    .await;

    // No denied request reached the upstream.
    let leaked: Vec<String> = s
        .echo
        .seen()
        .into_iter()
        .map(|r| r.uri)
        .filter(|u| u.contains("case="))
        .collect();
    assert_eq!(
        leaked,
        Vec::<String>::new(),
        "{front:?}: denied requests reached the upstream"
    );
    assert_no_secret(&s, &[&live.key, &gone.key, &toon.key]);
}

/// keygate unreachable: the proxy fails closed with 503, never reaching the upstream.
async fn fails_closed(front: Front) {
    let mut s = setup(front).await;
    let live = s.h.key("live", "acme", None).await;
    let b = bearer(&live.key);
    s.pass("GET", "/v1/x", &[("authorization", &b)]).await;
    let running = s.h.running.take().unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .expect("keygate did not shut down");
    let r = s
        .call("GET", "/v1/x?case=keygate-down", &[("authorization", &b)])
        .await;
    assert_eq!(r.status, 503, "{front:?}: {r:?}\n{}", s.proxy.logs());
    assert!(
        r.header("x-echo").is_none(),
        "{front:?}: reached the upstream"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{front:?}"
    );
    assert_eq!(
        r.json(),
        json!({"error": "unavailable", "message": "Authorization service unavailable"}),
        "{front:?}"
    );
    // The public route does not depend on keygate.
    s.pass("GET", "/healthz", &[]).await;
    assert!(s.proxy.alive());
}

#[tokio::test]
async fn envoy_grpc_allow() {
    allow(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_grpc_denials() {
    denials(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_grpc_fails_closed() {
    fails_closed(Front::EnvoyGrpc).await;
}

#[tokio::test]
async fn envoy_http_allow() {
    allow(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn envoy_http_denials() {
    denials(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn envoy_http_fails_closed() {
    fails_closed(Front::EnvoyHttp).await;
}

#[tokio::test]
async fn nginx_allow() {
    allow(Front::Nginx).await;
}

#[tokio::test]
async fn nginx_denials() {
    denials(Front::Nginx).await;
}

#[tokio::test]
async fn nginx_fails_closed() {
    fails_closed(Front::Nginx).await;
}

#[tokio::test]
async fn envoy_module_allow() {
    allow(Front::EnvoyModule).await;
}

#[tokio::test]
async fn envoy_module_denials() {
    denials(Front::EnvoyModule).await;
}
