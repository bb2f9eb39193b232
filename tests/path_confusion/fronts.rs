//! The fronts: Envoy (gRPC and HTTP mode) and nginx from the shipped configs, and keygate
//! inside each, before an echo upstream and a keygate whose routes start with a host-bound
//! one; and how a front's answer is read as a row states it.

use crate::common::raw::Raw;
use crate::common::{self, Harness};
use crate::proxy::nginx_module::start_nginx_module;
use crate::proxy::{Echo, EnvoyMode, Proxy, start_envoy, start_envoy_module, start_nginx};
use crate::rows::Answer::{self, *};

/// The shipped routes, with a host-bound route first: `internal.example` needs `internal`.
const HOST_ROUTE: &str = "routes:                     # first match wins
  - path_prefix: /
    host: internal.example
    scope: internal
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Front {
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

pub(crate) const FRONTS: [Front; 5] = [
    Front::EnvoyGrpc,
    Front::EnvoyHttp,
    Front::Nginx,
    Front::EnvoyModule,
    Front::NginxModule,
];

pub(crate) struct Fronts {
    pub(crate) proxies: Vec<(Front, Proxy)>,
    pub(crate) echo: Echo,
    pub(crate) h: Harness,
}

pub(crate) async fn start() -> Fronts {
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
    pub(crate) async fn until_every_front_sees(&self, key: &str) {
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

pub(crate) fn request(target: &str, host: &str, key: Option<&str>) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(k) = key {
        r.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The answer as a row states it.
pub(crate) fn classify(r: &Raw, echo_port: u16) -> Answer {
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
