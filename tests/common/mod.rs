//! Test harness: keygate started in-process on port 0 over a temporary file store, and
//! clients for its gRPC and HTTP frontends. Every wait is a poll with a deadline.
#![allow(dead_code)]

pub mod process;
pub mod raw;
pub mod redis_server;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keygate::admin::manage::{CreateKey, Created, Manager};
use keygate::config::Settings;
use keygate::server::Running;
use keygate::store::Store;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The shipped example config with ports and the store path replaced.
pub fn config_text(store: &std::path::Path) -> String {
    let example = include_str!("../../config/keygate.yaml");
    example
        .replace("127.0.0.1:9001", "127.0.0.1:0")
        .replace("127.0.0.1:9002", "127.0.0.1:0")
        .replace("127.0.0.1:9003", "127.0.0.1:0")
        .replace(
            "path: data/keygate.json",
            &format!("path: {}", store.display()),
        )
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store_path: PathBuf,
    pub config_path: PathBuf,
    pub settings: Arc<Settings>,
    pub running: Option<Running>,
    pub manager: Manager,
}

/// The example config on port 0 with the Redis backend at `url`.
pub fn redis_config_text(url: &str, extra_store: &str, flush_seconds: f64) -> String {
    let example = config_text(std::path::Path::new("unused"));
    example
        .replace(
            "  backend: file             # embedded default: one local file\n  path: unused\n",
            &format!("  backend: redis\n  url: {url}\n{extra_store}"),
        )
        .replace(
            "identity_headers:",
            &format!("usage:\n  flush_interval_seconds: {flush_seconds}\n\nidentity_headers:"),
        )
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("keygate.json");
        let text = config_text(&store_path);
        Harness::start_with(dir, text).await
    }

    /// Starts keygate with the given config text.
    pub async fn start_with(dir: tempfile::TempDir, text: String) -> Harness {
        let store_path = dir.path().join("keygate.json");
        let config_path = dir.path().join("keygate.yaml");
        std::fs::write(&config_path, &text).unwrap();
        let settings = Settings::from_yaml(&text).unwrap();
        let running = keygate::server::start(settings.clone(), Some(ADMIN_TOKEN.into()))
            .await
            .unwrap();
        let settings = Arc::new(settings);
        let store = Store::open(&settings.store).unwrap();
        let manager = Manager::new(
            settings.clone(),
            store,
            Some(running.authorizer.replica.clone()),
        );
        Harness {
            dir,
            store_path,
            config_path,
            settings,
            running: Some(running),
            manager,
        }
    }

    /// Starts keygate on Redis at `url` and, if `ready`, waits until its table is loaded.
    pub async fn start_redis(url: &str, extra_store: &str, ready: bool) -> Harness {
        let text = redis_config_text(url, extra_store, 0.1);
        let h = Harness::start_with(tempfile::tempdir().unwrap(), text).await;
        if ready {
            h.wait_ready().await;
        }
        h
    }

    pub async fn wait_ready(&self) {
        let addr = self.http_addr();
        wait_until("/readyz 200", Duration::from_secs(20), || async move {
            http_call(addr, "GET", "/readyz", &[]).await.status == 200
        })
        .await;
    }

    /// Stops keygate (flushing usage).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.running().http.unwrap()
    }

    pub async fn key(&self, scheme: &str, account: &str, scopes: Option<&[&str]>) -> Created {
        self.manager
            .create_key(
                "test",
                CreateKey {
                    account: account.into(),
                    name: None,
                    scheme: Some(scheme.into()),
                    scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    /// Calls `Authorization/Check` as Envoy would.
    pub async fn grpc(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> CheckResponse {
        grpc_call(self.running().grpc.unwrap(), method, path, headers).await
    }

    /// Calls the HTTP listener.
    pub async fn http(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> HttpReply {
        http_call(self.http_addr(), method, uri, headers).await
    }

    /// Asks the nginx front (`/auth`) about `GET uri` with `key`, presented as its scheme
    /// expects it (`x-api-key` for a `toon_` key, `Authorization: Bearer` otherwise).
    pub async fn auth(&self, key: &str, uri: &str) -> HttpReply {
        let bearer = format!("Bearer {key}");
        let header = if key.starts_with("toon_") {
            ("x-api-key", key)
        } else {
            ("authorization", bearer.as_str())
        };
        self.http("GET", "/auth", &[("x-original-uri", uri), header])
            .await
    }

    /// Waits (at most `within`) until [`Harness::auth`] answers `want`.
    pub async fn wait_auth(&self, key: &str, uri: &str, want: u16, within: Duration) {
        wait_until(&format!("{uri} answering {want}"), within, || async {
            self.auth(key, uri).await.status == want
        })
        .await;
    }
}

/// Calls `Authorization/Check` at `addr` as Envoy would.
pub async fn grpc_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckResponse {
    let mut client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client
        .check(check_request(method, path, headers))
        .await
        .unwrap()
        .into_inner()
}

pub fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut h: HashMap<String, String> = HashMap::new();
    for (k, v) in headers {
        // Envoy lowercases names and joins repeated headers with commas.
        h.entry(k.to_ascii_lowercase())
            .and_modify(|e| {
                e.push(',');
                e.push_str(v)
            })
            .or_insert_with(|| v.to_string());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example".into(),
                    headers: h,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn http_call(
    addr: std::net::SocketAddr,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> HttpReply {
    http_call_body(addr, method, uri, headers, Bytes::new()).await
}

pub async fn http_call_body(
    addr: std::net::SocketAddr,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> HttpReply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{uri}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    HttpReply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A management call's answer as the JSON the API and the CLI print.
pub fn json(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

/// A port that was free a moment ago: bind 127.0.0.1:0, read the port, release it.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The deadline of a poll loop: every wait in the tests is a poll of a condition, bounded by
/// one of these, never a sleep standing in for synchronisation.
pub struct Deadline {
    end: Instant,
    what: String,
}

impl Deadline {
    pub fn new(what: impl Into<String>, within: Duration) -> Deadline {
        Deadline {
            end: Instant::now() + within,
            what: what.into(),
        }
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Fails the test if the deadline has passed.
    pub fn check(&self) {
        assert!(!self.passed(), "timed out waiting for {}", self.what);
    }

    /// Fails the test if the deadline has passed, else waits one poll interval.
    pub async fn tick(&self) {
        self.check();
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded by the deadline
    }

    /// [`Deadline::tick`] for a thread outside the runtime.
    pub fn tick_blocking(&self) {
        self.check();
        std::thread::sleep(Duration::from_millis(5)); // poll interval, bounded by the deadline
    }
}

/// Polls `f` until it returns true, failing the test at the deadline.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let d = Deadline::new(what, deadline);
    while !f().await {
        d.tick().await;
    }
}

/// Path of the built `keygate` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keygate"))
}

/// A fresh CA and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`.
/// Returns the paths of the CA certificate, the server certificate and its key (PEM).
pub fn test_certs(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use std::process::{Command, Stdio};
    let ossl = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is needed for TLS tests");
        assert!(st.success(), "openssl {args:?}");
    };
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=keygate test CA",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// The value of the first Prometheus sample line starting with `name` (NaN if none).
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}
