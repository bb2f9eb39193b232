//! The sidecar's fronts and the Envoy module as a test sees them: keygate in-process, a real
//! proxy from the shipped config in front of an echo upstream, and calls through it.

use std::time::Duration;

use keygate::admin::manage::Created;
use serde_json::Value;

use super::nginx_module::{metrics, settle, start_nginx_module};
use super::{Echo, EnvoyMode, Proxy, start_envoy_module_with, start_envoy_with, start_nginx};
use crate::common::{Harness, HttpReply, http_call, http_call_body, wait_until};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    EnvoyGrpc,
    EnvoyHttp,
    Nginx,
    /// keygate inside Envoy (`envoy/envoy-module.yaml`), following the same file store as the
    /// in-process keygate the test manages keys through.
    EnvoyModule,
    /// keygate inside nginx (`config/nginx-module.conf`) with this many worker processes, each
    /// following the same file store as the in-process keygate.
    NginxModule {
        workers: u8,
    },
}

/// One test at a time: each runs keygate, a proxy and an upstream, and on two cores the
/// parallel ones would compete for the CPU that keygate's Argon2 verifications need within
/// the proxies' ext_authz timeout.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Setup {
    pub front: Front,
    // Dropped in this order: the proxy first, then the upstream, then keygate, then the turn.
    pub proxy: Proxy,
    pub echo: Echo,
    pub h: Harness,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

pub async fn setup(front: Front) -> Setup {
    setup_with(front, &[]).await
}

/// [`setup`] with `envoy` substitutions in the shipped Envoy config (the nginx fronts take
/// none).
pub async fn setup_with(front: Front, envoy: &[(&str, String)]) -> Setup {
    assert!(
        envoy.is_empty() || !matches!(front, Front::Nginx | Front::NginxModule { .. }),
        "{front:?} takes no Envoy config"
    );
    let turn = SERIAL.lock().await;
    let h = Harness::start().await;
    let echo = Echo::start().await;
    let proxy = match front {
        Front::EnvoyGrpc => {
            let grpc = h.running().grpc.unwrap();
            start_envoy_with(EnvoyMode::Grpc, grpc, echo.addr, envoy).await
        }
        Front::EnvoyHttp => {
            start_envoy_with(EnvoyMode::Http, h.http_addr(), echo.addr, envoy).await
        }
        Front::Nginx => start_nginx(h.http_addr(), echo.addr).await,
        Front::EnvoyModule => start_envoy_module_with(&h.config_path, echo.addr, envoy).await,
        Front::NginxModule { workers } => {
            start_nginx_module(&h.config_path, echo.addr, workers).await
        }
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
    pub async fn key(&self, scheme: &str, account: &str, scopes: Option<&[&str]>) -> Created {
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

    pub async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> HttpReply {
        self.settle().await;
        http_call(self.proxy.addr, method, uri, headers).await
    }

    /// nginx with the module: waits until every worker holds what the in-process keygate
    /// holds, so that a call answers the same whichever worker takes it.
    pub async fn settle(&self) {
        if let Front::NginxModule { .. } = self.front {
            settle(&self.proxy, self.h.running().authorizer.replica.revision()).await;
        }
    }

    /// The in-proxy module's decisions counted for `(result, reason)`, as its metrics show
    /// them (`None` for the sidecar's fronts, whose metrics are the sidecar's).
    pub async fn module_decisions(&self, result: &str, reason: &str) -> Option<String> {
        match self.front {
            Front::NginxModule { .. } => {
                let line = format!(
                    r#"keygate_decisions_total{{frontend="nginx_module",reason="{reason}",result="{result}"}} "#
                );
                let m = metrics(&self.proxy).await;
                Some(m.lines().find(|l| l.starts_with(&line))?.to_string())
            }
            _ => None,
        }
    }

    /// A request the proxy must pass: the echo upstream's view of it.
    pub async fn pass(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Upstream {
        self.pass_body(method, uri, headers, "").await
    }

    pub async fn pass_body(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Upstream {
        self.settle().await;
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
    pub async fn deny(
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
pub struct Upstream(pub Value);

impl Upstream {
    pub fn values(&self, name: &str) -> Vec<String> {
        match &self.0["headers"][name] {
            Value::Null => vec![],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("{name}: {other}"),
        }
    }

    /// The single value of `name`, or `None` if absent (two values fail).
    pub fn one(&self, name: &str) -> Option<String> {
        let mut v = self.values(name);
        assert!(v.len() <= 1, "{name} reached the upstream twice: {v:?}");
        v.pop()
    }
}

pub fn bearer(k: &str) -> String {
    format!("Bearer {k}")
}
