//! keygate as processes: a CLI command (SIGKILLed at a chosen moment if asked), a running
//! `keygate serve`, and one HTTP call to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{ADMIN_TOKEN, bin};

/// Runs a keygate CLI command; with `kill_after`, SIGKILLs it after that long (if still
/// running). Returns its JSON output if it exited 0 and printed JSON: an acknowledged write.
pub fn cli(
    config: &Path,
    args: &[&str],
    kill_after: Option<Duration>,
) -> Option<serde_json::Value> {
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KEYGATE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(d) = kill_after {
        // `d` picks a random moment of the write to crash it at: poll the child until then,
        // and kill it only if it is still running at that deadline.
        let deadline = std::time::Instant::now() + d;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(1)); // poll interval, bounded by the deadline
        }
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// One HTTP/1.1 call with `Connection: close`; `None` if the server is gone.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\
         X-Original-URI: /v1/x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// A running `keygate serve` and the addresses it logged.
pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("KEYGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("KEYGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads every line, so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("keygate listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("keygate serve did not start listening within 30 s");
        let addr = |name: &str| -> SocketAddr {
            let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            line[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        Server {
            http: addr("http"),
            admin: addr("admin"),
            child,
        }
    }

    /// SIGKILL.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Server {
    /// SIGKILL, also when a test fails with the server still running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
