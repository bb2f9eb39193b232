//! A running proxy process: started from a rendered config in a temporary directory, waited
//! for until it serves, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::nginx_module;
use crate::common::Deadline;

/// How long a proxy may take to start answering.
const START_DEADLINE: Duration = Duration::from_secs(60);

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
    pub(super) child: Child,
    pub(super) logs: Vec<PathBuf>,
    pub(super) access_log: PathBuf,
    /// A master with workers in a process group of its own: stopped with SIGTERM, then the
    /// group killed (`nginx_module::stop`), rather than the one process killed.
    pub(super) group: bool,
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

pub(super) fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> (Child, PathBuf, PathBuf) {
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

/// Starts a proxy and waits until it serves. The ports it was given were free when chosen,
/// but another test may take one before the proxy binds it: then start again on new ones.
pub(super) async fn start_retrying(launch: impl Fn() -> Proxy) -> Proxy {
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
